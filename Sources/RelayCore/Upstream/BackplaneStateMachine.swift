import DequeModule
import NIOCore

/// The Redis backplane's logic (README, "The Redis backplane"), without I/O: one subscriber and
/// one publisher connection to the node that carries the fleet's pub/sub, whatever the number of
/// local clients. Like postgres-nio's `ConnectionStateMachine`, it is fed events — a connection
/// is up, a reply came, a connection failed, a tick, a client subscribed or published, the
/// master moved — and returns the actions the I/O edge runs: connect, send, answer a client,
/// undo a refused subscription, log. Time is passed in with each event (uptime nanoseconds).
///
/// * Upstream (P|S)SUBSCRIBE is reference-counted from the registry's first/last transitions; a
///   client's confirmation waits for Redis's (subscribe-then-publish safety). If Redis refuses a
///   subscription (an error reply, e.g. `-NOPERM`), the client's command fails with Redis's error.
/// * Local PUBLISH and SPUBLISH go to Redis only; local subscribers get them when Redis delivers
///   them back.
/// * While either connection is down the relay is *degraded*: subscriptions are confirmed locally
///   and PUBLISH is delivered locally (the executor's side). Each connection reconnects on its own
///   with capped, jittered backoff; the subscriber resubscribes everything in one pipeline.
///
/// `Client` is the registry's subscriber type, `Waiter` a place in a client's output that the
/// edge reserved (a reply slot), `Callback` a request of another part of the relay.
public struct BackplaneStateMachine<Client: AnyObject, Waiter, Callback> {
    public enum Role: String, Sendable, CaseIterable {
        case subscriber = "sub"
        case publisher = "pub"
    }

    public enum Phase: String, Sendable {
        case down, connecting, handshaking, syncing, ready
    }

    /// One connection attempt: events about an older attempt of the same role are ignored.
    public struct ConnectionID: Hashable, Sendable {
        public let role: Role
        public let generation: Int
    }

    public struct Settings: Sendable {
        public var relayID: String
        /// The URL as logs show it (password hidden).
        public var shownURL: String
        public var username: String?
        public var password: String?
        public var db: Int
        public var namespace: String
        /// Connect, handshake and silence deadline (`RELAY_REDIS_TIMEOUT`).
        public var timeoutNanoseconds: UInt64
        /// Cap of the reconnect backoff (`RELAY_REDIS_BACKOFF_MAX`).
        public var backoffCapMilliseconds: Int
        /// How long a relay's fleet counts outlive it in Redis.
        public var fleetTTLMilliseconds: Int
        /// Redis Sentinel (README, "Redis Sentinel"): connect only once `masterChanged` named a
        /// master, require `ROLE` to say `master`, and leave a node that answers `-READONLY`.
        public var followsMaster: Bool
        /// What this machine carries upstream: everything, or one Redis Cluster master's share.
        public var scope: NodeScope

        public init(relayID: String, shownURL: String = "", username: String? = nil, password: String? = nil, db: Int = 0,
                    namespace: String, timeoutNanoseconds: UInt64, backoffCapMilliseconds: Int,
                    fleetTTLMilliseconds: Int = 5000, followsMaster: Bool = false, scope: NodeScope = .whole) {
            self.scope = scope
            self.relayID = relayID
            self.shownURL = shownURL
            self.username = username
            self.password = password
            self.db = db
            self.namespace = namespace
            self.timeoutNanoseconds = timeoutNanoseconds
            self.backoffCapMilliseconds = backoffCapMilliseconds
            self.fleetTTLMilliseconds = fleetTTLMilliseconds
            self.followsMaster = followsMaster
        }

        /// PING on the subscriber connection: every second, or twice per timeout if shorter.
        var pingIntervalNanoseconds: UInt64 { min(1_000_000_000, timeoutNanoseconds / 2) }
    }

    public enum LogLevel: Sendable {
        case debug, info, notice, warning, error
    }

    public enum Action {
        /// Open the connection (to the current master's address).
        case connect(ConnectionID)
        /// Open it after a wait (the backoff).
        case connectAfter(ConnectionID, milliseconds: Int)
        /// Close it without telling the machine (it already knows).
        case close(ConnectionID)
        /// Send one command (written with the tick's other commands in one write).
        case send(ConnectionID, [ByteBuffer])
        /// Fill a client's reserved place: its reply, or nil to lift a barrier.
        case fill(Waiter, ByteBuffer?)
        /// Fill it with Redis's reply, re-encoded in the client's protocol.
        case fillWithReply(Waiter, UpstreamReply)
        /// Fill it with this relay's own answer to a PUBSUB question.
        case fillWithLocalAnswer(Waiter, PubSubQuery)
        /// Redis refused a subscription that `names` were added with: drop them again.
        case undoSubscriptions(Client, SubscriptionKind, [ByteBuffer])
        /// Hand a request's reply (nil: the connection dropped first) to whoever asked.
        case complete(Callback, UpstreamReply?)
        case log(LogLevel, String, [(String, String)])
        /// Forwarding or reachability may have changed (the Postgres bridge follows it).
        case stateChanged
        /// Sentinel: the node is not (or no longer) a master; the sentinels are to be asked again.
        case notMaster(String)
        /// A PUBLISH that waited for a subscription when the link dropped: delivered to the local
        /// subscribers (degraded mode), the waiter answered with their number.
        case publishLocally(Waiter, channel: ByteBuffer, payload: ByteBuffer, sharded: Bool)
        /// Redis Cluster: a sign that the slot map changed (an unasked `sunsubscribe`, a
        /// `-MOVED` to a subscription); the map is to be asked for again.
        case slotLost(String)
        /// Redis Cluster: a PUBLISH answered `-MOVED`/`-ASK`/`-TRYAGAIN`/`-CLUSTERDOWN`, to be
        /// sent again (its reply slot kept) once the slot map names the owner. `alsoClassic`:
        /// the re-send needs a classic copy too (not when one already went with the SPUBLISH).
        case redirected(Waiter, channel: ByteBuffer, payload: ByteBuffer, sharded: Bool, alsoClassic: Bool, echo: Bool)
    }

    /// What a cluster PUBLISH needs to be sent again elsewhere.
    struct Resend {
        let channel: ByteBuffer
        let payload: ByteBuffer
        let alsoClassic: Bool
    }

    /// What the next non-push reply on a connection answers.
    enum Expected {
        /// A login step; an error fails the attempt when `fatal` (or when Redis says NOAUTH).
        case handshake(step: String, fatal: Bool)
        /// The handshake's closing PING.
        case handshakeDone
        /// Sentinel: the handshake's `ROLE`, which must say `master`.
        case role
        case ping
        /// `localExtra`: this relay's receivers Redis does not count (`FleetReceivers`), taken
        /// when it was sent; the other relays' are added when Redis answers (`channel`).
        /// `echo`: the publishing client receives the message itself (RESP3). `sharded`: an SPUBLISH.
        /// `resend`: on a cluster, what a `-MOVED` answer needs to send it again.
        case publish(Waiter, localExtra: Int, channel: ByteBuffer?, sharded: Bool, echo: Bool, resend: Resend?)
        /// `PUBSUB CHANNELS` from the fleet's counts (`FleetCounts.channelsScript`), filtered here.
        case channelList(Waiter, pattern: [UInt8]?)
        /// The classic PUBLISH after a cluster SPUBLISH, for the fleet's pattern subscribers: its
        /// count is not Redis's to give (README, "Redis Cluster"), an error is logged once.
        case classicCopy
        case query(Waiter, PubSubQuery)
        /// One of the EVALs of a fleet-wide NUMSUB (an index into `numsubs`).
        case numsubPart(Int)
        /// Fleet-count writes: an error is logged, nothing waits.
        case bookkeeping
        /// The last write of a fleet-count batch: releases the clients whose confirmation waited.
        case fleetAck([Waiter])
        /// A message on the fleet channel (`FleetReceivers`), releasing `waiters` if it is the
        /// last write of a batch; an error means Redis has no sharded pub/sub.
        case fleetMessage([Waiter])
        /// The subscriber's SSUBSCRIBE of the fleet channel.
        case fleetSubscription
        /// A PING on the subscriber connection behind a PUBLISH whose client receives the message
        /// itself: Redis sent the message before this PONG, so the reply goes after its copy.
        case echoBarrier(Waiter, ByteBuffer)
        case callback(Callback)
        /// A (P|S)(UN)SUBSCRIBE of `total` names, `remaining` not yet confirmed. Redis answers with
        /// one push per name, or with one error for the whole command.
        case subscriptions(total: Int, remaining: Int)
    }

    struct Connection {
        let role: Role
        var phase = Phase.down
        var generation = 0
        var expected: Deque<Expected> = []
        var deadline = ReplyDeadline()
        var backoff: ReconnectBackoff
        var everConnected = false
        var lastPingSent: UInt64 = 0
        /// Bookkeeping errors are logged once per connection.
        var loggedBookkeepingError = false
        /// When the lost connection was last known good: the gap starts there.
        var lostAt: UInt64?
        /// When bytes last arrived on it (told by the edge with each event).
        var lastHeard: UInt64 = 0

        var id: ConnectionID { ConnectionID(role: role, generation: generation) }
    }

    /// One client's (P|S)SUBSCRIBE whose confirmations wait for upstream.
    struct SubscribeWait {
        let client: Client
        let waiter: Waiter
        let kind: SubscriptionKind
        /// The names the command added (undone if Redis refuses any).
        let names: [ByteBuffer]
        var remaining: Int
        /// Redis's error line, once it refused one of the names.
        var refusal: ByteBuffer?
    }

    /// A fleet-wide NUMSUB answered by several EVALs, gathered in order.
    struct NumsubGather {
        let waiter: Waiter
        let query: PubSubQuery
        var remaining: Int
        var failed = false
        var elements = 0
        var body = ByteBuffer()
    }

    public let settings: Settings
    private let registry: SubscriptionRegistry<Client>
    private var sub: Connection
    private var pub: Connection
    private var ledger = UpstreamSubscriptionLedger<Int>()
    private var waits: [Int: SubscribeWait] = [:]
    private var nextWaitID = 0
    private var numsubs: [Int: NumsubGather] = [:]
    private var nextNumsubID = 0
    /// Resubscribe confirmations still expected after a reconnect.
    private var resyncRemaining = 0
    /// Upstream (un)subscribe names gathered in this tick, sent as one command per run.
    /// On a cluster, shard names of one command share a slot (Redis refuses a command whose names
    /// span slots with `-CROSSSLOT`): `slot` is theirs.
    private var pendingRun: (kind: SubscriptionKind, subscribe: Bool, slot: Int?, names: [ByteBuffer])?
    private var fleet: FleetCounts
    private var fleetWaiters: [(client: Client, waiter: Waiter)] = []
    private var lastFleetRefresh: UInt64 = 0
    private var lastTick: UInt64 = 0
    /// The last freeze of the relay's own loop that a tick noticed: (when it began, when it ended).
    private var lastStall: (start: UInt64, end: UInt64)?
    /// Names whose refusal by Redis was logged (once each; bounded).
    private var loggedRefusals: Set<ByteBuffer> = []
    /// The other relays' receivers, for PUBLISH's count (README, "PUBLISH in fleet mode").
    private var receivers: FleetReceivers
    private var fleetChannel: FleetChannelState = .off
    /// The subscriber is subscribed to the fleet channel and the publisher has not said `hello` yet.
    private var helloPending = false
    private var lastAlive: UInt64 = 0
    private var lastHelloAsked: UInt64 = 0
    /// PUBLISHes waiting for a subscription in flight (`UpstreamSubscriptionLedger.affects`), in
    /// the order the clients sent them, and how many of each client's wait.
    private var heldPublishes: Deque<HeldPublish> = []
    private var heldPerClient: [ObjectIdentifier: Int] = [:]
    private var stopped = false
    /// What this machine carries (`NodeScope`); a cluster master's slots change with the map.
    public private(set) var scope: NodeScope
    /// Redis Cluster: shard names Redis dropped unasked (their slot moved), subscribed again by
    /// whichever master serves them once the next map is in.
    private var orphans: Set<ByteBuffer> = []
    /// Redis Cluster, a master that is not home: the other relays' receivers of a PUBLISH, as the
    /// home master's machine knows them (channel, sharded).
    public var remoteReceivers: ((ByteBuffer, Bool, Bool) -> Int)?
    /// Redis Cluster: names subscribed again here after their slot came to this master, or after
    /// Redis dropped them; `sunsubscribe`s Redis pushed unasked.
    public private(set) var movedSubscriptions = 0
    public private(set) var slotMovesPushed = 0
    private var loggedClassicCopyError = false
    /// When the fleet channel was last subscribed: the other relays' states (their patterns)
    /// answer the `hello` within a round trip; until `fleetSettleNanoseconds` have passed they
    /// may be missing.
    private var fleetSubscribedAt: UInt64 = 0
    /// Set by `retire`: what waits on the connections goes to the slots' new owners.
    private var retiring = false
    public private(set) var hasBeenUp = false
    /// Sentinel: whether `masterChanged` has named a master yet.
    private var masterKnown = false
    /// A random number in 0..<1 for the backoff's jitter (injected by tests).
    public var random: () -> Double = { Double.random(in: 0..<1) }

    /// Local PUBLISH goes upstream (both connections ready and resubscribed).
    public private(set) var isForwarding = false
    /// Since when the relay is degraded (uptime ns); nil while forwarding.
    public private(set) var degradedSince: UInt64?
    public private(set) var reconnects = 0
    /// Sentinel: failovers followed (master changes after the first).
    public private(set) var masterSwitches = 0
    public private(set) var gaps = 0
    public private(set) var gapSecondsTotal = 0.0
    public private(set) var lastError = ""
    /// PUBLISHes whose connection dropped before Redis answered (answered 0, not delivered).
    public private(set) var unconfirmedPublishes = 0
    /// Subscriptions Redis refused (each failed its client's command with Redis's error).
    public private(set) var refusedSubscriptions = 0
    /// Connections dropped because Redis sent more than the relay's caps allow.
    public private(set) var replyLimitDisconnects = 0
    /// PUBLISHes that waited for an (un)subscription in flight before going upstream.
    public private(set) var heldPublishCount = 0
    /// Messages on the fleet channel that were not understood (another version, or garbage).
    public private(set) var malformedFleetMessages = 0
    /// Whether PUBLISH's count includes the other relays' receivers (Redis has sharded pub/sub).
    public var countsFleetReceivers: Bool { fleetChannel == .subscribed }
    /// Other relays whose extra receivers this relay knows of.
    public var knownFleetRelays: Int { receivers.knownRelays }

    public static var tickNanoseconds: UInt64 { 100_000_000 }
    /// How long after subscribing the fleet channel the other relays' states are taken to be in
    /// (their answers to `hello`: a round trip each).
    static var fleetSettleNanoseconds: UInt64 { 300_000_000 }
    /// How long after a freeze of the loop the bytes read may be ones that waited in the kernel.
    static var staleAfterStallNanoseconds: UInt64 { 2_000_000_000 }

    public init(settings: Settings, registry: SubscriptionRegistry<Client>, now: UInt64) {
        self.settings = settings
        self.scope = settings.scope
        self.registry = registry
        let backoff = ReconnectBackoff(capMilliseconds: settings.backoffCapMilliseconds)
        self.sub = Connection(role: .subscriber, backoff: backoff)
        self.pub = Connection(role: .publisher, backoff: backoff)
        self.fleet = FleetCounts(namespace: settings.namespace, relayID: settings.relayID,
                                 ttlMilliseconds: settings.fleetTTLMilliseconds)
        self.receivers = FleetReceivers(namespace: settings.namespace, relayID: settings.relayID)
        self.degradedSince = now
        self.lastTick = now
    }

    // MARK: State

    public func phase(_ role: Role) -> Phase { connection(role).phase }

    /// Whether commands can be sent (PUBLISH, the lease), whatever the subscriber's state.
    public var isPublisherReady: Bool { pub.phase == .ready }

    /// Redis answers on at least one of the two connections. The subscriber counts from the
    /// moment it sends its resubscriptions (syncing): from then on Redis may deliver, so a relay
    /// delivering Postgres events locally must stop.
    public var isReachable: Bool { sub.phase == .syncing || sub.phase == .ready || pub.phase == .ready }

    public var pendingConfirmations: Int { ledger.count }

    /// Replies the publisher connection waits for.
    var pendingPublisherReplies: Int { pub.expected.count }

    /// Whether `id` is the current attempt of its role.
    public func isCurrent(_ id: ConnectionID) -> Bool { connection(id.role).generation == id.generation }

    private func connection(_ role: Role) -> Connection { role == .subscriber ? sub : pub }

    private mutating func with<R>(_ role: Role, _ body: (inout Connection) -> R) -> R {
        role == .subscriber ? body(&sub) : body(&pub)
    }

    // MARK: Lifecycle events

    public mutating func start(now: UInt64) -> [Action] {
        lastTick = now
        var actions: [Action] = [.log(.info, "redis backplane: connecting", [("url", settings.shownURL), ("relay_id", settings.relayID)])]
        for role in Role.allCases { connect(role, &actions) }
        return actions
    }

    /// Redis Cluster: this master left the slot map (failed over, or removed). Both connections
    /// close; PUBLISHes waiting on them are handed back (`.redirected`) for the new owners, the
    /// clients waiting for a confirmation get it, and the machine does nothing more.
    public mutating func retire(reason: String, now: UInt64) -> [Action] {
        var actions: [Action] = []
        retiring = true
        for role in Role.allCases { linkFailed(role, reason, now, &actions, atOnce: true) }
        for held in heldPublishes {
            actions.append(.redirected(held.waiter, channel: held.channel, payload: held.payload, sharded: held.sharded,
                                       alsoClassic: held.alsoClassic, echo: held.echo))
        }
        heldPublishes = []
        heldPerClient = [:]
        stopped = true
        return actions.filter { if case .connectAfter = $0 { return false } else { return true } }
    }

    /// Shutdown: removes this relay's fleet counts (its apps stop counting at once) and closes.
    public mutating func stop() -> [Action] {
        stopped = true
        var actions: [Action] = []
        if pub.phase == .ready, scope.home {
            for command in fleet.removal() { actions.append(.send(pub.id, command)) }
            if fleetChannel != .unavailable, receivers.hasAnnounced {
                actions.append(.send(pub.id, [BackplaneCommandWords.spublish, receivers.channel, receivers.message("bye")]))
            }
        }
        for role in Role.allCases {
            with(role) { c in
                if c.phase != .down { actions.append(.close(c.id)) }
                c.phase = .down
                c.generation += 1
            }
        }
        return actions
    }

    private mutating func connect(_ role: Role, _ actions: inout [Action]) {
        guard !stopped else { return }
        guard masterKnown || !settings.followsMaster else { return }  // Sentinel: no address yet
        let id = with(role) { c -> ConnectionID in
            c.generation += 1
            c.phase = .connecting
            c.expected.removeAll()
            c.deadline.reset()
            return c.id
        }
        actions.append(.connect(id))
    }

    /// Sentinel: the sentinels name a master, `shown` (the first, or a new one after a failover).
    /// Both connections are dropped and reconnected there at once, without the backoff wait; the
    /// resubscription of any reconnect re-establishes every subscription, and the gap is logged
    /// and counted as for any outage.
    public mutating func masterChanged(shown: String, now: UInt64) -> [Action] {
        guard settings.followsMaster, !stopped else { return [] }
        var actions: [Action] = []
        if masterKnown {
            masterSwitches += 1
            actions.append(.log(.notice, "redis master switched: reconnecting both connections to the new master",
                                [("master", shown), ("master_switches", "\(masterSwitches)")]))
        }
        masterKnown = true
        for role in Role.allCases {
            if connection(role).phase == .down {
                connect(role, &actions)
            } else {
                linkFailed(role, "the master moved to \(shown) (sentinel failover)", now, &actions, atOnce: true)
            }
        }
        return actions
    }

    /// A reconnect wait ended.
    public mutating func reconnectDue(_ id: ConnectionID) -> [Action] {
        guard isCurrent(id), connection(id.role).phase == .down else { return [] }
        var actions: [Action] = []
        connect(id.role, &actions)
        return actions
    }

    /// The transport is up: login, name, and the closing PING, pipelined.
    public mutating func connected(_ id: ConnectionID, now: UInt64) -> [Action] {
        guard isCurrent(id), connection(id.role).phase == .connecting else { return [] }
        var actions: [Action] = []
        with(id.role) { c in
            c.phase = .handshaking
            c.loggedBookkeepingError = false
            c.lastHeard = now
        }
        if let password = settings.password {
            var auth = [Self.arg("AUTH")]
            if let user = settings.username { auth.append(Self.arg(user)) }
            auth.append(Self.arg(password))
            send(id.role, auth, .handshake(step: "AUTH", fatal: true), now, &actions)
        }
        if id.role == .publisher && settings.db != 0 {
            send(id.role, [Self.arg("SELECT"), Self.arg(String(settings.db))], .handshake(step: "SELECT", fatal: true), now, &actions)
        }
        send(id.role, [Self.arg("CLIENT"), Self.arg("SETNAME"), Self.arg("pubsub-relay:\(settings.relayID):\(id.role.rawValue)")],
             .handshake(step: "CLIENT SETNAME", fatal: false), now, &actions)
        if settings.followsMaster { send(id.role, [Self.arg("ROLE")], .role, now, &actions) }
        send(id.role, [Self.arg("PING")], .handshakeDone, now, &actions)
        return actions
    }

    /// The connection failed or closed (`lastHeard`: when its last bytes arrived;
    /// `exceededReplyLimits`: Redis sent more than the caps allow).
    public mutating func failed(_ id: ConnectionID, reason: String, lastHeard: UInt64? = nil,
                                exceededReplyLimits: Bool = false, now: UInt64) -> [Action] {
        guard isCurrent(id) else { return [] }
        if exceededReplyLimits { replyLimitDisconnects += 1 }
        if let lastHeard { with(id.role) { $0.lastHeard = max($0.lastHeard, lastHeard) } }
        var actions: [Action] = []
        linkFailed(id.role, reason, now, &actions)
        return actions
    }

    /// Drops a connection: everything waiting on it is answered locally, the relay goes
    /// degraded, and a reconnect is scheduled.
    private mutating func linkFailed(_ role: Role, _ reason: String, _ now: UInt64, _ actions: inout [Action],
                                     atOnce: Bool = false) {
        guard connection(role).phase != .down else { return }
        let lastTick = self.lastTick
        let lastStall = self.lastStall
        let random = self.random
        let (id, wasUp, expected, delay) = with(role) { c -> (ConnectionID, Bool, Deque<Expected>, Int) in
            let wasUp = c.phase == .ready || c.phase == .syncing
            if wasUp {
                // The gap starts when the link was last known good: its last bytes — unless the
                // loop was frozen since the last tick, for then those bytes may have waited in the
                // kernel since before Redis cut the connection.
                var knownGood = c.lastHeard
                if now - min(lastTick, now) > 3 * Self.tickNanoseconds {
                    knownGood = min(knownGood, lastTick)
                } else if let stall = lastStall, knownGood >= stall.start, now - stall.end < Self.staleAfterStallNanoseconds {
                    // A tick noticed the freeze first; the bytes read since may still be stale.
                    knownGood = stall.start
                }
                c.lostAt = knownGood
            }
            let id = c.id
            c.phase = .down
            c.deadline.reset()
            let expected = c.expected
            c.expected.removeAll()
            let delay = atOnce ? 0 : c.backoff.nextDelayMilliseconds(now: now, unit: random)
            return (id, wasUp, expected, delay)
        }
        actions.append(.close(id))
        var waitIDs: [Int] = []
        if role == .subscriber {
            waitIDs = ledger.reset()
            resyncRemaining = 0
            pendingRun = nil
            if fleetChannel == .subscribed || fleetChannel == .subscribing { fleetChannel = .off }
            helloPending = false
            receivers.forgetAll()
        }
        lastError = reason
        updateMode(now, &actions)
        guard !stopped else { return }
        actions.append(.log(wasUp ? .error : .warning, "redis \(role == .subscriber ? "subscriber" : "publisher") connection down",
                            [("reason", reason), ("retry_in_ms", "\(delay)"), ("url", settings.shownURL)]))
        actions.append(.connectAfter(id, milliseconds: delay))
        // Answer what waited only now: a client resuming here already sees the relay degraded.
        for entry in expected { resolveLocally(entry, &actions) }
        for waitID in waitIDs { resolve(waitID, refusal: nil, &actions) }
        releaseHeldPublishes(now, &actions)
    }

    private mutating func resolveLocally(_ entry: Expected, _ actions: inout [Action]) {
        switch entry {
        case .publish(let w, _, _, let sharded, let echo, let resend?) where retiring:
            // The master is gone from the map: its new owner gets the PUBLISH.
            actions.append(.redirected(w, channel: resend.channel, payload: resend.payload, sharded: sharded,
                                       alsoClassic: resend.alsoClassic, echo: echo))
        case .publish(let w, _, _, _, _, _):
            unconfirmedPublishes += 1
            var reply = ByteBuffer()
            reply.writeRESPInteger(0)
            actions.append(.fill(w, reply))
        case .query(let w, let query):
            actions.append(.fillWithLocalAnswer(w, query))
        case .numsubPart(let id):
            numsubPartDone(id, nil, &actions)
        case .fleetAck(let waiters), .fleetMessage(let waiters):
            for w in waiters { actions.append(.fill(w, nil)) }
        case .callback(let callback):
            actions.append(.complete(callback, nil))
        case .echoBarrier(let w, let reply):
            actions.append(.fill(w, reply))
        case .channelList(let w, let pattern):
            actions.append(.fillWithLocalAnswer(w, .channels(pattern: pattern.map { ByteBuffer(bytes: $0) })))
        case .handshake, .handshakeDone, .role, .ping, .bookkeeping, .subscriptions, .fleetSubscription, .classicCopy:
            break
        }
    }

    private mutating func updateMode(_ now: UInt64, _ actions: inout [Action]) {
        defer { actions.append(.stateChanged) }
        let forwarding = sub.phase == .ready && pub.phase == .ready
        guard forwarding != isForwarding else { return }
        isForwarding = forwarding
        if forwarding {
            sub.lostAt = nil
            pub.lostAt = nil
            if let since = degradedSince, hasBeenUp {
                let seconds = Double(now - min(since, now)) / 1e9
                gaps += 1
                gapSecondsTotal += seconds
                actions.append(.log(.notice, "redis backplane restored; messages other relays published during the gap were not delivered here",
                                    [("gap_seconds", Self.format(seconds)), ("reconnects", "\(reconnects)")]))
            } else {
                actions.append(.log(.info, "redis backplane up", [("relay_id", settings.relayID)]))
            }
            hasBeenUp = true
            degradedSince = nil
        } else {
            degradedSince = [sub.lostAt, pub.lostAt].compactMap { $0 }.min() ?? now
            if hasBeenUp {
                actions.append(.log(.error, "redis backplane lost: degraded mode, local publishes reach local subscribers only",
                                    [("reason", lastError)]))
            }
        }
    }

    // MARK: Tick

    /// Every 100 ms: hung-peer deadlines, the subscriber's PING, the fleet-count refresh.
    /// `lastHeard` gives, per role, when bytes last arrived.
    public mutating func tick(now: UInt64, lastHeard: (Role) -> UInt64?) -> [Action] {
        var actions: [Action] = []
        // Redis is hung when it has been silent for the timeout with a request outstanding. After a
        // stall of the relay's own loop (a long burst of work, SIGSTOP) its replies may be sitting
        // unread in the socket: a deadline missed meanwhile says nothing about Redis.
        let stalled = now - min(lastTick, now) > 3 * Self.tickNanoseconds
        if stalled { lastStall = (lastTick, now) }
        for role in Role.allCases where connection(role).phase != .down && connection(role).phase != .connecting {
            let heard = lastHeard(role)
            let timeout = settings.timeoutNanoseconds
            let overdue = with(role) { c -> Bool in
                if let heard { c.lastHeard = max(c.lastHeard, heard) }
                c.deadline.resume(at: stalled ? now : c.lastHeard)
                return !stalled && c.deadline.isOverdue(now: now, timeoutNanoseconds: timeout)
            }
            if overdue {
                linkFailed(role, "no reply from Redis within \(Self.format(Double(settings.timeoutNanoseconds) / 1e9)) s (hung, stopped or overloaded)",
                           now, &actions)
            }
        }
        if sub.phase == .ready || sub.phase == .syncing, now - sub.lastPingSent >= settings.pingIntervalNanoseconds {
            sub.lastPingSent = now
            send(.subscriber, [Self.arg("PING")], .ping, now, &actions)
        }
        if fleetChannel == .subscribed {
            receivers.expire(now: now, ttlNanoseconds: UInt64(settings.fleetTTLMilliseconds) * 1_000_000)
        }
        if pub.phase == .ready, scope.home, fleetChannel != .unavailable, receivers.hasAnnounced, now - lastAlive >= 1_000_000_000 {
            lastAlive = now
            sendFleetMessages([receivers.message("alive")], waiters: [], now, &actions)
        }
        if pub.phase == .ready, scope.home, now - lastFleetRefresh >= 1_000_000_000 {
            // Unrefreshed for most of its lifetime (the relay was stalled or stopped): the hash
            // may have expired in Redis, so it is written whole again.
            if now - lastFleetRefresh >= UInt64(settings.fleetTTLMilliseconds) * 800_000 {
                rewriteFleetCounts(now, &actions)
            } else {
                lastFleetRefresh = now
                for command in fleet.refresh() { send(.publisher, command, .bookkeeping, now, &actions) }
            }
        }
        lastTick = now
        return actions
    }

    // MARK: Replies

    /// A reply (or a confirmation push) on a connection.
    public mutating func received(_ id: ConnectionID, _ reply: UpstreamReply, now: UInt64) -> [Action] {
        guard isCurrent(id), connection(id.role).phase != .down else { return [] }
        var actions: [Action] = []
        with(id.role) { $0.lastHeard = now }
        if case .confirmation(let kind, let subscribe, let name) = reply {
            guard id.role == .subscriber else {
                linkFailed(id.role, "unexpected pub/sub confirmation on the publisher connection", now, &actions)
                return actions
            }
            confirmation(kind, subscribe, name, now, &actions)
            return actions
        }
        if settings.followsMaster, case .error = reply, reply.text.hasPrefix("READONLY") {
            // Never publish to a demoted master (a replica accepts PUBLISH and keeps it to itself).
            linkFailed(id.role, "the node answered -READONLY: it is a replica now", now, &actions)
            actions.append(.notMaster("-READONLY"))
            return actions
        }
        guard let expected = with(id.role, { $0.expected.popFirst() }) else {
            linkFailed(id.role, "unexpected reply from Redis: \(String(reply.text.prefix(80)))", now, &actions)
            return actions
        }
        with(id.role) { $0.deadline.answered() }
        switch expected {
        case .handshake(let step, let fatal):
            if case .error = reply {
                let text = reply.text
                if fatal || text.hasPrefix("NOAUTH") || text.hasPrefix("WRONGPASS") {
                    linkFailed(id.role, "Redis refused \(step): \(text)", now, &actions)
                } else {
                    actions.append(.log(.notice, "redis: \(step) refused (continuing)", [("error", text)]))
                }
            }
        case .role:
            var role = reply.text
            if case .array(let items) = reply, let first = items.first { role = first.text }
            if role != "master" {
                linkFailed(id.role, "the node is not a master: ROLE answered \(role.prefix(80))", now, &actions)
                actions.append(.notMaster("ROLE answered \(role.prefix(80))"))
            }
        case .echoBarrier(let w, let out):
            actions.append(.fill(w, out))
        case .handshakeDone, .ping:
            if reply.isError {
                linkFailed(id.role, "Redis answered PING with an error: \(reply.text)", now, &actions)
            } else if case .handshakeDone = expected {
                handshakeDone(id.role, now, &actions)
            }
        case .publish(let w, let localExtra, let channel, let sharded, let echo, let resend):
            if let resend, ClusterRedirect.asksToRetry(reply) {
                // The slot moved (or the cluster is failing over): sent again once the map is in.
                // Without its classic copy: that one follows on this connection and a PUBLISH
                // names no key, so any node runs it whatever the map (no -MOVED, no -CLUSTERDOWN)
                // and the pattern subscribers have the message; sent again it would reach them twice.
                actions.append(.redirected(w, channel: resend.channel, payload: resend.payload, sharded: sharded,
                                           alsoClassic: false, echo: echo))
            } else if case .integer(let n) = reply {
                // The other relays' receivers as known now, when Redis has run the PUBLISH: a
                // change a relay told before it (and before its client's confirmation) is in.
                let remote: Int
                if let resend {
                    remote = scope.home ? remoteReceiverCount(for: resend.channel, sharded: sharded, patterns: resend.alsoClassic)
                                        : remoteReceivers?(resend.channel, sharded, resend.alsoClassic) ?? 0
                } else {
                    remote = channel.map { fleetChannel == .subscribed ? receivers.remoteExtra(for: $0, sharded: sharded) : 0 } ?? 0
                }
                var out = ByteBuffer()
                out.writeRESPInteger(n + localExtra + remote)
                if echo {
                    // Redis writes the message to its receivers before the PUBLISH's reply; the
                    // copy for this client comes on the other connection.
                    send(.subscriber, [Self.arg("PING")], .echoBarrier(w, out), now, &actions)
                } else {
                    actions.append(.fill(w, out))
                }
            } else {
                actions.append(.fillWithReply(w, reply))
            }
        case .query(let w, let query):
            if reply.isError {
                actions.append(.log(.warning, "redis: fleet-wide PUBSUB query failed; answering from this relay's own subscribers",
                                    [("error", reply.text)]))
                actions.append(.fillWithLocalAnswer(w, query))
            } else {
                actions.append(.fillWithReply(w, shownToApps(reply, answering: query)))
            }
        case .numsubPart(let gather):
            if reply.isError {
                actions.append(.log(.warning, "redis: fleet-wide PUBSUB query failed; answering from this relay's own subscribers",
                                    [("error", reply.text)]))
            }
            numsubPartDone(gather, reply, &actions)
        case .bookkeeping:
            logBookkeepingError(id.role, reply, &actions)
        case .fleetAck(let waiters):
            logBookkeepingError(id.role, reply, &actions)
            for w in waiters { actions.append(.fill(w, nil)) }
        case .fleetMessage(let waiters):
            if reply.isError { fleetChannelUnavailable(reply, &actions) }
            for w in waiters { actions.append(.fill(w, nil)) }
        case .fleetSubscription:
            if scope.isCluster, ClusterRedirect.asksToRetry(reply) {
                // The home slot moved as it was being subscribed: the new home subscribes it.
                if fleetChannel == .subscribing { fleetChannel = .off }
                actions.append(.slotLost("the fleet channel's SSUBSCRIBE was answered \(String(reply.text.prefix(60)))"))
            } else if reply.isError {
                fleetChannelUnavailable(reply, &actions)
            } else {
                fleetSubscribed(now, &actions)
            }
        case .callback(let callback):
            actions.append(.complete(callback, reply))
        case .channelList(let w, let pattern):
            guard case .array(let names) = reply else {
                actions.append(.log(.warning, "redis: fleet-wide PUBSUB query failed; answering from this relay's own subscribers",
                                    [("error", reply.text)]))
                actions.append(.fillWithLocalAnswer(w, .channels(pattern: pattern.map { ByteBuffer(bytes: $0) })))
                break
            }
            var out = ByteBuffer()
            let kept = names.filter { name in
                guard let pattern, case .bulk(let b) = name else { return true }
                return b.withUnsafeReadableBytes { GlobMatcher.matches(pattern: pattern, string: $0) }
            }
            out.writeRESPArrayHeader(kept.count)
            for name in kept { name.write(asRESP: .resp2, into: &out) }
            actions.append(.fill(w, out))
        case .classicCopy:
            if reply.isError, !loggedClassicCopyError {
                loggedClassicCopyError = true
                actions.append(.log(.warning, "redis cluster: the classic PUBLISH for pattern subscribers failed; they miss such messages",
                                    [("error", reply.text)]))
            }
        case .subscriptions(let total, let remaining):
            guard reply.isError, remaining == total else {
                linkFailed(id.role, "subscriber connection out of step: \(String(reply.text.prefix(80))) in answer to a subscription command",
                           now, &actions)
                return actions
            }
            subscriptionsRefused(total, reply, now, &actions)
        }
        return actions
    }

    /// Redis confirmed the subscriber's SSUBSCRIBE of the fleet channel.
    private mutating func fleetSubscribed(_ now: UInt64, _ actions: inout [Action]) {
        guard fleetChannel == .subscribing else { return }
        fleetChannel = .subscribed
        fleetSubscribedAt = now
        receivers.forgetAll()
        helloPending = true
        sayHello(now, &actions)
    }

    /// Whether `name` of `kind` is the fleet channel, which the subscriber holds for the relay
    /// itself: an app's SSUBSCRIBE of it shares that subscription and never sends its own.
    private func isFleetChannel(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        kind == .shard && name == receivers.channel
    }

    private mutating func handshakeDone(_ role: Role, _ now: UInt64, _ actions: inout [Action]) {
        let wasConnected = with(role) { c -> Bool in
            c.backoff.connected(at: now)
            defer { c.everConnected = true }
            return c.everConnected
        }
        if wasConnected { reconnects += 1 }
        switch role {
        case .subscriber:
            resubscribe(now, &actions)
        case .publisher:
            if scope.home { rewriteFleetCounts(now, &actions) }
            pub.phase = .ready
            if scope.home {
                sendFleetState(now, &actions)
                sayHello(now, &actions)
            }
            updateMode(now, &actions)
        }
    }

    /// Every channel, pattern and shard channel held locally, in one pipeline.
    private mutating func resubscribe(_ now: UInt64, _ actions: inout [Action]) {
        sub.phase = .syncing
        flushRun(now, &actions)
        if fleetChannel == .off, scope.home {
            fleetChannel = .subscribing
            send(.subscriber, [BackplaneCommandWords.ssubscribe, receivers.channel], .fleetSubscription, now, &actions)
        }
        let (channels, patterns, shardChannels) = carriedNames()
        orphans = []
        resyncRemaining = channels.count + patterns.count + shardChannels.count
        for (kind, names) in [(SubscriptionKind.channel, channels), (.pattern, patterns), (.shard, shardChannels)] {
            for chunk in commandChunks(kind, names) {
                for name in chunk { ledger.sent(kind, name, subscribe: true) }
                sendSubscriptionCommand(kind, subscribe: true, chunk, now, &actions)
            }
        }
        if resyncRemaining == 0 {
            sub.phase = .ready
        } else {
            actions.append(.log(.info, "redis backplane: resubscribing", [("channels", "\(channels.count)"), ("patterns", "\(patterns.count)"),
                                                                            ("shard_channels", "\(shardChannels.count)")]))
        }
        updateMode(now, &actions)
    }

    private mutating func confirmation(_ kind: SubscriptionKind, _ subscribe: Bool, _ name: ByteBuffer,
                                       _ now: UInt64, _ actions: inout [Action]) {
        if subscribe, isFleetChannel(kind, name), case .fleetSubscription? = sub.expected.first {
            sub.expected.removeFirst()
            sub.deadline.answered()
            fleetSubscribed(now, &actions)
            return
        }
        if kind == .shard, !subscribe, !ledger.isNext(.shard, name, subscribe: false) {
            shardChannelUnsubscribedByRedis(name, now, &actions)
            return
        }
        guard case .subscriptions(let total, let remaining)? = sub.expected.first else {
            linkFailed(.subscriber, "subscriber connection out of step: a confirmation with no subscription command in flight", now, &actions)
            return
        }
        if remaining > 1 {
            sub.expected[0] = .subscriptions(total: total, remaining: remaining - 1)
        } else {
            sub.expected.removeFirst()
            sub.deadline.answered()
        }
        do {
            let waitIDs = try ledger.confirmed(kind, name, subscribe: subscribe)
            resyncProgressed(now, &actions)
            for waitID in waitIDs { resolve(waitID, refusal: nil, &actions) }
            if !heldPublishes.isEmpty { releaseHeldPublishes(now, &actions) }
        } catch {
            linkFailed(.subscriber, "subscriber connection out of step: \(error)", now, &actions)
        }
    }

    /// Redis sent an `sunsubscribe` the relay did not ask for (a Redis Cluster drops a shard
    /// channel's subscribers when its slot moves; a standalone Redis never does): the link is out
    /// of step, and the reconnect's resubscription restores every shard channel.
    private mutating func shardChannelUnsubscribedByRedis(_ name: ByteBuffer, _ now: UInt64, _ actions: inout [Action]) {
        let shown = String(decoding: name.readableBytesView.prefix(128), as: UTF8.self)
        if scope.isCluster {
            // The slot left this master (resharding, or it is a replica now): the name is
            // subscribed again wherever the next map says it lives.
            slotMovesPushed += 1
            if registry.isHeld(.shard, name) || (scope.channelsSharded && registry.isHeld(.channel, name)) { orphans.insert(name.compacted()) }
            actions.append(.slotLost("Redis unsubscribed the shard channel '\(shown)': its slot moved"))
            return
        }
        linkFailed(.subscriber, "subscriber connection out of step: Redis unsubscribed the shard channel '\(shown)' unasked", now, &actions)
    }

    /// One resubscription after a reconnect was answered; the last one makes the link ready.
    private mutating func resyncProgressed(_ now: UInt64, _ actions: inout [Action]) {
        guard resyncRemaining > 0 else { return }
        resyncRemaining -= 1
        if resyncRemaining == 0 {
            sub.phase = .ready
            updateMode(now, &actions)
        }
    }

    /// Redis answered a (P)SUBSCRIBE of `count` names with an error: none of them is subscribed.
    /// A command of several names (one tick's subscriptions of several clients, or a
    /// resubscription) is sent again one name at a time, so that only the names Redis refuses
    /// fail; a refused name fails the commands of the clients that waited for it.
    private mutating func subscriptionsRefused(_ count: Int, _ reply: UpstreamReply, _ now: UInt64, _ actions: inout [Action]) {
        let refused: [UpstreamSubscriptionLedger<Int>.Refused]
        do {
            refused = try ledger.refuseOldest(count)
        } catch {
            linkFailed(.subscriber, "subscriber connection out of step: \(error)", now, &actions)
            return
        }
        if scope.isCluster, ClusterRedirect.asksToRetry(reply) {
            // Not a refusal: the slot is elsewhere now. The waiting clients are confirmed (the
            // new owner subscribes the names once the next map is in; the gap is counted there).
            for entry in refused {
                if entry.subscribe, holdsLocally(entry.kind, entry.name) { orphans.insert(entry.name) }
                resyncProgressed(now, &actions)
                for waitID in entry.waiters { resolve(waitID, refusal: nil, &actions) }
            }
            actions.append(.slotLost("a subscription was answered \(String(reply.text.prefix(60)))"))
            if !heldPublishes.isEmpty { releaseHeldPublishes(now, &actions) }
            return
        }
        var errorLine = ByteBuffer()
        reply.write(asRESP: .resp2, into: &errorLine)
        // Names queued for this tick are in the ledger already: they go out before the retries.
        flushRun(now, &actions)
        for entry in refused {
            if count > 1, entry.subscribe, holdsLocally(entry.kind, entry.name) {
                ledger.sent(entry.kind, entry.name, subscribe: true)
                for waitID in entry.waiters { _ = ledger.wait(for: entry.kind, entry.name, waitID) }
                sendSubscriptionCommand(entry.kind, subscribe: true, [entry.name], now, &actions)
                continue
            }
            if entry.subscribe {
                refusedSubscriptions += 1
                let first = loggedRefusals.count < 10_000 && loggedRefusals.insert(entry.name).inserted
                let shown = String(decoding: entry.name.readableBytesView.prefix(128), as: UTF8.self)
                actions.append(.log(first ? .warning : .debug,
                                    "redis refused a subscription: the apps asking for it get Redis's error, other subscriptions carry on",
                                    [(Self.logKey(entry.kind), shown), ("error", reply.text)]))
            }
            resyncProgressed(now, &actions)
            for waitID in entry.waiters { resolve(waitID, refusal: errorLine, &actions) }
        }
        if !heldPublishes.isEmpty { releaseHeldPublishes(now, &actions) }
    }

    /// Whether a local client holds what the upstream subscription `kind`/`name` carries (on a
    /// cluster in sharded mode an upstream shard channel carries the app channel too).
    private func holdsLocally(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        registry.isHeld(kind, name) || (kind == .shard && scope.channelsSharded && registry.isHeld(.channel, name))
    }

    private static func logKey(_ kind: SubscriptionKind) -> String {
        switch kind {
        case .channel: return "channel"
        case .pattern: return "pattern"
        case .shard: return "shard_channel"
        }
    }

    /// One of the names a SUBSCRIBE waited for was confirmed (or confirmed locally, the link
    /// having dropped), or refused; after the last, the client sees its confirmations or Redis's
    /// error (and the command is undone).
    private mutating func resolve(_ waitID: Int, refusal: ByteBuffer?, _ actions: inout [Action]) {
        guard var wait = waits[waitID] else { return }
        if let refusal, wait.refusal == nil { wait.refusal = refusal }
        wait.remaining -= 1
        guard wait.remaining == 0 else {
            waits[waitID] = wait
            return
        }
        waits[waitID] = nil
        if let refusal = wait.refusal {
            actions.append(.undoSubscriptions(wait.client, wait.kind, wait.names))
            actions.append(.fill(wait.waiter, refusal))
        } else {
            actions.append(.fill(wait.waiter, nil))
        }
    }

    /// Redis's SHARDCHANNELS lists the fleet channel, which every relay holds for itself: it is
    /// left out unless an app of this relay holds it too.
    private func shownToApps(_ reply: UpstreamReply, answering query: PubSubQuery) -> UpstreamReply {
        guard case .shardchannels = query, case .array(let names) = reply,
              !registry.isHeld(.shard, receivers.channel) else { return reply }
        return .array(names.filter { $0 != .bulk(receivers.channel) })
    }

    private mutating func numsubPartDone(_ id: Int, _ reply: UpstreamReply?, _ actions: inout [Action]) {
        guard var gather = numsubs[id] else { return }
        gather.remaining -= 1
        if !gather.failed, case .array(let elements)? = reply {
            gather.elements += elements.count
            for e in elements { e.write(asRESP: .resp2, into: &gather.body) }
        } else {
            gather.failed = true
            gather.body = ByteBuffer()
        }
        guard gather.remaining == 0 else {
            numsubs[id] = gather
            return
        }
        numsubs[id] = nil
        if gather.failed {
            actions.append(.fillWithLocalAnswer(gather.waiter, gather.query))
        } else {
            var out = ByteBuffer()
            out.writeRESPArrayHeader(gather.elements)
            out.writeImmutableBuffer(gather.body)
            actions.append(.fill(gather.waiter, out))
        }
    }

    private mutating func logBookkeepingError(_ role: Role, _ reply: UpstreamReply, _ actions: inout [Action]) {
        guard reply.isError else { return }
        let first = with(role) { c -> Bool in
            defer { c.loggedBookkeepingError = true }
            return !c.loggedBookkeepingError
        }
        guard first else { return }
        actions.append(.log(.warning, "redis: writing the fleet subscriber counts failed; PUBSUB NUMSUB will miss this relay's apps",
                            [("error", reply.text), ("namespace", fleet.namespace)]))
    }

    // MARK: Client events (from the executor, through the edge)

    /// `client` now holds `name` (`first`: no local client held it before). `waiter` is asked
    /// for only when the client's confirmation must also wait for the fleet-count write.
    ///
    /// On a cluster (`NodeScope`), the home master's machine keeps the fleet's books for every
    /// name (`bookkeeping`) and the owning master's machine holds the subscription (`upstream`).
    public mutating func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: Client,
                                           now: UInt64, bookkeeping: Bool = true, upstream: Bool = true,
                                           waiter: () -> Waiter) -> [Action] {
        var actions: [Action] = []
        if bookkeeping, scope.home { fleetChanged(kind, name, client: isForwarding ? client : nil, waiter) }
        let up = scope.upstreamKind(kind)
        if upstream, first, !sharesUpstream(kind, name), !isFleetChannel(up, name), sub.phase == .syncing || sub.phase == .ready {
            queueSubscription(up, name.compacted(), subscribe: true, now, &actions)
        }
        return actions
    }

    public mutating func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool, now: UInt64,
                                             bookkeeping: Bool = true, upstream: Bool = true) -> [Action] {
        var actions: [Action] = []
        if bookkeeping, scope.home { fleetChanged(kind, name, client: nil) { fatalError("no waiter without a client") } }
        let up = scope.upstreamKind(kind)
        if upstream, last, !sharesUpstream(kind, name), !isFleetChannel(up, name), sub.phase == .syncing || sub.phase == .ready {
            queueSubscription(up, name.compacted(), subscribe: false, now, &actions)
        }
        return actions
    }

    /// On a cluster in sharded mode an app's channel and its shard channel of the same name ride
    /// one upstream `SSUBSCRIBE`: held while either is.
    private func sharesUpstream(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        guard scope.channelsSharded, kind != .pattern else { return false }
        return registry.isHeld(kind == .channel ? .shard : .channel, name)
    }

    /// The names of one (P|S)SUBSCRIBE that wait for upstream (empty: confirm at once).
    public func pendingNames(_ kind: SubscriptionKind, _ names: [ByteBuffer]) -> [ByteBuffer] {
        guard isForwarding else { return [] }
        let up = scope.upstreamKind(kind)
        return names.filter { ledger.isPending(up, $0) }
    }

    /// Holds `client`'s confirmations in `waiter` until every one of `pending` is confirmed;
    /// `names` are all the names the command added (undone if Redis refuses one).
    public mutating func hold(_ kind: SubscriptionKind, names: [ByteBuffer], pending: [ByteBuffer], for client: Client, waiter: Waiter) {
        let id = nextWaitID
        nextWaitID += 1
        waits[id] = SubscribeWait(client: client, waiter: waiter, kind: kind, names: names, remaining: pending.count)
        for name in pending { _ = ledger.wait(for: scope.upstreamKind(kind), name, id) }
    }

    /// A local PUBLISH (`sharded`: SPUBLISH). One that an (un)subscription in flight could affect
    /// waits until Redis has confirmed it, and so do the same client's later ones, PUBLISH or
    /// SPUBLISH (its messages stay in order). `echo`: the client receives the message itself
    /// (its reply must follow its copies).
    ///
    /// On a cluster in sharded mode, `alsoClassic` follows the SPUBLISH with a classic PUBLISH of
    /// the same message on the same connection, for the fleet's pattern subscribers (README,
    /// "Redis Cluster").
    public mutating func publish(channel: ByteBuffer, payload: ByteBuffer, sharded: Bool = false, from client: Client, waiter: Waiter,
                                 echo: Bool = false, alsoClassic: Bool = false, now: UInt64) -> [Action] {
        let key = ObjectIdentifier(client)
        if (!heldPublishes.isEmpty && heldPerClient[key] != nil) || ledger.affects(channel: channel, sharded: sharded) {
            heldPublishCount += 1
            heldPublishes.append(HeldPublish(client: key, channel: channel, payload: payload, sharded: sharded, waiter: waiter, echo: echo,
                                             alsoClassic: alsoClassic))
            heldPerClient[key, default: 0] += 1
            return []
        }
        var actions: [Action] = []
        sendPublish(channel, payload, sharded: sharded, waiter, echo: echo, alsoClassic: alsoClassic, now, &actions)
        return actions
    }

    private mutating func sendPublish(_ channel: ByteBuffer, _ payload: ByteBuffer, sharded: Bool, _ waiter: Waiter, echo: Bool,
                                      alsoClassic: Bool = false, _ now: UInt64, _ actions: inout [Action]) {
        let cluster = scope.isCluster
        let expected = Expected.publish(waiter, localExtra: localExtra(for: channel, sharded: sharded, patterns: alsoClassic),
                                        channel: fleetChannel == .subscribed ? channel : nil, sharded: sharded, echo: echo,
                                        resend: cluster ? Resend(channel: channel, payload: payload, alsoClassic: alsoClassic) : nil)
        send(.publisher, [sharded ? BackplaneCommandWords.spublish : Self.publishCommand, channel, payload], expected, now, &actions)
        if alsoClassic { send(.publisher, [Self.publishCommand, channel, payload], .classicCopy, now, &actions) }
    }

    /// This relay's receivers of a PUBLISH to `channel` that Redis does not count: all but one
    /// client of the channel, and of each matching pattern (Redis counts the relay once per name);
    /// of an SPUBLISH, all but one client of the shard channel.
    ///
    /// On a cluster in sharded mode Redis counts each relay once for the upstream SSUBSCRIBE that
    /// carries both the channel and the shard channel, and none of the pattern subscribers (the
    /// classic copy's count is not asked for): `patterns` adds every local one that matches.
    private func localExtra(for channel: ByteBuffer, sharded: Bool, patterns: Bool = false) -> Int {
        if scope.channelsSharded {
            var n = max(0, registry.numberOfSubscribers(channel: channel) + registry.numberOfShardSubscribers(shardChannel: channel) - 1)
            if patterns, registry.patternCount > 0 {
                channel.withUnsafeReadableBytes { ch in
                    for entry in registry.patterns.values where entry.nameBytes.withUnsafeBytes({ GlobMatcher.matches(pattern: $0, string: ch) }) {
                        n += entry.subscribers.count
                    }
                }
            }
            return n
        }
        if sharded { return max(0, registry.numberOfShardSubscribers(shardChannel: channel) - 1) }
        var n = max(0, registry.numberOfSubscribers(channel: channel) - 1)
        if registry.sharedPatternCount > 0 {
            channel.withUnsafeReadableBytes { ch in
                for entry in registry.patterns.values where entry.subscribers.count > 1 {
                    if entry.nameBytes.withUnsafeBytes({ GlobMatcher.matches(pattern: $0, string: ch) }) {
                        n += entry.subscribers.count - 1
                    }
                }
            }
        }
        return n
    }

    /// Sends the held PUBLISHes that nothing in flight affects any more, in order, each after
    /// the same client's earlier ones; all of them, delivered locally, if the relay is degraded.
    private mutating func releaseHeldPublishes(_ now: UInt64, _ actions: inout [Action]) {
        guard !heldPublishes.isEmpty else { return }
        var blocked: Set<ObjectIdentifier> = []
        var kept: Deque<HeldPublish> = []
        while let held = heldPublishes.popFirst() {
            if isForwarding && (blocked.contains(held.client) || ledger.affects(channel: held.channel, sharded: held.sharded)) {
                blocked.insert(held.client)
                kept.append(held)
                continue
            }
            let left = heldPerClient[held.client, default: 1] - 1
            heldPerClient[held.client] = left > 0 ? left : nil
            if isForwarding {
                sendPublish(held.channel, held.payload, sharded: held.sharded, held.waiter, echo: held.echo, alsoClassic: held.alsoClassic,
                            now, &actions)
            } else {
                actions.append(.publishLocally(held.waiter, channel: held.channel, payload: held.payload, sharded: held.sharded))
            }
        }
        heldPublishes = kept
    }

    /// A PUBSUB question for the whole fleet; nil while degraded (answer locally, reserving nothing).
    public mutating func answer(_ query: PubSubQuery, now: UInt64, waiter: () -> Waiter) -> [Action]? {
        guard isForwarding else { return nil }
        var actions: [Action] = []
        let w = waiter()
        switch query {
        case .numsub(let channels), .shardnumsub(let channels):
            // On a cluster the home master sees the direct subscribers of its own slots only, and
            // in sharded mode every relay's SSUBSCRIBEs as well: the relays' counts are the answer.
            let countsDirect = !scope.isCluster || (!query.isSharded && !scope.channelsSharded)
            let commands = fleet.numsubCommands(channels, sharded: query.isSharded, countsDirect: countsDirect)
            let id = nextNumsubID
            nextNumsubID += 1
            numsubs[id] = NumsubGather(waiter: w, query: query, remaining: commands.count)
            for command in commands { send(.publisher, command, .numsubPart(id), now, &actions) }
        case .channels(let pattern) where scope.channelsSharded:
            // Redis holds the fleet's channels as shard channels, spread over the masters: the
            // fleet's own counts list them.
            send(.publisher, fleet.channelsCommand(), .channelList(w, pattern: pattern.map { Array($0.readableBytesView) }), now, &actions)
        case .channels(let pattern):
            send(.publisher, [Self.arg("PUBSUB"), Self.arg("CHANNELS")] + (pattern.map { [$0] } ?? []), .query(w, query), now, &actions)
        case .shardchannels(let pattern):
            send(.publisher, [Self.arg("PUBSUB"), Self.arg("SHARDCHANNELS")] + (pattern.map { [$0] } ?? []), .query(w, query), now, &actions)
        case .numpat:
            send(.publisher, [Self.arg("PUBSUB"), Self.arg("NUMPAT")], .query(w, query), now, &actions)
        }
        return actions
    }

    /// A command on the publisher connection for another part of the relay; its reply (nil if
    /// the connection is not ready or drops first) comes back as `.complete`.
    public mutating func request(_ args: [ByteBuffer], _ callback: Callback, now: UInt64) -> [Action] {
        guard pub.phase == .ready else { return [.complete(callback, nil)] }
        var actions: [Action] = []
        send(.publisher, args, .callback(callback), now, &actions)
        return actions
    }

    /// The end of the tick in which subscriptions or counts changed: the gathered run of
    /// (un)subscriptions and the fleet-count update go out.
    public mutating func flush(now: UInt64) -> [Action] {
        var actions: [Action] = []
        flushRun(now, &actions)
        flushFleet(now, &actions)
        return actions
    }

    // MARK: Redis Cluster

    /// The names this machine holds upstream, by upstream kind: everything on one server; on a
    /// cluster, the patterns and classic channels on the home master and, on each master, the
    /// shard names (in sharded mode the app channels too) of the slots it serves.
    private func carriedNames() -> (channels: [ByteBuffer], patterns: [ByteBuffer], shard: [ByteBuffer]) {
        let patterns = scope.home ? Array(registry.patterns.keys) : []
        guard scope.isCluster else {
            return (Array(registry.activeChannels), patterns, registry.activeShardChannels.filter { !isFleetChannel(.shard, $0) })
        }
        let channels = scope.home && !scope.channelsSharded ? Array(registry.activeChannels) : []
        var shard: [ByteBuffer] = []
        var seen = Set<ByteBuffer>()
        let candidates = scope.channelsSharded ? Array(registry.activeChannels) + Array(registry.activeShardChannels)
                                               : Array(registry.activeShardChannels)
        for name in candidates where scope.serves(name) && !isFleetChannel(.shard, name) && seen.insert(name).inserted {
            shard.append(name)
        }
        return (channels, patterns, shard)
    }

    /// `names` in commands of at most `namesPerCommand`; on a cluster, shard names grouped by slot.
    private func commandChunks(_ kind: SubscriptionKind, _ names: [ByteBuffer]) -> [[ByteBuffer]] {
        var chunks: [[ByteBuffer]] = []
        if kind == .shard && scope.isCluster {
            var bySlot: [Int: [ByteBuffer]] = [:]
            for name in names { bySlot[name.withUnsafeReadableBytes { ClusterSlot.of($0) }, default: []].append(name) }
            for slot in bySlot.keys.sorted() { chunks += Self.split(bySlot[slot]!) }
            return chunks
        }
        return Self.split(names)
    }

    private static func split(_ names: [ByteBuffer]) -> [[ByteBuffer]] {
        stride(from: 0, to: names.count, by: namesPerCommand).map { Array(names[$0..<min($0 + namesPerCommand, names.count)]) }
    }

    /// The slot map changed: this master now serves `slots` (and is the home master or not).
    /// The names of slots it gained are subscribed here (their old master dropped them), and so
    /// are the ones Redis dropped unasked that it still serves; those of slots it lost are left
    /// to their new master. A change of home moves the fleet's part in place, on the open
    /// connections (the channels of this master keep flowing): the new home subscribes the fleet
    /// channel and the patterns (classic mode: the classic channels) and writes the books; the
    /// old one unsubscribes them.
    public mutating func ownershipChanged(slots: [Bool], home: Bool, now: UInt64) -> [Action] {
        precondition(slots.count == ClusterSlot.count, "a slot map has \(ClusterSlot.count) slots")
        var actions: [Action] = []
        let old = scope.slots ?? NodeScope.noSlots
        let homeChanged = scope.home != home
        scope.slots = slots
        scope.home = home
        if homeChanged { homeMoved(now, &actions) }
        guard sub.phase == .syncing || sub.phase == .ready, slots != old || !orphans.isEmpty else {
            flushRun(now, &actions)
            return actions
        }
        let (_, _, shard) = carriedNames()
        for name in shard {
            let slot = name.withUnsafeReadableBytes { ClusterSlot.of($0) }
            guard !old[slot] || orphans.contains(name), !ledger.isPending(.shard, name) else { continue }
            movedSubscriptions += 1
            queueSubscription(.shard, name, subscribe: true, now, &actions)
        }
        orphans = []
        flushRun(now, &actions)
        return actions
    }

    /// The home came to this master (`scope.home`) or left it; see `ownershipChanged`.
    private mutating func homeMoved(_ now: UInt64, _ actions: inout [Action]) {
        let subscriberUp = sub.phase == .syncing || sub.phase == .ready
        let classic = scope.channelsSharded ? [] : Array(registry.activeChannels)
        if scope.home {
            actions.append(.log(.notice, "redis cluster: the fleet's keys, channel and patterns moved to this master", [("url", settings.shownURL)]))
            if subscriberUp {
                if fleetChannel == .off {
                    fleetChannel = .subscribing
                    send(.subscriber, [BackplaneCommandWords.ssubscribe, receivers.channel], .fleetSubscription, now, &actions)
                }
                for pattern in registry.patterns.keys where !ledger.isPending(.pattern, pattern) {
                    queueSubscription(.pattern, pattern, subscribe: true, now, &actions)
                }
                for channel in classic where !ledger.isPending(.channel, channel) {
                    queueSubscription(.channel, channel, subscribe: true, now, &actions)
                }
            }
            if pub.phase == .ready {
                rewriteFleetCounts(now, &actions)
                sendFleetState(now, &actions)
            }
        } else {
            actions.append(.log(.notice, "redis cluster: the fleet's keys, channel and patterns moved away from this master", [("url", settings.shownURL)]))
            if subscriberUp {
                for pattern in registry.patterns.keys { queueSubscription(.pattern, pattern, subscribe: false, now, &actions) }
                for channel in classic { queueSubscription(.channel, channel, subscribe: false, now, &actions) }
            }
            // Its slot left with the home: Redis dropped the subscription (or answers -MOVED).
            fleetChannel = .off
            helloPending = false
            receivers.forgetAll()
            fleetWaiters.forEach { actions.append(.fill($0.waiter, nil)) }
            fleetWaiters = []
        }
    }

    /// Whether a pattern held anywhere in the fleet (here, or by a relay this one has heard of)
    /// matches `channel`; true while the fleet's patterns are not known yet — before the fleet
    /// channel is subscribed and for `fleetSettleNanoseconds` after, while the other relays'
    /// states come in (a classic copy too many costs less than a message lost).
    public func fleetHoldsPattern(matching channel: ByteBuffer) -> Bool {
        guard fleetChannel == .subscribed, lastTick - min(fleetSubscribedAt, lastTick) >= Self.fleetSettleNanoseconds else { return true }
        if registry.patternCount > 0 {
            let local = channel.withUnsafeReadableBytes { ch in
                registry.patterns.values.contains { $0.nameBytes.withUnsafeBytes { GlobMatcher.matches(pattern: $0, string: ch) } }
            }
            if local { return true }
        }
        return receivers.remotePatternMatches(channel)
    }

    /// The other relays' receivers of a message on `channel` that Redis did not count: on a
    /// cluster in sharded mode their channel and shard extras and, when the message also went
    /// classic (`patterns`), every subscriber of their matching patterns.
    public func remoteReceiverCount(for channel: ByteBuffer, sharded: Bool, patterns: Bool) -> Int {
        guard fleetChannel == .subscribed else { return 0 }
        guard scope.channelsSharded else { return receivers.remoteExtra(for: channel, sharded: sharded) }
        return receivers.remoteExtra(for: channel, sharded: true) + receivers.remoteChannelExtra(for: channel)
            + (patterns ? receivers.remotePatternHolders(for: channel) : 0)
    }

    /// Names this machine holds upstream now.
    public var upstreamNameCount: Int {
        let (channels, patterns, shard) = carriedNames()
        return channels.count + patterns.count + shard.count
    }

    // MARK: Sending

    private mutating func send(_ role: Role, _ args: [ByteBuffer], _ expected: Expected, _ now: UInt64, _ actions: inout [Action]) {
        let phase = connection(role).phase
        guard phase != .down && phase != .connecting else {
            resolveLocally(expected, &actions)
            return
        }
        let id = with(role) { c -> ConnectionID in
            c.expected.append(expected)
            c.deadline.sent(at: now)
            return c.id
        }
        actions.append(.send(id, args))
    }

    /// Most names one upstream (P)(UN)SUBSCRIBE carries.
    static var namesPerCommand: Int { 1024 }

    /// Upstream (un)subscriptions of one tick go out as one command per run of the same kind
    /// (SUBSCRIBE a b c …), in order; the ledger records each name as it is queued.
    private mutating func queueSubscription(_ kind: SubscriptionKind, _ name: ByteBuffer, subscribe: Bool,
                                            _ now: UInt64, _ actions: inout [Action]) {
        ledger.sent(kind, name, subscribe: subscribe)
        let slot = kind == .shard && scope.isCluster ? name.withUnsafeReadableBytes { ClusterSlot.of($0) } : nil
        if let run = pendingRun, run.kind != kind || run.subscribe != subscribe || run.slot != slot || run.names.count >= Self.namesPerCommand {
            flushRun(now, &actions)
        }
        if pendingRun == nil { pendingRun = (kind, subscribe, slot, []) }
        pendingRun!.names.append(name)
    }

    private mutating func flushRun(_ now: UInt64, _ actions: inout [Action]) {
        guard let run = pendingRun else { return }
        pendingRun = nil
        sendSubscriptionCommand(run.kind, subscribe: run.subscribe, run.names, now, &actions)
    }

    /// `(P|S)(UN)SUBSCRIBE name…` on the subscriber connection (the ledger already has the names).
    private mutating func sendSubscriptionCommand(_ kind: SubscriptionKind, subscribe: Bool, _ names: [ByteBuffer],
                                                  _ now: UInt64, _ actions: inout [Action]) {
        send(.subscriber, [Self.arg(kind.command(subscribe: subscribe))] + names, .subscriptions(total: names.count, remaining: names.count), now, &actions)
    }

    /// A channel's (or shard channel's) local count changed: written to the fleet hash at the end of the tick. While
    /// forwarding, the subscribing client's confirmation also waits for that write, so that a
    /// NUMSUB asked after the confirmation (anywhere in the fleet) counts it.
    private mutating func fleetChanged(_ kind: SubscriptionKind, _ name: ByteBuffer, client: Client?, _ waiter: () -> Waiter) {
        let name = name.compacted()
        if kind != .pattern { fleet.changed(name, sharded: kind == .shard) }
        if fleetChannel != .unavailable { receivers.changed(kind, name) }
        guard pub.phase == .ready else { return }
        if let client, fleetWaiters.last?.client !== client {
            fleetWaiters.append((client, waiter()))
        }
    }

    private mutating func flushFleet(_ now: UInt64, _ actions: inout [Action]) {
        let waiters = fleetWaiters.map(\.waiter)
        fleetWaiters = []
        let deltas = pub.phase == .ready && fleetChannel != .unavailable ? receivers.takeDelta(count: localCount) : []
        guard pub.phase == .ready, fleet.hasChanges || !deltas.isEmpty else {
            for w in waiters { actions.append(.fill(w, nil)) }
            return
        }
        let commands = fleet.hasChanges ? fleet.takeUpdate { field in
            field.sharded ? registry.numberOfShardSubscribers(shardChannel: field.name) : registry.numberOfSubscribers(channel: field.name)
        } : []
        for (i, command) in commands.enumerated() {
            send(.publisher, command, i == commands.count - 1 && deltas.isEmpty ? .fleetAck(waiters) : .bookkeeping, now, &actions)
        }
        sendFleetMessages(deltas, waiters: waiters, now, &actions)
    }

    private func localCount(_ key: FleetReceivers.Key) -> Int {
        switch key.kind {
        case .channel: return registry.numberOfSubscribers(channel: key.name)
        case .pattern: return registry.patterns[key.name]?.subscribers.count ?? 0
        case .shard: return registry.numberOfShardSubscribers(shardChannel: key.name)
        }
    }

    /// SPUBLISHes on the fleet channel; the last one releases `waiters`.
    private mutating func sendFleetMessages(_ payloads: [ByteBuffer], waiters: [Waiter], _ now: UInt64, _ actions: inout [Action]) {
        for (i, payload) in payloads.enumerated() {
            send(.publisher, [BackplaneCommandWords.spublish, receivers.channel, payload],
                 .fleetMessage(i == payloads.count - 1 ? waiters : []), now, &actions)
        }
    }

    /// This relay's whole state to the fleet: when its publisher (re)connects (what it said
    /// meanwhile was lost), or another relay joined.
    private mutating func sendFleetState(_ now: UInt64, _ actions: inout [Action]) {
        guard pub.phase == .ready, fleetChannel != .unavailable else { return }
        var counts: [(FleetReceivers.Key, Int)] = []
        for channel in registry.activeChannels {
            let n = registry.numberOfSubscribers(channel: channel)
            if n > 1 { counts.append((FleetReceivers.Key(kind: .channel, name: channel), n)) }
        }
        for (pattern, entry) in registry.patterns {
            counts.append((FleetReceivers.Key(kind: .pattern, name: pattern), entry.subscribers.count))
        }
        for channel in registry.activeShardChannels {
            let n = registry.numberOfShardSubscribers(shardChannel: channel)
            if n > 1 { counts.append((FleetReceivers.Key(kind: .shard, name: channel), n)) }
        }
        let state = receivers.takeState(counts)
        lastAlive = now
        sendFleetMessages(state, waiters: [], now, &actions)
    }

    /// Once subscribed to the fleet channel (and the publisher up): asks the other relays for
    /// their states.
    private mutating func sayHello(_ now: UInt64, _ actions: inout [Action]) {
        guard helloPending, pub.phase == .ready else { return }
        helloPending = false
        sendFleetMessages([receivers.message("hello")], waiters: [], now, &actions)
    }

    /// A message Redis delivered on the fleet channel.
    public mutating func fleetMessage(_ payload: ByteBuffer, now: UInt64) -> [Action] {
        guard fleetChannel == .subscribed else { return [] }
        var actions: [Action] = []
        do {
            switch try receivers.received(payload, now: now) {
            case .none:
                break
            case .sendState:
                sendFleetState(now, &actions)
            case .sayHello:
                // At most once a second, however many forgotten relays speak up.
                if now - min(lastHelloAsked, now) >= 1_000_000_000 {
                    lastHelloAsked = now
                    helloPending = true
                    sayHello(now, &actions)
                }
            }
        } catch {
            malformedFleetMessages += 1
            if malformedFleetMessages == 1 {
                actions.append(.log(.warning, "redis: a message on the fleet channel was not understood (a relay of another version?); ignored",
                                    [("channel", String(buffer: receivers.channel))]))
            }
        }
        return actions
    }

    /// Redis has no sharded pub/sub (before 7.0): PUBLISH counts this relay's receivers exactly and
    /// each other relay as one.
    private mutating func fleetChannelUnavailable(_ reply: UpstreamReply, _ actions: inout [Action]) {
        guard fleetChannel != .unavailable else { return }
        fleetChannel = .unavailable
        receivers.forgetAll()
        actions.append(.log(.warning, "redis: no sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7); PUBLISH counts each other relay as one receiver",
                            [("error", reply.text)]))
    }

    /// This relay's whole fleet-count hash, from the registry (after a reconnect or a stall).
    private mutating func rewriteFleetCounts(_ now: UInt64, _ actions: inout [Action]) {
        let counts = registry.activeChannels.map { ($0, registry.numberOfSubscribers(channel: $0)) }
        let shardCounts = registry.activeShardChannels.map { ($0, registry.numberOfShardSubscribers(shardChannel: $0)) }
        for command in fleet.takeFullRewrite(counts, shardCounts: shardCounts) { send(.publisher, command, .bookkeeping, now, &actions) }
        lastFleetRefresh = now
    }

    // MARK: Helpers

    private static var publishCommand: ByteBuffer { BackplaneCommandWords.publish }

    struct HeldPublish {
        let client: ObjectIdentifier
        let channel: ByteBuffer
        let payload: ByteBuffer
        let sharded: Bool
        let waiter: Waiter
        /// Whether the client received the message itself when it sent it (Redis's moment).
        let echo: Bool
        let alsoClassic: Bool
    }

    static func arg(_ s: String) -> ByteBuffer {
        ByteBuffer(string: s)
    }

    static func format(_ seconds: Double) -> String { SecondsText.format(seconds) }
}

/// Words of the hot path's commands, made once (a generic type cannot hold stored statics).
enum BackplaneCommandWords {
    static let publish = ByteBuffer(string: "PUBLISH")
    static let spublish = ByteBuffer(string: "SPUBLISH")
    static let ssubscribe = ByteBuffer(string: "SSUBSCRIBE")
}

/// The subscriber's subscription to the fleet channel (`FleetReceivers`).
enum FleetChannelState: Equatable {
    case off, subscribing, subscribed
    /// Redis refused SSUBSCRIBE or SPUBLISH: no sharded pub/sub there.
    case unavailable
}

/// Seconds with three decimals, as the logs and INFO show them (`gap_seconds=4.084`).
public enum SecondsText {
    public static func format(_ seconds: Double) -> String {
        let ms = Int((seconds * 1000).rounded())
        let frac = ms % 1000
        return "\(ms / 1000)." + String(repeating: "0", count: frac < 10 ? 2 : frac < 100 ? 1 : 0) + "\(frac)"
    }
}
