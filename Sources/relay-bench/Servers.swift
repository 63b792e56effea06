// Launching / attaching the two servers under test, and the temporary directory for their
// sockets and logs.

#if canImport(Glibc)
import Glibc
#endif

/// A private temporary directory holding the sockets and server logs; removed at the end.
final class Workspace {
    let dir: String
    private var files: [String] = []

    init() throws {
        var template = Array("/tmp/relay-bench.XXXXXX".utf8CString)
        let ok = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        if !ok { throw BenchError("mkdtemp: \(errnoString())") }
        dir = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        registerEmergencyDir(dir)
    }

    /// A path inside the workspace, registered for removal.
    func file(_ name: String) -> String {
        let p = dir + "/" + name
        files.append(p)
        registerEmergencyPath(p)
        return p
    }

    func remove() {
        for f in files { unlink(f) }
        files.removeAll()
        rmdir(dir)
    }
}

/// One server under test: either launched by us (and stopped by us) or already running.
final class Server {
    let name: String
    let socketPath: String
    /// Where publishers connect: the same server, or another relay of the fleet.
    private(set) var publishSocketPath: String
    /// PID of the server process (from the launch, or SO_PEERCRED when attached); 0 if unknown.
    private(set) var pid: pid_t
    let launched: Bool
    let logPath: String?
    private var stopped = false

    private init(name: String, socketPath: String, pid: pid_t, launched: Bool, logPath: String?) {
        self.name = name
        self.socketPath = socketPath
        self.publishSocketPath = socketPath
        self.pid = pid
        self.launched = launched
        self.logPath = logPath
    }

    var rssKiB: Int? { processRSSKiB(pid) }
    var cpuNanos: UInt64? { processCPUNanos(pid) }

    /// Connects to an already-running server; the PID (for CPU/RSS figures) comes from SO_PEERCRED.
    static func attach(name: String, socketPath: String) throws -> Server {
        let fd = try connectUnix(socketPath)
        defer { close(fd) }
        setReceiveTimeout(fd, seconds: 5)
        try ping(fd, name: name)
        let pid = peerPID(fd) ?? 0
        return Server(name: name, socketPath: socketPath, pid: pid, launched: false, logPath: nil)
    }

    /// Set once a launched server is found to have exited.
    private(set) var exitDescription: String? = nil

    /// For a launched server: false (with `exitDescription` set) once it has exited.
    func checkAlive() -> Bool {
        guard launched else { return kill(pid, 0) == 0 || pid == 0 }
        if stopped { return false }
        if let how = childExited(pid) {
            stopped = true
            unregisterEmergencyPID(pid)
            unlink(socketPath)
            exitDescription = how
            return false
        }
        return true
    }

    static func launchRedis(in ws: Workspace, binary: String, maxClients: Int) throws -> Server {
        let sock = ws.file("redis.sock")
        let log = ws.file("redis.log")
        let args = ["--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                    "--maxclients", String(maxClients)]
        let pid = try spawnProcess(path: binary, args: args, env: inheritedEnvironment(), logPath: log)
        registerEmergencyPID(pid)
        let s = Server(name: "redis", socketPath: sock, pid: pid, launched: true, logPath: log)
        do { try s.waitReady(timeout: 15) } catch { s.stop(); throw error }
        return s
    }

    /// This server's subscribers with publishers on `publisher` (relay B fed through relay A).
    func publishing(through publisher: Server, name: String) -> Server {
        let s = Server(name: name, socketPath: socketPath, pid: pid, launched: false, logPath: logPath)
        s.publishSocketPath = publisher.publishSocketPath
        return s
    }

    /// `topology`: the `redis_topology` the relay must report besides `redis_state:up` before
    /// it counts as joined (e.g. "cluster"); nil accepts any.
    static func launchRelay(in ws: Workspace, binary: String, name: String = "relay", redisURL: String? = nil,
                            extraEnv: [String] = [], topology: String? = nil) throws -> Server {
        guard access(binary, X_OK) == 0 else {
            throw BenchError("relay binary not found or not executable: \(binary) "
                + "(build it with `swift build -c release`, or pass --relay PATH / --relay-socket PATH)")
        }
        let sock = ws.file("\(name).sock")
        let log = ws.file("\(name).log")
        // Local mode: no backplane, no metrics listener, quiet logs. Drop any relay config
        // inherited from the caller's environment so it cannot change what is measured.
        var env = inheritedEnvironment().filter {
            !$0.hasPrefix("RELAY_") && !$0.hasPrefix("REDIS_URL=") && !$0.hasPrefix("DATABASE_URL=")
        }
        env += ["RELAY_SOCKET=\(sock)", "RELAY_METRICS_ADDR=", "RELAY_LOG_LEVEL=warning"]
        if let redisURL { env.append("REDIS_URL=\(redisURL)") }
        env += extraEnv
        let pid = try spawnProcess(path: binary, args: [], env: env, logPath: log)
        registerEmergencyPID(pid)
        let s = Server(name: name, socketPath: sock, pid: pid, launched: true, logPath: log)
        do { try s.waitReady(timeout: 30) } catch { s.stop(); throw error }
        if redisURL != nil {
            do { try s.waitBackplaneUp(timeout: topology == nil ? 10 : 20, topology: topology) } catch { s.stop(); throw error }
        }
        return s
    }

    private static func ping(_ fd: Int32, name: String) throws {
        try writeAll(fd, respCommand(["PING"]))
        let reply = try readExactly(fd, 7)
        guard reply == Array("+PONG\r\n".utf8) else {
            throw BenchError("\(name): unexpected PING reply \"\(printable(reply))\"")
        }
    }

    /// Waits (bounded) until the socket accepts a connection and answers PING.
    private func waitReady(timeout: Double) throws {
        let deadline = monoNanos() + UInt64(timeout * 1e9)
        var lastError = "not started"
        while monoNanos() < deadline {
            if let how = childExited(pid) {
                stopped = true
                unregisterEmergencyPID(pid)
                throw BenchError("\(name) \(how) during start-up\(logTail())")
            }
            if let fd = try? connectUnix(socketPath) {
                setReceiveTimeout(fd, seconds: 5)
                do {
                    try Server.ping(fd, name: name)
                    close(fd)
                    return
                } catch {
                    lastError = "\(error)"
                    close(fd)
                }
            }
            usleep(20_000)
        }
        throw BenchError("\(name) did not accept connections on \(socketPath) within \(Int(timeout)) s "
            + "(\(lastError))\(logTail())")
    }

    /// Waits (bounded) until a relay with a backplane reports `redis_state:up` (and, when
    /// `topology` is set, that `redis_topology`).
    private func waitBackplaneUp(timeout: Double, topology: String? = nil) throws {
        let deadline = monoNanos() + UInt64(timeout * 1e9)
        var seen = ""
        while monoNanos() < deadline {
            if let how = childExited(pid) {
                stopped = true
                unregisterEmergencyPID(pid)
                throw BenchError("\(name) \(how) while joining the Redis backplane\(logTail())")
            }
            let state = info("redis_state")
            guard let topology else {
                if state == "up" { return }
                usleep(20_000)
                continue
            }
            let shown = info("redis_topology")
            if state == "up" && shown == topology { return }
            seen = " (last INFO: redis_state:\(state ?? "absent"), redis_topology:\(shown ?? "absent"))"
            usleep(50_000)
        }
        if let topology {
            throw BenchError("\(name) did not report redis_topology:\(topology) and redis_state:up within "
                + "\(Int(timeout)) s\(seen)\(logTail())")
        }
        throw BenchError("\(name) did not join the Redis backplane within \(Int(timeout)) s\(logTail())")
    }

    func logTail() -> String {
        guard let logPath, let text = readSmallFile(logPath), !text.isEmpty else { return "" }
        let lines = text.split(separator: "\n").suffix(15)
        return "\n--- last lines of \(name)'s log ---\n" + lines.joined(separator: "\n")
    }

    /// Stops a launched server (SIGTERM, bounded wait, SIGKILL) and removes its socket file.
    @discardableResult
    func stop() -> String? {
        guard launched, !stopped else { return nil }
        stopped = true
        let how = stopProcess(pid, signal: SIGTERM, timeout: 5)
        unregisterEmergencyPID(pid)
        unlink(socketPath)
        return how
    }

    /// The server's INFO field (e.g. "redis_version"), best effort.
    func info(_ field: String) -> String? {
        guard let fd = try? connectUnix(socketPath) else { return nil }
        defer { close(fd) }
        setReceiveTimeout(fd, seconds: 2)
        guard (try? writeAll(fd, respCommand(["INFO"]))) != nil else { return nil }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        let deadline = monoNanos() + 2_000_000_000
        while monoNanos() < deadline {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data += buf[0..<n]
            // "$len\r\n" + body + "\r\n"
            if let nl = data.firstIndex(of: 0x0a), data.first == UInt8(ascii: "$"),
               let len = Int(String(decoding: data[1..<nl - 1], as: UTF8.self)),
               data.count >= nl + 1 + len + 2 { break }
        }
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\r\n") where line.hasPrefix(field + ":") {
            return String(line.dropFirst(field.count + 1))
        }
        return nil
    }
}

/// The environment of this process, read from /proc/self/environ.
func inheritedEnvironment() -> [String] {
    guard let bytes = readFileBytes("/proc/self/environ") else { return ["PATH=/usr/local/bin:/usr/bin:/bin"] }
    return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
}

/// Default relay binary: `pubsub-relay` in the directory of this executable.
func defaultRelayBinary() -> String {
    var dir: String? = nil
    let argv0 = CommandLine.arguments.first ?? ""
    if argv0.contains("/"), let real = realpath(argv0, nil) {
        let p = String(cString: real)
        free(real)
        if let slash = p.lastIndex(of: "/") { dir = String(p[..<slash]) }
    }
    if dir == nil {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let p = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let slash = p.lastIndex(of: "/") { dir = String(p[..<slash]) }
        }
    }
    return (dir ?? ".") + "/pubsub-relay"
}
