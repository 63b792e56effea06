#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The Redis backplane's I/O (README, "The Redis backplane"): owns the connections to Redis and
/// runs the actions of the `BackplaneStateMachine`, which holds all of the backplane's logic.
/// Messages Redis delivers go from the subscriber connection straight to the hub (the hot path);
/// everything else — replies, confirmations, failures, ticks, the executor's calls — is an event
/// for the machine, and what it returns is done here, in order.
///
/// Confined to the relay's event loop, like the hub it feeds.
final class UpstreamRedisLink: Backplane, BackplaneService, RedisConnectionDelegate {
    typealias Client = ClientConnection
    typealias Waiter = (client: ClientConnection, slot: ReplySlot)
    typealias Callback = (UpstreamReply?) -> Void
    typealias Machine = BackplaneStateMachine<ClientConnection, Waiter, Callback>

    let url: RedisURL
    let relayID: String
    private let timeout: TimeAmount
    private let eventLoop: EventLoop
    private unowned let state: RelayState
    private let replyLimits: UpstreamReplyScanner.Limits
    private var machine: Machine
    /// The open connection of each role, with the attempt it belongs to.
    private var connections: [Machine.Role: (id: Machine.ConnectionID, handler: RedisConnection)] = [:]
    private var flushScheduled = false
    private var stopped = false
    /// Redis Sentinel: finds the master and follows its failovers (nil for a fixed address).
    private var sentinelWatcher: SentinelWatcher?
    /// Told after any change of the connections' state (the Postgres bridge follows it).
    var onStateChange: (() -> Void)?
    /// Called every tick (100 ms) while the link runs.
    var onTick: (() -> Void)?
    /// Redis Cluster: Redis pushed a `sunsubscribe` the relay did not ask for (the slot moved).
    var onSlotLost: ((String) -> Void)?
    /// Redis Cluster: a PUBLISH was answered `-MOVED`; it waits for the next slot map.
    var onRedirect: ((Redirected) -> Void)?
    /// Redis Cluster: the master this link serves (nil for one server or Sentinel).
    let cluster: ClusterNode?
    private(set) var isStarted = false

    /// One master of a Redis Cluster, as `ClusterBackplane` gives it to its link.
    struct ClusterNode {
        var address: RedisURL.Address
        var home: Bool
        var channelsSharded: Bool
        /// The fleet's keys and channel with the namespace as one hash tag.
        var namespace: String
    }

    /// A PUBLISH answered `-MOVED`, to be sent again by the new owner's link.
    struct Redirected {
        let channel: ByteBuffer
        let payload: ByteBuffer
        let sharded: Bool
        let alsoClassic: Bool
        let echo: Bool
        let waiter: Waiter
    }

    init(url: RedisURL, config: RelayConfig, state: RelayState, eventLoop: EventLoop, relayID: String? = nil,
         cluster: ClusterNode? = nil) {
        self.url = url
        self.state = state
        self.eventLoop = eventLoop
        self.relayID = relayID ?? Self.makeRelayID()
        self.cluster = cluster
        self.timeout = .milliseconds(Int64(config.redisTimeoutMilliseconds))
        self.replyLimits = .relay(maxMessageBytes: config.maxMessageBytes)
        var shown = url.redacted
        if let cluster { shown += " node \(Self.show(cluster.address))" }
        let settings = Machine.Settings(
            relayID: self.relayID, shownURL: shown, username: url.username, password: url.password, db: url.db,
            namespace: cluster?.namespace ?? config.namespace, timeoutNanoseconds: UInt64(config.redisTimeoutMilliseconds) * 1_000_000,
            backoffCapMilliseconds: config.redisBackoffMaxMilliseconds, followsMaster: url.sentinel != nil,
            scope: cluster.map { NodeScope(home: $0.home, channelsSharded: $0.channelsSharded, slots: NodeScope.noSlots) } ?? .whole)
        self.machine = Machine(settings: settings, registry: state.hub.registry, now: Self.now())
    }

    private var logger: Logger { state.logger }

    // MARK: Lifecycle

    func start() {
        isStarted = true
        startSentinelWatcher()
        run(machine.start(now: Self.now()))
        scheduleTick()
    }

    /// Shutdown: removes this relay's fleet counts (its apps stop counting at once) and closes.
    func stop() {
        stopped = true
        sentinelWatcher?.stop()
        run(machine.stop())
    }

    /// Redis Cluster: the master left the map; what waits on its connections goes elsewhere.
    func retire(_ reason: String) {
        stopped = true
        run(machine.retire(reason: reason, now: Self.now()))
    }

    // MARK: Running actions

    private func run(_ actions: [Machine.Action]) {
        for action in actions {
            switch action {
            case .connect(let id):
                connect(id)
            case .connectAfter(let id, let milliseconds):
                eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(milliseconds))) { [self] in
                    run(machine.reconnectDue(id))
                }
            case .close(let id):
                if let open = connections[id.role], open.id == id {
                    connections[id.role] = nil
                    open.handler.close()
                }
            case .send(let id, let command):
                if let open = connections[id.role], open.id == id { open.handler.send(command) }
            case .fill(let w, let bytes):
                fill(w, bytes)
            case .fillWithReply(let w, let reply):
                var out = ByteBuffer()
                reply.write(asRESP: w.client.respVersion, into: &out)
                fill(w, out)
            case .fillWithLocalAnswer(let w, let query):
                var out = ByteBuffer()
                state.executor.writeLocalAnswer(query, w.client.respVersion, into: &out)
                fill(w, out)
            case .undoSubscriptions(let client, let kind, let names):
                state.executor.undoSubscriptions(kind, names, of: client)
            case .complete(let callback, let reply):
                callback(reply)
            case .log(let level, let message, let metadata):
                var fields: Logger.Metadata = [:]
                for (key, value) in metadata { fields[key] = "\(value)" }
                logger.log(level: Self.level(level), "\(message)", metadata: fields)
            case .stateChanged:
                onStateChange?()
            case .notMaster(let reason):
                sentinelWatcher?.masterRefused(reason)
            case .publishLocally(let w, let channel, let payload, let sharded):
                var out = ByteBuffer()
                out.writeRESPInteger(sharded ? state.hub.publish(shardChannel: channel, payload: payload)
                                             : state.hub.publish(channel: channel, payload: payload))
                fill(w, out)
            case .slotLost(let reason):
                onSlotLost?(reason)
            case .redirected(let w, let channel, let payload, let sharded, let alsoClassic, let echo):
                onRedirect?(Redirected(channel: channel, payload: payload, sharded: sharded, alsoClassic: alsoClassic, echo: echo, waiter: w))
            }
        }
    }

    private func fill(_ w: Waiter, _ bytes: ByteBuffer?) {
        w.slot.fill(bytes)
        w.client.upstreamReplied()
    }

    private func connect(_ id: Machine.ConnectionID) {
        guard let address = cluster?.address ?? masterAddress else {
            // The machine connects only once a master is known; kept total for safety.
            run(machine.failed(id, reason: "no master known yet", now: Self.now()))
            return
        }
        let handler = RedisConnection(replyLimits: replyLimits)
        handler.delegate = self
        connections[id.role] = (id, handler)
        // rediss:// and rediss-sentinel://: the TLS handlers go in front; read now, so that a
        // reload's new files apply from the next connection on (README, "Redis over TLS"). The
        // certificate is checked against the host connected to: with Sentinel, the master as the
        // sentinels announced it (README, "Redis Sentinel").
        let tls = url.tls ? state.redisTLS : nil
        if !url.tls, case .tcp = address {
            handler.silentCloseHint = url.cluster != nil ? RedisTLS.plaintextClusterCloseHint
                : url.sentinel == nil ? RedisTLS.plaintextCloseHint : RedisTLS.plaintextSentinelCloseHint
        }
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls, case .tcp(let host, let port) = address {
                        try tls.addHandlers(to: channel.pipeline.syncOperations, host: host, port: port)
                    }
                    try channel.pipeline.syncOperations.addHandler(bound.value)
                }
            }
        let future: EventLoopFuture<Channel>
        switch address {
        case .unix(let path):
            future = bootstrap.connect(unixDomainSocketPath: path)
        case .tcp(let host, let port):
            bootstrap = bootstrap.channelOption(.socketOption(.so_keepalive), value: 1)
            future = bootstrap.connect(host: host, port: port)
        }
        future.assumeIsolated().whenComplete { [self] result in
            guard let open = connections[id.role], open.id == id, open.handler === handler else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success:
                if !handler.isFailed { run(machine.connected(id, now: Self.now())) }
            case .failure(let error):
                connections[id.role] = nil
                run(machine.failed(id, reason: "cannot connect to \(connectTarget): \(RedisConnection.describe(error))", now: Self.now()))
            }
        }
    }

    // MARK: Timer

    private func scheduleTick() {
        eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(Machine.tickNanoseconds))) { [self] in
            guard !stopped else { return }
            run(machine.tick(now: Self.now()) { connections[$0]?.handler.lastReadNanoseconds })
            onTick?()
            scheduleTick()
        }
    }

    /// The executor's changes of one tick go upstream together at its end.
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            run(machine.flush(now: Self.now()))
        }
    }

    // MARK: Connection events

    func redisConnection(_ connection: RedisConnection, received reply: RedisReply) {
        guard let role = role(of: connection), let id = connections[role]?.id else { return }
        if role == .subscriber, reply.isArray, reply.count >= 3 {
            let kind = reply[0]
            if kind.equals("message"), reply.count == 3 {
                state.hub.deliverUpstream(channel: Self.key(reply[1].bytes, reusing: &lastChannel), payload: reply[2].bytes)
                return
            }
            if kind.equals("pmessage"), reply.count == 4 {
                state.hub.deliverUpstream(pattern: Self.key(reply[1].bytes, reusing: &lastPattern),
                                          channel: reply[2].bytes, payload: reply[3].bytes)
                return
            }
            if kind.equals("smessage"), reply.count == 3 {
                smessage(channel: reply[1].bytes, payload: reply[2].bytes)
                return
            }
        }
        run(machine.received(id, UpstreamReply(reply, onSubscriber: role == .subscriber), now: Self.now()))
    }

    /// An `smessage`: the relays' own fleet channel (README, "PUBLISH in fleet mode") feeds the
    /// machine; any other shard channel is an app's, delivered like a `message`. (An app holding
    /// the fleet channel itself gets its messages too.)
    private func smessage(channel: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        let name = Self.key(channel, reusing: &lastShardChannel)
        if name == fleetChannel {
            run(machine.fleetMessage(ByteBuffer(bytes: payload), now: Self.now()))
            guard state.hub.registry.entry(forShardChannel: name) != nil else { return }
        }
        if channelsSharded {
            // A cluster in sharded mode: the channel's app subscribers ride the same SSUBSCRIBE
            // (README, "Redis Cluster"); they get a `message`, as from a PUBLISH.
            state.hub.deliverUpstream(channel: name, payload: payload)
        }
        state.hub.deliverUpstream(shardChannel: name, payload: payload, counted: channelsSharded)
    }

    private lazy var channelsSharded = cluster?.channelsSharded == true

    func redisConnection(_ connection: RedisConnection, failed reason: String) {
        guard let role = role(of: connection), let id = connections[role]?.id else { return }
        connections[role] = nil
        run(machine.failed(id, reason: reason, lastHeard: connection.lastReadNanoseconds,
                           exceededReplyLimits: connection.exceededReplyLimits, now: Self.now()))
    }

    private func role(of connection: RedisConnection) -> Machine.Role? {
        for (role, open) in connections where open.handler === connection { return role }
        return nil
    }

    /// The registry key for a name Redis sent, reusing the previous one when it is the same
    /// (a busy channel): no allocation per message for the lookup.
    private static func key(_ bytes: UnsafeRawBufferPointer, reusing last: inout ByteBuffer) -> ByteBuffer {
        let same = last.readableBytes == bytes.count && (bytes.count == 0 || last.withUnsafeReadableBytes {
            memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0
        })
        if !same { last = ByteBuffer(bytes: bytes) }
        return last
    }

    private var lastChannel = ByteBuffer()
    private var lastPattern = ByteBuffer()
    private var lastShardChannel = ByteBuffer()
    private lazy var fleetChannel = FleetReceivers(namespace: machine.settings.namespace, relayID: relayID).channel

    // MARK: Backplane (called by the executor)

    var isForwarding: Bool { machine.isForwarding }

    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: ClientConnection) {
        run(machine.subscriptionAdded(kind, name, first: first, by: client, now: Self.now()) {
            (client, client.reserveReplySlot())
        })
        scheduleFlush()
    }

    func holdConfirmations(_ kind: SubscriptionKind, _ names: [ByteBuffer], for client: ClientConnection) -> ReplySlot? {
        let pending = machine.pendingNames(kind, names)
        guard !pending.isEmpty else { return nil }
        let slot = client.reserveReplySlot()
        machine.hold(kind, names: names, pending: pending, for: client, waiter: (client, slot))
        return slot
    }

    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool) {
        run(machine.subscriptionRemoved(kind, name, last: last, now: Self.now()))
        scheduleFlush()
    }

    func publish(channel: ByteBuffer, payload: ByteBuffer, sharded: Bool, from client: ClientConnection) {
        let echoes = echoFrames(channel: channel, payload: payload, appSharded: sharded, upstreamSharded: sharded, for: client)
        let slot = client.reserveReplySlot(echoes: echoes)
        run(machine.publish(channel: channel, payload: payload, sharded: sharded, from: client, waiter: (client, slot),
                            echo: !echoes.isEmpty, now: Self.now()))
    }

    /// What `client` receives itself of its own PUBLISH (`appSharded`: an SPUBLISH), in the order
    /// the relay delivers it: a client that receives its own message (RESP3) gets its copies
    /// before the reply, as from Redis — its slot lets them pass. `upstreamSharded`: the message
    /// travels as SPUBLISH, which on a cluster in sharded mode also reaches the channel's
    /// classic subscribers (README, "Redis Cluster").
    private func echoFrames(channel: ByteBuffer, payload: ByteBuffer, appSharded: Bool, upstreamSharded: Bool,
                            for client: ClientConnection) -> [ByteBuffer] {
        let registry = state.hub.registry
        let v = client.respVersion
        var echoes: [ByteBuffer] = []
        let merged = upstreamSharded && cluster?.channelsSharded == true
        if !appSharded || merged, let receipts = registry.receipts(of: client, channel: channel) {
            if receipts.channel { echoes.append(PubSubFrames.message(channel: channel, payload: payload, v)) }
            if !appSharded {
                for pattern in receipts.patterns { echoes.append(PubSubFrames.pmessage(pattern: pattern, channel: channel, payload: payload, v)) }
            }
        }
        if appSharded || merged, registry.holds(client, shardChannel: channel) {
            echoes.append(PubSubFrames.smessage(channel: channel, payload: payload, v))
        }
        return echoes
    }

    func answer(_ query: PubSubQuery, for client: ClientConnection) -> Bool {
        guard let actions = machine.answer(query, now: Self.now(), waiter: { (client, client.reserveReplySlot()) }) else {
            return false
        }
        run(actions)
        return true
    }

    // MARK: Redis Cluster (called by `ClusterBackplane`)

    /// `bookkeeping`: the fleet's counts and receivers follow the change (the home master's
    /// link); `upstream`: the subscription itself lives on this master.
    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: ClientConnection,
                           bookkeeping: Bool = true, upstream: Bool = true) {
        run(machine.subscriptionAdded(kind, name, first: first, by: client, now: Self.now(), bookkeeping: bookkeeping,
                                      upstream: upstream) { (client, client.reserveReplySlot()) })
        scheduleFlush()
    }

    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool, bookkeeping: Bool = true, upstream: Bool = true) {
        run(machine.subscriptionRemoved(kind, name, last: last, now: Self.now(), bookkeeping: bookkeeping, upstream: upstream))
        scheduleFlush()
    }

    func pendingNames(_ kind: SubscriptionKind, _ names: [ByteBuffer]) -> [ByteBuffer] {
        machine.pendingNames(kind, names)
    }

    /// Holds `client`'s confirmations in `slot` (shared with the other masters' links) until the
    /// `pending` names this master carries are confirmed.
    func hold(_ kind: SubscriptionKind, names: [ByteBuffer], pending: [ByteBuffer], for client: ClientConnection, slot: ReplySlot) {
        machine.hold(kind, names: names, pending: pending, for: client, waiter: (client, slot))
    }

    /// A PUBLISH (`sharded`: as SPUBLISH) on this master; `alsoClassic`: followed by a classic
    /// PUBLISH for the fleet's pattern subscribers.
    func publish(channel: ByteBuffer, payload: ByteBuffer, appSharded: Bool, sharded: Bool, alsoClassic: Bool,
                 from client: ClientConnection) {
        let echoes = echoFrames(channel: channel, payload: payload, appSharded: appSharded, upstreamSharded: sharded, for: client)
        let slot = client.reserveReplySlot(echoes: echoes)
        run(machine.publish(channel: channel, payload: payload, sharded: sharded, from: client, waiter: (client, slot),
                            echo: !echoes.isEmpty, alsoClassic: alsoClassic, now: Self.now()))
    }

    /// A PUBLISH another master answered `-MOVED`, sent again here (its reply slot is kept).
    func resend(_ p: Redirected) {
        run(machine.publish(channel: p.channel, payload: p.payload, sharded: p.sharded, from: p.waiter.client, waiter: p.waiter,
                            echo: p.echo, alsoClassic: p.alsoClassic, now: Self.now()))
    }

    /// The slot map changed: what this master serves now (and whether it is the home master).
    func ownershipChanged(slots: [Bool], home: Bool) {
        run(machine.ownershipChanged(slots: slots, home: home, now: Self.now()))
        scheduleFlush()
    }

    /// Whether a pattern held anywhere in the fleet matches `channel` (the home master's link).
    func fleetHoldsPattern(matching channel: ByteBuffer) -> Bool {
        machine.fleetHoldsPattern(matching: channel)
    }

    /// The other relays' receivers of a PUBLISH to `channel` (the home master's link).
    func remoteExtra(for channel: ByteBuffer, sharded: Bool, patterns: Bool) -> Int {
        machine.remoteReceiverCount(for: channel, sharded: sharded, patterns: patterns)
    }

    var nodeAddress: String { Self.show(cluster?.address ?? url.address) }

    var keyNamespace: String { machine.settings.namespace }

    /// Redis Cluster, a master that is not home: the other relays' receivers of a PUBLISH, set
    /// once by `ClusterBackplane`.
    var remoteReceivers: ((ByteBuffer, Bool, Bool) -> Int)? {
        get { machine.remoteReceivers }
        set { machine.remoteReceivers = newValue }
    }

    /// Whether the link was ever forwarding, and since when it is not (uptime ns).
    var hasBeenUp: Bool { machine.hasBeenUp }
    var degradedSince: UInt64? { machine.degradedSince }

    /// Names this master carries upstream for the relay (channels, shard channels, patterns).
    var upstreamNames: Int { machine.upstreamNameCount }

    /// Sends a command on the publisher connection for another part of the relay; `completion`
    /// gets Redis's reply, or nil if the connection is not ready or drops first.
    func request(_ args: [ByteBuffer], _ completion: @escaping (UpstreamReply?) -> Void) {
        run(machine.request(args, completion, now: Self.now()))
    }

    /// One PUBLISH for a lone notification, one EVAL of PUBLISHes (atomic, in order) for several.
    func publishNotifications(_ batch: [(channel: ByteBuffer, payload: ByteBuffer)], _ completion: @escaping (_ lost: Int) -> Void) {
        var command: [ByteBuffer]
        if batch.count == 1 {
            command = [Self.publishWord]
        } else {
            command = [Self.evalWord, Self.publishAll, Self.noKeys]
            command.reserveCapacity(3 + 2 * batch.count)
        }
        for (channel, payload) in batch {
            command.append(channel)
            command.append(payload)
        }
        let count = batch.count
        request(command) { reply in completion(reply == nil || reply!.isError ? count : 0) }
    }

    private static let publishWord = ByteBuffer(string: "PUBLISH")
    private static let evalWord = ByteBuffer(string: "EVAL")
    private static let noKeys = ByteBuffer(string: "0")
    /// Publishes ARGV pairs (channel, payload) in order, atomically.
    static let publishAll = ByteBuffer(string: "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end return #ARGV / 2")

    /// Whether commands can be sent (PUBLISH, the lease), whatever the subscriber's state.
    var isPublisherReady: Bool { machine.isPublisherReady }

    /// Redis answers on at least one of the two connections. When neither does, Redis is down
    /// for this relay (as opposed to one connection having been cut, e.g. by Redis's own
    /// output-buffer limit, which reconnects in milliseconds).
    var isReachable: Bool { machine.isReachable }

    // MARK: Status

    var status: RedisLinkStatus {
        let now = Self.now()
        let degradedNanoseconds = machine.degradedSince.map { now - min($0, now) }
        return RedisLinkStatus(
            url: url.redacted, relayID: relayID,
            subscriber: machine.phase(.subscriber).rawValue, publisher: machine.phase(.publisher).rawValue,
            forwarding: machine.isForwarding,
            degradedSeconds: degradedNanoseconds.map { Double($0) / 1e9 },
            degradedSinceUnixMilliseconds: degradedNanoseconds.map {
                RedisLinkStatus.wallClockMilliseconds() - Int($0 / 1_000_000)
            },
            lastError: machine.lastError,
            upstreamChannels: state.hub.registry.channelCount, upstreamPatterns: state.hub.registry.patternCount,
            upstreamShardChannels: state.hub.registry.shardChannelCount,
            pendingConfirmations: machine.pendingConfirmations,
            counters: RedisLinkCounters(
                reconnects: machine.reconnects, gaps: machine.gaps, gapSecondsTotal: machine.gapSecondsTotal,
                unconfirmedPublishes: machine.unconfirmedPublishes, refusedSubscriptions: machine.refusedSubscriptions,
                replyLimitDisconnects: machine.replyLimitDisconnects, masterSwitches: machine.masterSwitches,
                heldPublishes: machine.heldPublishCount, malformedFleetMessages: machine.malformedFleetMessages,
                clusterRefreshes: 0, clusterRedirects: 0, clusterSlotMovesPushed: machine.slotMovesPushed,
                clusterResubscriptions: machine.movedSubscriptions),
            topology: sentinelWatcher == nil ? "standalone" : "sentinel", master: masterAddress.map(Self.show) ?? "",
            sentinel: sentinelWatcher?.subscribedSentinel?.description ?? "",
            fleetReceivers: machine.countsFleetReceivers, fleetRelaysKnown: machine.knownFleetRelays)
    }

    // MARK: Sentinel

    /// Where the connections go: the URL's fixed address, or the master the sentinels named (nil
    /// until they have answered).
    private var masterAddress: RedisURL.Address? {
        guard let sentinelWatcher else { return url.address }
        return sentinelWatcher.master.map { .tcp(host: $0.host, port: $0.port) }
    }

    private var connectTarget: String {
        if let cluster { return "cluster node \(Self.show(cluster.address))" }
        guard let master = sentinelWatcher?.master, let name = url.sentinel?.masterName else { return url.redacted }
        return "master '\(name)' at \(master)"
    }

    private func startSentinelWatcher() {
        guard let sentinel = url.sentinel else { return }
        let watcher = SentinelWatcher(
            sentinel: sentinel, timeoutMilliseconds: Int(timeout.nanoseconds / 1_000_000),
            backoffCapMilliseconds: machine.settings.backoffCapMilliseconds, eventLoop: eventLoop, logger: logger,
            tls: { [unowned self] in sentinel.tls ? state.redisTLS : nil }
        ) { [unowned self] address in
            run(machine.masterChanged(shown: Self.show(address), now: Self.now()))
        }
        sentinelWatcher = watcher
        watcher.start()
    }

    private static func show(_ address: RedisURL.Address) -> String {
        switch address {
        case .tcp(let host, let port): return RedisURL.Sentinel.Endpoint(host: host, port: port).description
        case .unix(let path): return path
        }
    }

    // MARK: Helpers

    private static func now() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds
    }

    static func format(_ seconds: Double) -> String { SecondsText.format(seconds) }

    private static func level(_ level: Machine.LogLevel) -> Logger.Level {
        switch level {
        case .debug: return .debug
        case .info: return .info
        case .notice: return .notice
        case .warning: return .warning
        case .error: return .error
        }
    }

    /// `host-pid-xxxx`: readable in CLIENT LIST, unique across restarts.
    static func makeRelayID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        let suffix = String(UInt16.random(in: .min ... .max), radix: 16)
        return "\(host.isEmpty ? "relay" : host)-\(getpid())-\(suffix)"
    }
}

@available(*, unavailable)
extension UpstreamRedisLink: Sendable {}

/// The backplane's state at one instant, for INFO, `/health` and `/metrics`.
struct RedisLinkStatus: Sendable {
    var url: String
    var relayID: String
    var subscriber: String
    var publisher: String
    var forwarding: Bool
    var degradedSeconds: Double?
    var degradedSinceUnixMilliseconds: Int?
    var lastError: String
    var upstreamChannels: Int
    var upstreamPatterns: Int
    var upstreamShardChannels: Int
    var pendingConfirmations: Int
    /// INFO's and `/metrics`'s counters (`RelayCounterTable`).
    var counters: RedisLinkCounters
    /// `standalone` or `sentinel` (README, "Redis Sentinel").
    var topology = "standalone"
    /// The address the connections go to (`host:port`, or the socket path); empty while unknown.
    var master = ""
    /// The sentinel whose `+switch-master` is followed (empty when none, or standalone).
    var sentinel = ""
    /// Whether PUBLISH counts the other relays' receivers (README, "PUBLISH in fleet mode"), and
    /// how many relays with extra receivers this relay knows of.
    var fleetReceivers = false
    var fleetRelaysKnown = 0
    /// Redis Cluster: the slot map and the masters' links (README, "Redis Cluster").
    var cluster: ClusterStatus?

    /// A backplane with no connection yet (a cluster whose map is not known).
    static func down(url: String, relayID: String) -> RedisLinkStatus {
        RedisLinkStatus(url: url, relayID: relayID, subscriber: "down", publisher: "down", forwarding: false,
                        lastError: "", upstreamChannels: 0, upstreamPatterns: 0, upstreamShardChannels: 0, pendingConfirmations: 0, counters: .zero)
    }

    /// `up`, or `degraded` (not yet connected, or lost: local delivery only).
    var state: String { forwarding ? "up" : "degraded" }

    static func wallClockMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}
