import CLibpq
#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import RelayCore

/// One libpq connection that LISTENs on the configured channels — one per relay, never one per
/// channel or client. It lives on a thread of its own, which owns the `PGconn` and waits on
/// `PQsocket` with poll(2): libpq's connect, LISTEN and `PQconsumeInput` are driven non-blocking,
/// and every wake-up drains `PQnotifies` completely. The event loop is told through `onEvent`.
///
/// The connection exists only while listening is wanted: a standby holds none, and stepping down
/// closes it, so a standby can never deliver a notification.
final class PostgresListener: @unchecked Sendable {
    /// One NOTIFY: its channel as an index into the configured channels (whose relay names the
    /// bridge builds once), its payload in the buffer it is delivered from.
    struct Notification: Sendable {
        let channel: Int
        let payload: ByteBuffer
    }

    enum Event: Sendable {
        /// LISTEN is in place on every channel; `gapSeconds` when it replaces a lost connection.
        case listening(gapSeconds: Double?)
        /// A listening connection was lost (terminated backend, restart, dead link).
        case lost(reason: String)
        /// A connect or LISTEN attempt failed; `retryMilliseconds` until the next one.
        case attemptFailed(reason: String, retryMilliseconds: Int)
        case notifications([Notification])
        /// Listening stopped because it is no longer wanted.
        case stopped
    }

    private let conninfo: String
    private let pq: Libpq
    private let channels: [String]
    private let channelBytes: [[UInt8]]
    private let timeoutSeconds: Double
    private let onEvent: @Sendable (Event) -> Void
    // Shared with the event loop: what it wants, and the stop flag. All else is the thread's.
    private let control = NIOLockedValueBox((wanted: false, stopping: false, paused: false))
    /// A pipe that interrupts the thread's poll (wanted changed, stop).
    private let wakeFD: Int32
    private let wakeWriteFD: Int32
    /// Whether the thread was started, whether it has ended, and who waits for its end. The
    /// thread is detached: nobody joins it, so stopping never blocks the event loop.
    private let lifecycle = NIOLockedValueBox((started: false, ended: false, waiters: [EventLoopPromise<Void>]()))

    /// `conninfo` is DATABASE_URL as given; libpq expands it after the relay's defaults, so the
    /// user's settings win.
    init(pq: Libpq, conninfo: String, channels: [String], timeoutSeconds: Double = 10, onEvent: @escaping @Sendable (Event) -> Void) {
        self.pq = pq
        self.conninfo = conninfo
        self.channels = channels
        self.channelBytes = channels.map { Array($0.utf8) }
        self.timeoutSeconds = timeoutSeconds
        self.onEvent = onEvent
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "pipe: \(errno)")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        self.wakeFD = fds[0]
        self.wakeWriteFD = fds[1]
    }

    deinit {
        close(wakeFD)
        close(wakeWriteFD)
    }

    /// The relay's defaults, overridable by DATABASE_URL: a dead TCP link is noticed within
    /// about 10 s (keepalives, tcp_user_timeout), and the backend is easy to find in
    /// pg_stat_activity.
    static let defaults: [(String, String)] = [
        ("application_name", "pubsub-relay"),
        ("connect_timeout", "10"),
        ("keepalives", "1"),
        ("keepalives_idle", "5"),
        ("keepalives_interval", "2"),
        ("keepalives_count", "2"),
        ("tcp_user_timeout", "10000"),
    ]

    /// libpq's verdict on a conninfo string or URI, without connecting: nil if it parses.
    static func validate(_ conninfo: String) -> String? {
        let pq: Libpq
        switch Libpq.shared {
        case .success(let loaded): pq = loaded
        case .failure(let error): return "the Postgres bridge needs libpq, and \(error.description)"
        }
        var message: UnsafeMutablePointer<CChar>?
        guard let options = pq.conninfoParse(conninfo, &message) else {
            defer { if let message { pq.freemem(message) } }
            let text = message.map { String(cString: $0) } ?? "out of memory"
            return text.asOneLine()
        }
        pq.conninfoFree(options)
        return nil
    }

    func start() {
        lifecycle.withLockedValue { $0.started = true }
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let listener = Unmanaged<PostgresListener>.fromOpaque(arg!).takeRetainedValue()
            listener.run()
            listener.threadEnded()
            return nil
        }, box.toOpaque())
        precondition(rc == 0, "pthread_create: \(rc)")
        pthread_detach(t)
    }

    private func threadEnded() {
        let waiters = lifecycle.withLockedValue { state -> [EventLoopPromise<Void>] in
            state.ended = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for promise in waiters { promise.succeed(()) }
    }

    /// Whether the relay should be listening now (leader, no backplane, or degraded).
    func setWanted(_ wanted: Bool) {
        let changed = control.withLockedValue { state -> Bool in
            defer { state.wanted = wanted }
            return state.wanted != wanted
        }
        if changed { wake() }
    }

    /// Backpressure: while paused the thread reads nothing from Postgres, which keeps the
    /// notifications in its queue (and in order) until the relay has caught up.
    func setPaused(_ paused: Bool) {
        let changed = control.withLockedValue { state -> Bool in
            defer { state.paused = paused }
            return state.paused != paused
        }
        if changed { wake() }
    }

    /// Asks the thread to close the connection and end. The future (on `loop`) completes once it
    /// has — at once if it never ran; the caller waits for it off the event loop.
    func stop(on loop: EventLoop) -> EventLoopFuture<Void> {
        control.withLockedValue { $0.stopping = true }
        wake()
        let promise = loop.makePromise(of: Void.self)
        let running = lifecycle.withLockedValue { state -> Bool in
            guard state.started && !state.ended else { return false }
            state.waiters.append(promise)
            return true
        }
        if !running { promise.succeed(()) }
        return promise.futureResult
    }

    private func wake() {
        var one: UInt8 = 1
        _ = write(wakeWriteFD, &one, 1)
    }

    private var stopping: Bool { control.withLockedValue { $0.stopping } }
    private var wanted: Bool { control.withLockedValue { $0.wanted && !$0.stopping } }
    private var paused: Bool { control.withLockedValue { $0.paused } }

    // MARK: The thread

    private func run() {
        var connection: OpaquePointer?
        var backoff = ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 1000)
        var lostAt: UInt64?
        /// The connection is gone: reconnect after the backoff's wait, which stays short for a
        /// connection that lasted and grows for one that keeps dropping at once (no storm).
        func lose(_ conn: OpaquePointer, _ reason: String) {
            onEvent(.lost(reason: reason))
            pq.finish(conn)
            connection = nil
            let now = monotonicNanoseconds()
            lostAt = now
            waitForWake(milliseconds: backoff.nextDelayMilliseconds(now: now) { Double.random(in: 0..<1) })
        }
        while !stopping {
            if connection == nil {
                guard wanted else {
                    waitForWake(milliseconds: 1000)
                    continue
                }
                switch connectAndListen() {
                case .success(let conn):
                    connection = conn
                    backoff.connected(at: monotonicNanoseconds())
                    let gap = lostAt.map { Double(monotonicNanoseconds() - $0) / 1e9 }
                    lostAt = nil
                    onEvent(.listening(gapSeconds: gap))
                case .failure(let error):
                    if stopping { break }
                    let delay = backoff.nextDelayMilliseconds(now: monotonicNanoseconds()) { Double.random(in: 0..<1) }
                    onEvent(.attemptFailed(reason: error.message, retryMilliseconds: delay))
                    if lostAt == nil { lostAt = monotonicNanoseconds() }
                    waitForWake(milliseconds: delay)
                }
                continue
            }
            guard wanted, let conn = connection else {
                pq.finish(connection)
                connection = nil
                lostAt = nil
                onEvent(.stopped)
                continue
            }
            // Paused: wait on the wake pipe only (the socket's data stays in the kernel and in
            // Postgres's queue).
            let readSocket = !paused
            var fds = [pollfd(fd: readSocket ? pq.socket(conn) : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, 1000)
            if n < 0 && errno != EINTR {
                lose(conn, "poll: \(String(cString: strerror(errno)))")
                continue
            }
            if fds[1].revents != 0 { drainWake() }
            if fds[0].revents != 0 {
                if pq.consumeInput(conn) == 0 {
                    lose(conn, errorMessage(conn))
                    continue
                }
                drainResults(conn)
                let batch = drainNotifications(conn)
                if !batch.isEmpty { onEvent(.notifications(batch)) }
                if pq.status(conn) == CONNECTION_BAD { lose(conn, errorMessage(conn)) }
            }
        }
        if let connection { pq.finish(connection) }
    }

    struct AttemptError: Error {
        let message: String
    }

    /// Connects (non-blocking, bounded by the timeout) and LISTENs on every channel in one round trip.
    private func connectAndListen() -> Result<OpaquePointer, AttemptError> {
        var keywords = Self.defaults.map(\.0) + ["dbname"]
        var values = Self.defaults.map(\.1) + [conninfo]
        let conn: OpaquePointer? = keywords.withCStrings { k in
            values.withCStrings { v in pq.connectStartParams(k, v, 1) }
        }
        keywords.removeAll()
        values.removeAll()
        guard let conn else { return .failure(AttemptError(message: "libpq: out of memory")) }
        if pq.status(conn) == CONNECTION_BAD {
            defer { pq.finish(conn) }
            return .failure(AttemptError(message: errorMessage(conn)))
        }
        let deadline = monotonicNanoseconds() + UInt64(timeoutSeconds * 1e9)
        var state = PGRES_POLLING_WRITING
        while state != PGRES_POLLING_OK {
            if state == PGRES_POLLING_FAILED {
                defer { pq.finish(conn) }
                return .failure(AttemptError(message: errorMessage(conn)))
            }
            // The socket can change between polls (multi-host lists): read it every time.
            let events = state == PGRES_POLLING_READING ? Int16(POLLIN) : Int16(POLLOUT)
            guard waitSocket(conn, events: events, deadline: deadline) else {
                pq.finish(conn)
                return .failure(AttemptError(message: stopping ? "stopping" : "connect timed out after \(Int(timeoutSeconds)) s"))
            }
            state = pq.connectPoll(conn)
        }
        pq.setnonblocking(conn, 1)
        // libpq prints server notices (e.g. the FATAL of a terminated backend) on stderr by
        // default; they would break the log's one-event-per-line format, and the same text
        // reaches the log through PQerrorMessage.
        pq.setNoticeProcessor(conn, { _, _ in }, nil)
        var sql = ""
        for channel in channels {
            guard let quoted = channel.withCString({ pq.escapeIdentifier(conn, $0, strlen($0)) }) else {
                defer { pq.finish(conn) }
                return .failure(AttemptError(message: "cannot quote channel '\(channel)': \(errorMessage(conn))"))
            }
            sql += "LISTEN \(String(cString: quoted));"
            pq.freemem(quoted)
        }
        guard pq.sendQuery(conn, sql) == 1 else {
            defer { pq.finish(conn) }
            return .failure(AttemptError(message: "LISTEN: \(errorMessage(conn))"))
        }
        while true {
            let f = pq.flush(conn)
            if f == 0 { break }
            if f < 0 || !waitSocket(conn, events: Int16(POLLOUT), deadline: deadline) {
                defer { pq.finish(conn) }
                return .failure(AttemptError(message: "LISTEN not sent: \(errorMessage(conn))"))
            }
        }
        var failure: String?
        while true {
            while pq.isBusy(conn) == 1 {
                guard waitSocket(conn, events: Int16(POLLIN), deadline: deadline), pq.consumeInput(conn) == 1 else {
                    defer { pq.finish(conn) }
                    return .failure(AttemptError(message: "LISTEN not answered: \(errorMessage(conn))"))
                }
            }
            guard let result = pq.getResult(conn) else { break }
            if pq.resultStatus(result) != PGRES_COMMAND_OK && failure == nil {
                failure = pq.resultErrorMessage(result).map { String(cString: $0).asOneLine() } ?? "LISTEN failed"
            }
            pq.clear(result)
        }
        if let failure {
            pq.finish(conn)
            return .failure(AttemptError(message: "LISTEN refused: \(failure)"))
        }
        return .success(conn)
    }

    /// Results of nothing we asked for (a server notice of shutdown, say) are read and dropped.
    private func drainResults(_ conn: OpaquePointer) {
        while pq.isBusy(conn) == 0, let result = pq.getResult(conn) {
            pq.clear(result)
        }
    }

    private func drainNotifications(_ conn: OpaquePointer) -> [Notification] {
        var batch: [Notification] = []
        while let notify = pq.notifies(conn) {
            let n = notify.pointee
            let name = UnsafeRawBufferPointer(start: n.relname, count: n.relname.map { strlen($0) } ?? 0)
            // Only the channels LISTENed on can arrive; their names come back exactly (quoted).
            if let channel = channelBytes.firstIndex(where: { $0.elementsEqual(name) }) {
                let payload = n.extra.map { ByteBuffer(bytes: UnsafeRawBufferPointer(start: $0, count: strlen($0))) } ?? ByteBuffer()
                batch.append(Notification(channel: channel, payload: payload))
            }
            pq.freemem(notify)
        }
        return batch
    }

    /// Waits until the connection's socket is ready, or the deadline passes, or a stop is asked.
    private func waitSocket(_ conn: OpaquePointer, events: Int16, deadline: UInt64) -> Bool {
        while !stopping {
            let now = monotonicNanoseconds()
            guard now < deadline else { return false }
            var fds = [pollfd(fd: pq.socket(conn), events: events, revents: 0),
                       pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if n < 0 && errno != EINTR { return false }
            if fds[1].revents != 0 { drainWake() }
            if fds[0].revents != 0 { return true }
        }
        return false
    }

    private func waitForWake(milliseconds: Int) {
        var fd = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        if poll(&fd, 1, Int32(milliseconds)) > 0 { drainWake() }
    }

    private func drainWake() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(wakeFD, &bytes, 64) > 0 {}
    }

    private func errorMessage(_ conn: OpaquePointer) -> String {
        pq.errorMessage(conn).map { String(cString: $0).asOneLine() } ?? "unknown libpq error"
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension String {
    /// libpq's messages span lines ("…\n\tThis probably means…", one line per host tried); a log
    /// line must not. Lines are trimmed and joined with "; ".
    func asOneLine() -> String {
        split(whereSeparator: \.isNewline)
            .map { $0.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed() }
            .filter { !$0.isEmpty }
            .map { String($0) }
            .joined(separator: "; ")
    }
}

extension Array where Element == String {
    /// The strings as a NULL-terminated array of C strings, valid for the call.
    func withCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// libpq's verdict on `DATABASE_URL` (conninfo or URI) without connecting: nil if it parses,
/// else libpq's message — with the URL's password masked, as libpq quotes the input.
public func postgresConninfoError(_ conninfo: String) -> String? {
    PostgresListener.validate(conninfo).map {
        ConnectionSecrets.masking(ConnectionSecrets.password(in: conninfo, bareCredentialIsPassword: false), in: $0)
    }
}
