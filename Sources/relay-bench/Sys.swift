// Thin Glibc helpers for relay-bench: clocks, CPU and memory accounting, Unix sockets,
// process spawning, threads. The bench deliberately uses plain blocking/non-blocking sockets
// and epoll instead of NIO so that its client costs as little CPU as possible.

#if canImport(Glibc)
import Glibc
#else
#error("relay-bench needs Linux (epoll, /proc)")
#endif
import Synchronization

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { self.description = message }
}

func errnoString(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

// MARK: - Clocks

@inline(__always)
func monoNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Sleeps until an absolute CLOCK_MONOTONIC deadline (no drift accumulation).
@inline(__always)
func sleepUntil(_ deadline: UInt64) {
    var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    while true {
        let rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil)
        if rc != EINTR { return }
    }
}

/// Tries to make the main thread's timers precise (default slack is 50 µs). Best effort.
/// (/proc/self/timerslack_ns is the main thread's, whose TID is the PID.)
func reduceMainThreadTimerSlack() {
    let fd = open("/proc/self/timerslack_ns", O_WRONLY | O_CLOEXEC)
    if fd < 0 { return }
    _ = "1".withCString { write(fd, $0, 1) }
    close(fd)
}

/// User+system CPU time of this whole process, in nanoseconds.
func selfCPUNanos() -> UInt64 {
    var ru = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
    let u = UInt64(ru.ru_utime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_utime.tv_usec) * 1000
    let s = UInt64(ru.ru_stime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_stime.tv_usec) * 1000
    return u + s
}

/// CPU time of one thread of this process (via its CPU-time clock), in nanoseconds.
func threadCPUNanos(_ thread: pthread_t) -> UInt64 {
    var cid = clockid_t()
    if pthread_getcpuclockid(thread, &cid) != 0 { return 0 }
    var ts = timespec()
    if clock_gettime(cid, &ts) != 0 { return 0 }
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let clockTicksPerSecond: UInt64 = {
    let t = sysconf(Int32(_SC_CLK_TCK))
    return t > 0 ? UInt64(t) : 100
}()

/// Busy CPU time of the whole machine (all CPUs; everything but idle and iowait) from
/// /proc/stat, in nanoseconds. Used to detect other load disturbing a measurement.
func machineBusyNanos() -> UInt64? {
    guard let stat = readSmallFile("/proc/stat"),
          let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
    let v = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
    guard v.count >= 5 else { return nil }
    // user nice system idle iowait irq softirq steal (guest is included in user)
    let total = v.prefix(8).reduce(0, +)
    let busy = total - v[3] - v[4]
    return busy * 1_000_000_000 / clockTicksPerSecond
}

/// The bytes of a (small, /proc) file, at most `limit` of them; nil if it cannot be opened.
func readFileBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while bytes.count <= limit {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    return bytes
}

func readSmallFile(_ path: String) -> String? {
    readFileBytes(path).map { String(decoding: $0, as: UTF8.self) }
}

/// utime+stime of a process from /proc/PID/stat, in nanoseconds (10 ms resolution typically).
func processCPUNanos(_ pid: pid_t) -> UInt64? {
    guard pid > 0, let stat = readSmallFile("/proc/\(pid)/stat"),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    guard fields.count > 12, let u = UInt64(fields[11]), let s = UInt64(fields[12]) else { return nil }
    return (u + s) * 1_000_000_000 / clockTicksPerSecond
}

/// VmRSS of a process in KiB.
func processRSSKiB(_ pid: pid_t) -> Int? {
    guard pid > 0, let status = readSmallFile("/proc/\(pid)/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2 { return Int(parts[1]) }
    }
    return nil
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
@discardableResult
func raiseFileLimit() -> Int {
    var rl = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) != 0 { return 1024 }
    if rl.rlim_cur < rl.rlim_max {
        var n = rl
        n.rlim_cur = rl.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &n) == 0 { rl = n }
    }
    return rl.rlim_cur > UInt(Int.max) ? Int.max : Int(rl.rlim_cur)
}

// MARK: - Unix sockets

func makeSockaddrUn(_ path: String) throws -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let cap = MemoryLayout.size(ofValue: addr.sun_path)
    guard !bytes.isEmpty, bytes.count < cap else {
        throw BenchError("socket path too long or empty (\(bytes.count) bytes, max \(cap - 1)): \(path)")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    return addr
}

/// Opens a blocking SOCK_STREAM connection to a Unix socket.
func connectUnix(_ path: String) throws -> Int32 {
    var addr = try makeSockaddrUn(path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw BenchError("socket(): \(errnoString())") }
    // Bounds a connect() to a full accept backlog (AF_UNIX honours SO_SNDTIMEO) and later
    // blocking writes.
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    if rc != 0 {
        let e = errno
        close(fd)
        throw BenchError("connect(\(path)): \(errnoString(e))")
    }
    return fd
}

func setNonBlocking(_ fd: Int32, _ on: Bool = true) {
    let flags = fcntl(fd, F_GETFL)
    _ = fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK))
}

func setReceiveTimeout(_ fd: Int32, seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

/// `struct ucred` (needs _GNU_SOURCE in C, so not imported by Glibc).
private struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}

/// PID of the process at the other end of a connected Unix socket (SO_PEERCRED).
func peerPID(_ fd: Int32) -> pid_t? {
    var cred = PeerCredentials()
    var len = socklen_t(MemoryLayout<PeerCredentials>.size)
    if getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 { return nil }
    return cred.pid > 0 ? cred.pid : nil
}

/// Writes all bytes on a blocking fd.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError("write: \(errnoString())")
            }
            off += n
        }
    }
}

/// Reads exactly `count` bytes on a blocking fd (with SO_RCVTIMEO as the bound).
func readExactly(_ fd: Int32, _ count: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var off = 0
    try out.withUnsafeMutableBytes { raw in
        while off < count {
            let n = read(fd, raw.baseAddress! + off, count - off)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw BenchError("read: timed out") }
                throw BenchError("read: \(errnoString())")
            }
            if n == 0 { throw BenchError("read: connection closed by server") }
            off += n
        }
    }
    return out
}

func printable(_ bytes: [UInt8]) -> String {
    var s = ""
    for b in bytes.prefix(200) {
        switch b {
        case 0x0d: s += "\\r"
        case 0x0a: s += "\\n"
        case 0x20..<0x7f: s.unicodeScalars.append(UnicodeScalar(b))
        default: s += "\\x" + String(b, radix: 16)
        }
    }
    return s
}

/// Sends one command (RESP array) on a blocking fd and reads one simple reply line or
/// integer; returns the raw line. For small control commands only.
func respCommand(_ args: [String]) -> [UInt8] {
    var out = Array("*\(args.count)\r\n".utf8)
    for a in args {
        let b = Array(a.utf8)
        out += Array("$\(b.count)\r\n".utf8)
        out += b
        out += [0x0d, 0x0a]
    }
    return out
}

// MARK: - Loopback TCP (the Redis Cluster scenarios: cluster nodes announce IP:port)

private func loopbackAddress(port: UInt16) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return addr
}

/// Opens a blocking TCP connection to 127.0.0.1:`port`, with TCP_NODELAY (the bench pipelines
/// its own batches; Nagle would hold back a batch's tail for an ACK).
func connectTCP(port: UInt16) throws -> Int32 {
    var addr = loopbackAddress(port: port)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw BenchError("socket(): \(errnoString())") }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if rc != 0 {
        let e = errno
        close(fd)
        throw BenchError("connect(127.0.0.1:\(port)): \(errnoString(e))")
    }
    return fd
}

/// A TCP socket bound to 127.0.0.1:`port` (0: any free port), and the port it got; nil if taken.
private func bindLoopback(port: UInt16) -> (fd: Int32, port: UInt16)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { return nil }
    var addr = loopbackAddress(port: port)
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 { close(fd); return nil }
    var got = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &got) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return (fd, UInt16(bigEndian: got.sin_port))
}

/// `count` distinct free loopback ports P whose cluster-bus port P+10000 is free too (so P is
/// at most 55535). Free when asked: another process may take one before the server binds it,
/// which then fails to start and says so.
func freeClusterPorts(_ count: Int) throws -> [UInt16] {
    var held: [Int32] = []
    defer { for fd in held { close(fd) } }
    var ports: [UInt16] = []
    var attempts = 0
    while ports.count < count {
        attempts += 1
        if attempts > 2_000 { throw BenchError("found only \(ports.count) of \(count) free 127.0.0.1 port pairs (P, P+10000)") }
        guard let a = bindLoopback(port: 0) else { continue }
        held.append(a.fd)
        guard a.port <= 55_535, let bus = bindLoopback(port: a.port + 10_000) else { continue }
        held.append(bus.fd)
        ports.append(a.port)
    }
    return ports
}

// MARK: - Threads

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts a joinable POSIX thread.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let b = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
        b.run()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return tid
}

func joinThread(_ t: pthread_t) {
    _ = pthread_join(t, nil)
}

// MARK: - Processes

/// Spawns a child with stdin=/dev/null and stdout+stderr to `logPath`.
/// `path` is looked up in PATH when it contains no '/'.
func spawnProcess(path: String, args: [String], env: [String], logPath: String) throws -> pid_t {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&fa, 1, 2)

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid = pid_t()
    let rc: Int32
    if path.contains("/") {
        rc = posix_spawn(&pid, path, &fa, nil, argv, envp)
    } else {
        rc = posix_spawnp(&pid, path, &fa, nil, argv, envp)
    }
    if rc != 0 { throw BenchError("cannot start \(path): \(errnoString(rc))") }
    return pid
}

/// Returns the exit description if the child has exited (reaping it), nil if still running.
func childExited(_ pid: pid_t) -> String? {
    var status: Int32 = 0
    let r = waitpid(pid, &status, WNOHANG)
    if r == 0 { return nil }
    if r < 0 { return "gone (\(errnoString()))" }
    if status & 0x7f == 0 { return "exited with status \((status >> 8) & 0xff)" }
    return "killed by signal \(status & 0x7f)"
}

/// Sends `signal`, waits up to `timeout` seconds, then SIGKILLs. Returns how it ended.
@discardableResult
func stopProcess(_ pid: pid_t, signal sig: Int32 = SIGTERM, timeout: Double = 5) -> String {
    if let gone = childExited(pid) { return gone }
    kill(pid, sig)
    let deadline = monoNanos() + UInt64(timeout * 1e9)
    while monoNanos() < deadline {
        if let how = childExited(pid) { return how }
        usleep(10_000)
    }
    kill(pid, SIGKILL)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return "did not stop within \(timeout) s; killed"
}

// MARK: - Emergency cleanup (signals)

/// Child PIDs and paths to clean up if we are interrupted. Written only from the main thread
/// before/after the scenarios; read by the signal handler (async-signal-safe calls only).
// Sized for the largest run: a Redis Cluster's six nodes plus up to a dozen relays and their
// sockets, logs and node files.
private let emergencyPIDSlots = 32
private let emergencyPathSlots = 96
nonisolated(unsafe) private var emergencyPIDs = UnsafeMutablePointer<pid_t>.allocate(capacity: emergencyPIDSlots)
nonisolated(unsafe) private var emergencyPaths = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: emergencyPathSlots)
nonisolated(unsafe) private var emergencyDir: UnsafeMutablePointer<CChar>? = nil

func installEmergencyCleanup() {
    emergencyPIDs.initialize(repeating: 0, count: emergencyPIDSlots)
    emergencyPaths.initialize(repeating: nil, count: emergencyPathSlots)
    let handler: @convention(c) (Int32) -> Void = { sig in
        for i in 0..<emergencyPIDSlots where emergencyPIDs[i] > 0 { kill(emergencyPIDs[i], SIGTERM) }
        for i in 0..<emergencyPIDSlots where emergencyPIDs[i] > 0 {
            // Give children up to ~2 s to exit, then kill them.
            var waited = 0
            while waited < 200 && kill(emergencyPIDs[i], 0) == 0 && waitpid(emergencyPIDs[i], nil, WNOHANG) == 0 {
                usleep(10_000); waited += 1
            }
            kill(emergencyPIDs[i], SIGKILL)
        }
        for i in 0..<emergencyPathSlots where emergencyPaths[i] != nil { unlink(emergencyPaths[i]!) }
        if let d = emergencyDir { rmdir(d) }
        _exit(128 + sig)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    signal(SIGHUP, handler)
    signal(SIGPIPE, SIG_IGN)
}

func registerEmergencyPID(_ pid: pid_t) {
    for i in 0..<emergencyPIDSlots where emergencyPIDs[i] == 0 { emergencyPIDs[i] = pid; return }
}

func unregisterEmergencyPID(_ pid: pid_t) {
    for i in 0..<emergencyPIDSlots where emergencyPIDs[i] == pid { emergencyPIDs[i] = 0 }
}

func registerEmergencyPath(_ path: String) {
    for i in 0..<emergencyPathSlots where emergencyPaths[i] == nil { emergencyPaths[i] = strdup(path); return }
}

func registerEmergencyDir(_ path: String) {
    emergencyDir = strdup(path)
}
