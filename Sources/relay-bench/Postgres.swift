// Postgres scenarios: NOTIFY → subscriber, through the relay fleet (leader relay LISTENs, publishes
// to Redis, the other relay delivers) against a direct LISTEN client on the same Postgres.

import CLibpq
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

struct PgOptions {
    var notifiers: Int
    var perTransaction: Int
    /// Notifications per second for the latency run; nil = as fast as the notifiers go.
    var rate: Double?
    var seconds: Double
}

struct PgResult {
    var sent = 0
    var received = 0
    var lost = 0
    var orderErrors = 0
    var duplicates = 0
    var notificationsPerSecond: Double = 0
    var p50: Double = 0
    var p99: Double = 0
    var samples = 0
    var serverCPU: Double? = nil

    var valid: Bool { lost == 0 && orderErrors == 0 && duplicates == 0 && received > 0 }
}

/// A Postgres started for the bench (as the `postgres` user when run as root), stopped at the end.
final class BenchPostgres {
    let dir: String
    let port = 54_329
    private var launcher: pid_t = 0

    var conninfo: String { "host=\(dir) port=\(port) user=postgres dbname=postgres" }

    init(binDir: String) throws {
        guard access(binDir + "/postgres", X_OK) == 0 else {
            throw BenchError("no PostgreSQL binaries in \(binDir) (apt-get install postgresql, or --postgres-bin DIR)")
        }
        var template = Array("/tmp/relay-bench-pg.XXXXXX".utf8CString)
        let ok = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        if !ok { throw BenchError("mkdtemp: \(errnoString())") }
        dir = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        registerEmergencyDir(dir)
        let asRoot = geteuid() == 0
        if asRoot, let pw = getpwnam("postgres") { chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid) }
        func command(_ args: [String]) -> (String, [String]) {
            asRoot ? ("runuser", ["-u", "postgres", "--"] + args) : (args[0], Array(args.dropFirst()))
        }
        let (initPath, initArgs) = command([binDir + "/initdb", "-D", dir + "/data", "-A", "trust", "-U", "postgres"])
        let initPID = try spawnProcess(path: initPath, args: initArgs, env: inheritedEnvironment(), logPath: "/dev/null")
        var status: Int32 = 0
        waitpid(initPID, &status, 0)
        guard status == 0 else { throw BenchError("initdb failed (status \(status))") }
        let (path, args) = command([binDir + "/postgres", "-D", dir + "/data", "-k", dir, "-p", String(port),
                                    "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                                    "-c", "full_page_writes=off"])
        launcher = try spawnProcess(path: path, args: args, env: inheritedEnvironment(), logPath: "/dev/null")
        let deadline = monoNanos() + 20_000_000_000
        while monoNanos() < deadline {
            if let conn = PQconnectdb(conninfo) {
                let up = PQstatus(conn) == CONNECTION_OK
                PQfinish(conn)
                if up { return }
            }
            usleep(50_000)
        }
        stop()
        throw BenchError("PostgreSQL did not start within 20 s in \(dir)")
    }

    /// PID of the postmaster (for its CPU), from postmaster.pid.
    var pid: pid_t {
        guard let text = readSmallFile(dir + "/data/postmaster.pid"), let first = text.split(separator: "\n").first else { return 0 }
        return pid_t(first) ?? 0
    }

    func stop() {
        let p = pid
        if p > 0 {
            kill(p, SIGINT)   // fast shutdown
            let deadline = monoNanos() + 10_000_000_000
            while kill(p, 0) == 0 && monoNanos() < deadline { usleep(20_000) }
        }
        if launcher > 0 { _ = stopProcess(launcher, signal: SIGTERM, timeout: 2) }
        _ = spawnAndWait("rm", ["-rf", dir])
    }
}

private func spawnAndWait(_ path: String, _ args: [String]) -> Int32 {
    guard let pid = try? spawnProcess(path: path, args: args, env: inheritedEnvironment(), logPath: "/dev/null") else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

/// Payload: `<writer>:<seq, 12 digits>:<send time ns, 20 digits>` — fixed width, text (NOTIFY
/// payloads cannot hold NUL).
private let payloadLength = 1 + 1 + 12 + 1 + 20
/// Each run NOTIFYs on a channel of its own, so that nothing of an earlier run (the fleet's
/// leader LISTENs all along, and may still be draining a backlog) is counted in a later one.
/// The relays LISTEN on `benchChannels`; direct runs use channels outside that list.
let benchChannelCount = 32
var benchChannels: String { (0..<benchChannelCount).map { "bench\($0)" }.joined(separator: ",") }
nonisolated(unsafe) private var nextRelayRun = 0
nonisolated(unsafe) private var nextDirectRun = 0

private final class PgShared: @unchecked Sendable {
    let stop = Atomic<Bool>(false)
    let sent = Atomic<Int>(0)
    var error: String? = nil
}

/// One run: notifiers on Postgres, one receiver (direct LISTEN, or a relay subscriber socket).
func runPostgres(conninfo: String, relaySocket: String?, options o: PgOptions, serverPID: pid_t) throws -> PgResult {
    let channel: String
    if relaySocket != nil {
        guard nextRelayRun < benchChannelCount else { throw BenchError("more relay runs than bench channels (\(benchChannelCount))") }
        channel = "bench\(nextRelayRun)"
        nextRelayRun += 1
    } else {
        channel = "direct\(nextDirectRun)"
        nextDirectRun += 1
    }
    let receiver: PgReceiver = try relaySocket.map { try RelayReceiver(socket: $0, channel: channel) }
        ?? DirectReceiver(conninfo: conninfo, channel: channel)
    defer { receiver.close() }
    let shared = PgShared()
    var threads: [pthread_t] = []
    let start = monoNanos()
    let cpu0 = processCPUNanos(serverPID)
    for w in 0..<o.notifiers {
        threads.append(startThread {
            notifier(writer: w, conninfo: conninfo, channel: channel, options: o, shared: shared)
        })
    }
    let tracker = Tracker(writers: o.notifiers, sampleFrom: start + 200_000_000)
    let measureEnd = start + UInt64(o.seconds * 1e9)
    var lastReceive = start
    while monoNanos() < measureEnd {
        if receiver.poll(into: tracker, timeoutMilliseconds: 50) { lastReceive = monoNanos() }
    }
    shared.stop.store(true, ordering: .relaxed)
    for t in threads { joinThread(t) }
    if let error = shared.error { throw BenchError(error) }
    let sent = shared.sent.load(ordering: .relaxed)
    let drainDeadline = monoNanos() + 5_000_000_000
    while tracker.received < sent && monoNanos() < drainDeadline {
        if receiver.poll(into: tracker, timeoutMilliseconds: 50) { lastReceive = monoNanos() }
    }
    let cpu1 = processCPUNanos(serverPID)
    var r = PgResult()
    r.sent = sent
    r.received = tracker.received
    r.lost = max(0, sent - tracker.received)
    r.orderErrors = tracker.orderErrors
    r.duplicates = tracker.duplicates
    let elapsed = Double(lastReceive - start) / 1e9
    r.notificationsPerSecond = elapsed > 0 ? Double(tracker.received) / elapsed : 0
    let lat = tracker.latencies.sorted()
    r.samples = lat.count
    if !lat.isEmpty {
        r.p50 = Double(lat[lat.count / 2]) / 1000
        r.p99 = Double(lat[min(lat.count - 1, lat.count * 99 / 100)]) / 1000
    }
    if let a = cpu0, let b = cpu1, elapsed > 0 { r.serverCPU = Double(b - a) / 1e9 / elapsed }
    return r
}

private func notifier(writer: Int, conninfo: String, channel: String, options o: PgOptions, shared: PgShared) {
    guard let conn = PQconnectdb(conninfo), PQstatus(conn) == CONNECTION_OK else {
        shared.error = "notifier cannot connect to Postgres"
        shared.stop.store(true, ordering: .relaxed)
        return
    }
    defer { PQfinish(conn) }
    var seq = 0
    let interval = o.rate.map { 1e9 / $0 * Double(o.notifiers) }
    var next = monoNanos()
    while !shared.stop.load(ordering: .relaxed) {
        if let interval {
            next += UInt64(interval)
            sleepUntil(next)
        }
        let sql: String
        if o.perTransaction == 1 {
            sql = "SELECT pg_notify('\(channel)', '\(writer):\(pad12(seq)):\(pad20(monoNanos()))')"
        } else {
            sql = "SELECT pg_notify('\(channel)', '\(writer):' || lpad((\(seq) + g)::text, 12, '0') || ':' || lpad('0', 20, '0')) "
                + "FROM generate_series(0, \(o.perTransaction - 1)) g"
        }
        guard let result = PQexec(conn, sql) else { break }
        let ok = PQresultStatus(result) == PGRES_TUPLES_OK
        PQclear(result)
        guard ok else {
            shared.error = "NOTIFY failed: \(String(cString: PQerrorMessage(conn)))"
            return
        }
        seq += o.perTransaction
        shared.sent.add(o.perTransaction, ordering: .relaxed)
    }
}

private func pad12(_ n: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, 12 - s.count)) + s }
private func pad20(_ n: UInt64) -> String { let s = String(n); return String(repeating: "0", count: max(0, 20 - s.count)) + s }

/// Checks each writer's sequence and collects latencies.
private final class Tracker {
    var received = 0
    var orderErrors = 0
    var duplicates = 0
    var latencies: [UInt64] = []
    private var nextSeq: [Int]
    private let sampleFrom: UInt64

    init(writers: Int, sampleFrom: UInt64) {
        nextSeq = Array(repeating: 0, count: writers)
        self.sampleFrom = sampleFrom
    }

    func take(_ p: UnsafeRawBufferPointer, now: UInt64) {
        guard p.count == payloadLength else {
            orderErrors += 1
            return
        }
        received += 1
        let writer = Int(p[0]) - 48
        var seq = 0
        for i in 2..<14 { seq = seq * 10 + Int(p[i]) - 48 }
        var sentAt: UInt64 = 0
        for i in 15..<35 { sentAt = sentAt * 10 + UInt64(p[i]) - 48 }
        guard writer >= 0 && writer < nextSeq.count else {
            orderErrors += 1
            return
        }
        if seq < nextSeq[writer] { duplicates += 1 } else if seq > nextSeq[writer] { orderErrors += 1 }
        nextSeq[writer] = seq + 1
        if sentAt > 0 && sentAt >= sampleFrom && now > sentAt { latencies.append(now - sentAt) }
    }
}

private protocol PgReceiver {
    /// Reads what is there (waiting up to the timeout); true if anything arrived.
    func poll(into tracker: Tracker, timeoutMilliseconds: Int32) -> Bool
    func close()
}

/// A plain libpq LISTEN client: the baseline.
private final class DirectReceiver: PgReceiver {
    private let conn: OpaquePointer

    init(conninfo: String, channel: String) throws {
        guard let c = PQconnectdb(conninfo), PQstatus(c) == CONNECTION_OK else {
            throw BenchError("LISTEN client cannot connect to Postgres")
        }
        conn = c
        PQclear(PQexec(conn, "LISTEN \(channel)"))
    }

    func poll(into tracker: Tracker, timeoutMilliseconds: Int32) -> Bool {
        var fd = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&fd, 1, timeoutMilliseconds) > 0 else { return false }
        PQconsumeInput(conn)
        let now = monoNanos()
        var any = false
        while let n = PQnotifies(conn) {
            any = true
            if let extra = n.pointee.extra {
                tracker.take(UnsafeRawBufferPointer(start: extra, count: strlen(extra)), now: now)
            }
            PQfreemem(n)
        }
        return any
    }

    func close() { PQfinish(conn) }
}

/// A subscriber on a relay socket: `message bench <payload>` frames of fixed size.
private final class RelayReceiver: PgReceiver {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let header: [UInt8]
    private let frameLength: Int

    init(socket: String, channel: String) throws {
        fd = try connectUnix(socket)
        setReceiveTimeout(fd, seconds: 5)
        try writeAll(fd, respCommand(["SUBSCRIBE", channel]))
        let confirmation = Array("*3\r\n$9\r\nsubscribe\r\n$\(channel.utf8.count)\r\n\(channel)\r\n:1\r\n".utf8)
        let got = try readExactly(fd, confirmation.count)
        guard got == confirmation else { throw BenchError("relay: unexpected subscribe reply \"\(printable(got))\"") }
        setNonBlocking(fd)
        header = Array("*3\r\n$7\r\nmessage\r\n$\(channel.utf8.count)\r\n\(channel)\r\n$\(payloadLength)\r\n".utf8)
        frameLength = header.count + payloadLength + 2
    }

    func poll(into tracker: Tracker, timeoutMilliseconds: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&p, 1, timeoutMilliseconds) > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        let n = read(fd, &chunk, chunk.count)
        guard n > 0 else { return false }
        let now = monoNanos()
        buffer += chunk[0..<n]
        var offset = 0
        while buffer.count - offset >= frameLength {
            if !buffer[offset..<offset + header.count].elementsEqual(header) {
                tracker.orderErrors += 1
                buffer.removeAll()
                return true
            }
            buffer.withUnsafeBytes { raw in
                tracker.take(UnsafeRawBufferPointer(rebasing: raw[(offset + header.count)..<(offset + header.count + payloadLength)]), now: now)
            }
            offset += frameLength
        }
        buffer.removeFirst(offset)
        return true
    }

    func close() { Glibc.close(fd) }
}
