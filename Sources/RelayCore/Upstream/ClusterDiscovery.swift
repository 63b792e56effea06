import NIOCore

/// Finds and follows a Redis Cluster's slot map (README, "Redis Cluster"), as Redis's cluster
/// clients do: ask one node `CLUSTER SHARDS` (`CLUSTER SLOTS` where that is unknown), over one
/// control connection kept open to the node that answered, again every `refreshInterval` and
/// whenever the backplane asks (a `-MOVED`, a `sunsubscribe` Redis pushed for a slot that moved,
/// a master connection lost), at most every `minimumSpacing`. A node that fails is left for the
/// next candidate: the masters of the last map first, then the seeds of `REDIS_URL`.
///
/// Pure: fed events that carry the time (uptime nanoseconds), it returns the actions for the I/O
/// layer (`ClusterWatcher`) to run.
public struct ClusterDiscovery {
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public enum Event {
        case start(now: UInt64)
        /// The control connection to the current candidate is up.
        case connected(now: UInt64)
        case reply(UpstreamReply, now: UInt64)
        case failed(reason: String, now: UInt64)
        /// The backplane saw a sign that the map changed: ask again (rate-limited).
        case refresh(reason: String, now: UInt64)
        case tick(now: UInt64)
        case stop
    }

    public enum LogLevel: Sendable, Equatable { case info, notice, warning }

    public enum Action {
        case connect(Endpoint)
        case close
        case send([ByteBuffer])
        /// A map as one node gave it (every answer, changed or not: the owner compares).
        case topology(ClusterTopology, from: Endpoint)
        case log(LogLevel, String)
    }

    enum Pending: Equatable {
        case auth, name, shards, slots
    }

    enum Phase: Equatable {
        case idle
        case connecting(Endpoint)
        /// Connected; `asking` while a map request is outstanding.
        case open(Endpoint, asking: Bool)
        /// A whole round of candidates failed: the next attempt starts at `until`.
        case waiting(until: UInt64)
        case stopped
    }

    public let seeds: [Endpoint]
    private let username: String?
    private let password: String?
    /// `CLIENT SETNAME` of the control connection (`pubsub-relay:<relay id>:control`), if any.
    private let clientName: String?
    /// `rediss-cluster://`: the nodes' `tls-port` is the one to connect to.
    private let tls: Bool
    private let timeoutNanoseconds: UInt64
    public let refreshIntervalNanoseconds: UInt64
    public let minimumSpacingNanoseconds: UInt64
    private var backoff: ReconnectBackoff
    private let jitter: () -> Double

    private(set) var phase = Phase.idle
    private var pending: [Pending] = []
    private var deadline: UInt64?
    /// When a map was last asked for, and whether another ask is wanted (and why).
    private var lastAsked: UInt64?
    private var wanted: String?
    /// The node answered `CLUSTER SHARDS` with an unknown-subcommand error (Redis < 7).
    private var useSlots = false
    private var failuresInRound = 0
    private var nextCandidate = 0
    /// The masters of the last map: asked before the seeds.
    private var known: [Endpoint] = []

    /// Maps received, and asks made on request (not the periodic ones).
    public private(set) var answers = 0
    /// Why the control connection last failed (empty while none has).
    public private(set) var lastError = ""
    public private(set) var requestedRefreshes = 0

    public init(seeds: [Endpoint], username: String?, password: String?, clientName: String? = nil, tls: Bool, timeoutMilliseconds: Int,
                refreshIntervalMilliseconds: Int = 2000, minimumSpacingMilliseconds: Int = 100,
                backoff: ReconnectBackoff, jitter: @escaping () -> Double) {
        precondition(!seeds.isEmpty, "a cluster URL lists at least one seed node")
        self.seeds = seeds
        self.username = username
        self.password = password
        self.clientName = clientName
        self.tls = tls
        self.timeoutNanoseconds = UInt64(timeoutMilliseconds) * 1_000_000
        self.refreshIntervalNanoseconds = UInt64(refreshIntervalMilliseconds) * 1_000_000
        self.minimumSpacingNanoseconds = UInt64(minimumSpacingMilliseconds) * 1_000_000
        self.backoff = backoff
        self.jitter = jitter
    }

    /// The node the control connection is open to, if any.
    public var controlNode: Endpoint? {
        if case .open(let e, _) = phase { return e }
        return nil
    }

    /// Candidates in the order they are tried: the last map's masters, then the seeds.
    var candidates: [Endpoint] {
        var seen = Set<Endpoint>()
        return (known + seeds).filter { seen.insert($0).inserted }
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .start(let now):
            guard phase == .idle else { return [] }
            wanted = "start"
            return attempt(now: now)
        case .connected(let now):
            guard case .connecting(let endpoint) = phase else { return [] }
            phase = .open(endpoint, asking: false)
            pending = []
            var actions: [Action] = []
            if let password {
                actions.append(.send([ByteBuffer(string: "AUTH")] + (username.map { [ByteBuffer(string: $0)] } ?? []) + [ByteBuffer(string: password)]))
                pending.append(.auth)
            }
            if let clientName {
                actions.append(.send([ByteBuffer(string: "CLIENT"), ByteBuffer(string: "SETNAME"), ByteBuffer(string: clientName)]))
                pending.append(.name)
            }
            if wanted == nil { wanted = "connected" }
            ask(now: now, &actions)
            return actions
        case .reply(let reply, let now):
            guard case .open(let endpoint, _) = phase, !pending.isEmpty else { return [] }
            return replied(reply, from: endpoint, now: now)
        case .failed(let reason, let now):
            switch phase {
            case .connecting(let endpoint), .open(let endpoint, _):
                return failed(endpoint, reason, now: now)
            default:
                return []
            }
        case .refresh(let reason, let now):
            guard phase != .stopped else { return [] }
            requestedRefreshes += 1
            if wanted == nil { wanted = reason }
            var actions: [Action] = []
            if case .open = phase { ask(now: now, &actions) }
            return actions
        case .tick(let now):
            return tick(now: now)
        case .stop:
            let open: Bool
            switch phase {
            case .connecting, .open: open = true
            default: open = false
            }
            phase = .stopped
            return open ? [.close] : []
        }
    }

    private mutating func tick(now: UInt64) -> [Action] {
        var actions: [Action] = []
        switch phase {
        case .waiting(let until) where now >= until:
            return attempt(now: now)
        case .connecting(let endpoint):
            if let deadline, now >= deadline { return failed(endpoint, "no connection within the timeout", now: now) }
        case .open(let endpoint, let asking):
            if asking || !pending.isEmpty, let deadline, now >= deadline {
                return failed(endpoint, "no answer to CLUSTER \(useSlots ? "SLOTS" : "SHARDS") within the timeout", now: now)
            }
            if wanted == nil, let lastAsked, now - min(lastAsked, now) >= refreshIntervalNanoseconds { wanted = "periodic" }
            ask(now: now, &actions)
        default:
            break
        }
        return actions
    }

    /// Sends the map request if one is wanted, none is outstanding, and the last was long enough ago.
    private mutating func ask(now: UInt64, _ actions: inout [Action]) {
        guard case .open(let endpoint, let asking) = phase, !asking, wanted != nil else { return }
        if let lastAsked, now - min(lastAsked, now) < minimumSpacingNanoseconds { return }
        wanted = nil
        lastAsked = now
        phase = .open(endpoint, asking: true)
        actions.append(.send(useSlots ? [ByteBuffer(string: "CLUSTER"), ByteBuffer(string: "SLOTS")]
                                      : [ByteBuffer(string: "CLUSTER"), ByteBuffer(string: "SHARDS")]))
        pending.append(useSlots ? .slots : .shards)
        deadline = now + timeoutNanoseconds
    }

    private mutating func replied(_ reply: UpstreamReply, from endpoint: Endpoint, now: UInt64) -> [Action] {
        let step = pending.removeFirst()
        switch step {
        case .auth:
            if reply.isError { return failed(endpoint, "the node refused AUTH: \(reply.text)", now: now) }
            return []
        case .name:
            return []  // a name refused (an ACL without CLIENT SETNAME) changes nothing
        case .shards, .slots:
            phase = .open(endpoint, asking: false)
            deadline = nil
            if step == .shards, reply.isError, reply.text.lowercased().contains("unknown subcommand") {
                useSlots = true
                var actions: [Action] = [.log(.info, "redis cluster: \(endpoint) has no CLUSTER SHARDS (before Redis 7); using CLUSTER SLOTS")]
                wanted = "fallback"
                lastAsked = nil
                ask(now: now, &actions)
                return actions
            }
            if reply.isError { return failed(endpoint, "CLUSTER \(step == .shards ? "SHARDS" : "SLOTS") failed: \(reply.text)", now: now) }
            let topology: ClusterTopology
            do {
                topology = step == .shards
                    ? try ClusterTopology(shardsReply: reply, seedHost: endpoint.host, tls: tls)
                    : try ClusterTopology(slotsReply: reply, seedHost: endpoint.host)
            } catch {
                return failed(endpoint, "the cluster map from \(endpoint) was not understood: \(error)", now: now)
            }
            answers += 1
            failuresInRound = 0
            backoff.connected(at: now)
            known = topology.masters.map { Endpoint(host: $0.host, port: tls ? ($0.tlsPort ?? $0.port) : $0.port) }
            var actions: [Action] = [.topology(topology, from: endpoint)]
            ask(now: now, &actions)
            return actions
        }
    }

    private mutating func failed(_ endpoint: Endpoint, _ reason: String, now: UInt64) -> [Action] {
        lastError = "control connection to \(endpoint): \(reason)"
        var actions: [Action] = [.close, .log(.warning, "redis cluster: control connection to \(endpoint) lost: \(reason)")]
        pending = []
        deadline = nil
        if wanted == nil { wanted = "reconnect" }
        failuresInRound += 1
        if failuresInRound >= candidates.count {
            failuresInRound = 0
            let wait = backoff.nextDelayMilliseconds(now: now, unit: jitter)
            phase = .waiting(until: now + UInt64(wait) * 1_000_000)
            actions.append(.log(.warning, "redis cluster: no node answered; asking again in \(wait) ms"))
            return actions
        }
        actions += attempt(now: now)
        return actions
    }

    private mutating func attempt(now: UInt64) -> [Action] {
        let list = candidates
        let endpoint = list[nextCandidate % list.count]
        nextCandidate += 1
        phase = .connecting(endpoint)
        deadline = now + timeoutNanoseconds
        return [.connect(endpoint)]
    }
}
