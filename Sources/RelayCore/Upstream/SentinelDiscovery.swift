/// Finds and follows the master of a Sentinel deployment (README, "Redis Sentinel"), the way
/// Redis's sentinel-client guidelines describe: ask the sentinels in turn
/// `SENTINEL get-master-addr-by-name <name>`, stay subscribed to `+switch-master` on the one that
/// answered, and ask again whenever that connection is lost (a switch may have happened meanwhile).
///
/// Pure: fed events that carry the time (uptime nanoseconds), it returns the actions for the I/O
/// layer (`SentinelWatcher`) to run. At most one sentinel connection is open at a time.
public struct SentinelDiscovery {
    /// A sentinel's reply, as much of RESP2 as sentinels send.
    public indirect enum Reply: Sendable, Equatable {
        case status(String)
        case error(String)
        case integer(Int)
        case bulk(String)
        case null
        case array([Reply])
    }

    public enum Event: Sendable, Equatable {
        case start(now: UInt64)
        /// The TCP connection to sentinel `i` is up.
        case sentinelConnected(Int, now: UInt64)
        /// One reply (or pub/sub frame) from sentinel `i`, in order.
        case reply(Int, Reply, now: UInt64)
        /// The connection to sentinel `i` failed or closed.
        case sentinelFailed(Int, reason: String, now: UInt64)
        /// The data node at `master` is not a master (its `ROLE`, or a `-READONLY` reply): the
        /// sentinels are asked again.
        case masterRefused(reason: String, now: UInt64)
        case tick(now: UInt64)
        case stop
    }

    public enum LogLevel: Sendable, Equatable { case info, notice, warning }

    public enum Action: Sendable, Equatable {
        case connectSentinel(Int)
        case closeSentinel(Int)
        case send(Int, [String])
        /// Connect the backplane to this master (only sent when it changes).
        case useMaster(host: String, port: Int)
        case log(LogLevel, String)
    }

    public typealias Endpoint = RedisURL.Sentinel.Endpoint

    enum Step: Equatable {
        case connecting, asking, watching
    }

    enum Phase: Equatable {
        case idle
        case active(sentinel: Int, step: Step)
        /// A whole round of sentinels failed: the next one starts at `until`.
        case waiting(until: UInt64)
        case stopped
    }

    /// What the next reply on the sentinel connection answers.
    enum Pending: Equatable {
        case auth, masterAddress, subscribe, ping
    }

    public static let switchMasterChannel = "+switch-master"

    public let sentinels: [Endpoint]
    public let masterName: String
    private let username: String?
    private let password: String?
    private let timeoutNanoseconds: UInt64
    private let pingIntervalNanoseconds: UInt64
    private var backoff: ReconnectBackoff
    /// Yields a number in 0..<1 for the backoff's jitter (injected for tests).
    private let jitter: @Sendable () -> Double

    private(set) var phase = Phase.idle
    private var pending: [Pending] = []
    /// When the connection attempt or the oldest unanswered request times out.
    private var deadline: UInt64?
    private var lastPing: UInt64 = 0
    /// Sentinels that failed since the last answer; a full round waits for the backoff.
    private var failuresInRound = 0
    private var nextSentinel = 0

    /// The master's address as the sentinels last gave it; nil before the first answer.
    public private(set) var master: Endpoint?
    /// Changes of `master` after the first (failovers followed).
    public private(set) var switches = 0

    public init(sentinel: RedisURL.Sentinel, timeoutMilliseconds: Int, pingIntervalMilliseconds: Int = 1000,
                backoff: ReconnectBackoff, jitter: @escaping @Sendable () -> Double) {
        precondition(!sentinel.sentinels.isEmpty, "a sentinel URL lists at least one sentinel")
        self.sentinels = sentinel.sentinels
        self.masterName = sentinel.masterName
        self.username = sentinel.username
        self.password = sentinel.password
        self.timeoutNanoseconds = UInt64(timeoutMilliseconds) * 1_000_000
        self.pingIntervalNanoseconds = UInt64(pingIntervalMilliseconds) * 1_000_000
        self.backoff = backoff
        self.jitter = jitter
    }

    /// The sentinel whose `+switch-master` messages are followed, if one is.
    public var subscribedSentinel: Endpoint? {
        if case .active(let i, .watching) = phase { return sentinels[i] }
        return nil
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .start(let now):
            guard phase == .idle else { return [] }
            return attempt(nextSentinel, now: now)

        case .sentinelConnected(let i, let now):
            guard phase == .active(sentinel: i, step: .connecting) else { return [] }
            phase = .active(sentinel: i, step: .asking)
            var actions: [Action] = []
            if let password {
                actions.append(.send(i, ["AUTH"] + (username.map { [$0] } ?? []) + [password]))
                pending.append(.auth)
            }
            // Asked and subscribed in one pipeline: a sentinel runs both before any failover step
            // of its own, so no `+switch-master` can fall between the answer and the subscription.
            actions.append(.send(i, ["SENTINEL", "get-master-addr-by-name", masterName]))
            actions.append(.send(i, ["SUBSCRIBE", Self.switchMasterChannel]))
            pending += [.masterAddress, .subscribe]
            deadline = now + timeoutNanoseconds
            return actions

        case .reply(let i, let reply, let now):
            guard case .active(i, let step) = phase, step != .connecting else { return [] }
            return replied(i, reply, now: now)

        case .sentinelFailed(let i, let reason, let now):
            guard case .active(i, _) = phase else { return [] }
            return failed(i, reason, now: now)

        case .masterRefused(let reason, let now):
            // Only a settled view is questioned: a discovery under way gives a fresh answer anyway.
            guard case .active(let i, .watching) = phase else { return [] }
            let shown = master.map { "\($0)" } ?? "?"
            return [.log(.warning, "redis sentinel: master '\(masterName)' at \(shown) is not a master (\(reason)); asking the sentinels again")]
                + failed(i, "master refused", now: now, asDiscoveryFailure: true, quiet: true)

        case .tick(let now):
            switch phase {
            case .waiting(let until) where now >= until:
                return attempt(nextSentinel, now: now)
            case .active(let i, let step):
                if let deadline, now >= deadline {
                    return failed(i, "no reply from the sentinel within \(timeoutNanoseconds / 1_000_000) ms", now: now)
                }
                if step == .watching, pending.isEmpty, now - lastPing >= pingIntervalNanoseconds {
                    lastPing = now
                    pending.append(.ping)
                    deadline = now + timeoutNanoseconds
                    return [.send(i, ["PING"])]
                }
                return []
            default:
                return []
            }

        case .stop:
            defer { phase = .stopped }
            if case .active(let i, _) = phase { return [.closeSentinel(i)] }
            return []
        }
    }

    // MARK: Steps

    private mutating func attempt(_ i: Int, now: UInt64) -> [Action] {
        phase = .active(sentinel: i, step: .connecting)
        pending = []
        deadline = now + timeoutNanoseconds
        return [.connectSentinel(i)]
    }

    private mutating func replied(_ i: Int, _ reply: Reply, now: UInt64) -> [Action] {
        if case .array(let items) = reply, let kind = items.first?.text {
            if kind == "message", items.count == 3 {
                guard items[1].text == Self.switchMasterChannel, let payload = items[2].text else { return [] }
                return switchMaster(payload)
            }
            // A PING on a subscribed RESP2 connection answers ["pong", ""].
            if kind == "pong", pending.first == .ping {
                answered(now)
                return []
            }
        }
        guard let expected = pending.first else {
            return failed(i, "unexpected reply from the sentinel: \(reply)", now: now)
        }
        answered(now)
        if case .error(let text) = reply {
            switch expected {
            case .auth: return failed(i, "the sentinel refused AUTH: \(text)", now: now)
            case .masterAddress: return failed(i, "the sentinel answered get-master-addr-by-name with \(text)", now: now)
            case .subscribe: return failed(i, "the sentinel refused SUBSCRIBE \(Self.switchMasterChannel): \(text)", now: now)
            case .ping: return failed(i, "the sentinel answered PING with \(text)", now: now)
            }
        }
        switch expected {
        case .auth, .ping:
            return []
        case .masterAddress:
            guard case .array(let items) = reply, items.count == 2, let host = items[0].text, !host.isEmpty,
                  let portText = items[1].text, let port = Int(portText), port > 0, port < 65536 else {
                if reply == .null {
                    return failed(i, "the sentinel does not know master '\(masterName)' (null answer; check `sentinel monitor` and the name in REDIS_URL)", now: now)
                }
                return failed(i, "the sentinel answered get-master-addr-by-name with \(reply)", now: now)
            }
            failuresInRound = 0
            backoff.connected(at: now)
            return use(Endpoint(host: host, port: port), how: "sentinel \(sentinels[i]) answered")
        case .subscribe:
            guard case .array(let items) = reply, items.first?.text == "subscribe" else {
                return failed(i, "the sentinel answered SUBSCRIBE with \(reply)", now: now)
            }
            phase = .active(sentinel: i, step: .watching)
            lastPing = now
            return [.log(.info, "redis sentinel: following \(Self.switchMasterChannel) on sentinel \(sentinels[i])")]
        }
    }

    private mutating func answered(_ now: UInt64) {
        pending.removeFirst()
        deadline = pending.isEmpty ? nil : now + timeoutNanoseconds
    }

    /// `<master-name> <old-ip> <old-port> <new-ip> <new-port>`; other masters' switches are ignored.
    private mutating func switchMaster(_ payload: String) -> [Action] {
        let parts = payload.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 5, let port = Int(parts[4]), port > 0, port < 65536 else {
            return [.log(.warning, "redis sentinel: ignoring a malformed \(Self.switchMasterChannel) message: \(payload.prefix(200))")]
        }
        guard parts[0] == masterName else { return [] }
        return use(Endpoint(host: String(parts[3]), port: port), how: "\(Self.switchMasterChannel)")
    }

    private mutating func use(_ endpoint: Endpoint, how: String) -> [Action] {
        guard endpoint != master else { return [] }
        let previous = master
        master = endpoint
        if previous != nil { switches += 1 }
        let was = previous.map { " (was \($0))" } ?? ""
        return [.log(.notice, "redis sentinel: master '\(masterName)' is at \(endpoint)\(was), \(how)"),
                .useMaster(host: endpoint.host, port: endpoint.port)]
    }

    /// Drops sentinel `i` and goes on with the next one: at once after losing the followed
    /// connection (a switch may have happened meanwhile), else after the backoff once every
    /// sentinel of the round has failed.
    private mutating func failed(_ i: Int, _ reason: String, now: UInt64, asDiscoveryFailure: Bool = false,
                                 quiet: Bool = false) -> [Action] {
        guard case .active(_, let step) = phase else { return [] }
        var actions: [Action] = [.closeSentinel(i)]
        pending = []
        deadline = nil
        nextSentinel = (i + 1) % sentinels.count
        if step == .watching && !asDiscoveryFailure {
            failuresInRound = 0
            actions.append(.log(.warning, "redis sentinel: lost sentinel \(sentinels[i]) (\(reason)); asking sentinel \(sentinels[nextSentinel]) for master '\(masterName)'"))
            return actions + attempt(nextSentinel, now: now)
        }
        failuresInRound += 1
        if !quiet { actions.append(.log(.warning, "redis sentinel \(sentinels[i]): \(reason)")) }
        guard failuresInRound >= sentinels.count else {
            return actions + attempt(nextSentinel, now: now)
        }
        failuresInRound = 0
        let delay = backoff.nextDelayMilliseconds(now: now, unit: jitter)
        phase = .waiting(until: now + UInt64(delay) * 1_000_000)
        actions.append(.log(.warning, "redis sentinel: no sentinel gave master '\(masterName)' (tried \(sentinels.count)); asking again in \(delay) ms"))
        return actions
    }
}

extension SentinelDiscovery.Reply {
    /// The text of a bulk or status reply.
    var text: String? {
        switch self {
        case .bulk(let s), .status(let s): return s
        default: return nil
        }
    }
}
