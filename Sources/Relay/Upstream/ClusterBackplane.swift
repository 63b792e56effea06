import DequeModule
import Logging
import NIOCore
import RelayCore

/// The backplane on a Redis Cluster (README, "Redis Cluster"): one `UpstreamRedisLink` — one
/// subscriber and one publisher connection — per master, each running its own
/// `BackplaneStateMachine` scoped to the slots that master owns, plus the control connection of
/// the `ClusterWatcher` that follows the slot map.
///
/// * `sharded` (the default): an app channel rides `SSUBSCRIBE`/`SPUBLISH` on the master owning
///   its slot, so each message crosses one shard only. Patterns stay classic (`PSUBSCRIBE` on the
///   *home* master, the owner of the namespace's hash tag, which also holds the fleet's keys and
///   its fleet channel); a PUBLISH whose channel matches a pattern held anywhere in the fleet is
///   also sent as a classic `PUBLISH`, right after its `SPUBLISH` on the same connection.
/// * `classic`: everything as on one Redis, through the home master (the cluster bus broadcasts);
///   only the apps' own `SSUBSCRIBE`s go to their slots' masters.
///
/// When the map changes, each machine is told which slots it now owns: it subscribes the names
/// it gained and forgets the ones it lost (their new owner subscribes them). A `-MOVED` reply or a
/// `sunsubscribe` Redis pushes for a slot that moved asks the watcher for the map again; the
/// PUBLISHes that met `-MOVED` wait for it and are sent again to the new owner.
final class ClusterBackplane: Backplane, BackplaneService {
    typealias Client = ClientConnection

    let url: RedisURL
    let relayID: String
    let sharded: Bool
    private let config: RelayConfig
    private let eventLoop: EventLoop
    private unowned let state: RelayState
    /// The links by master id, and the slot map they follow.
    private var links: [String: UpstreamRedisLink] = [:]
    private var topology: ClusterTopology?
    private var watcher: ClusterWatcher!
    /// The slot of the namespace's hash tag: its master is the home of the fleet's keys,
    /// channel, patterns and Postgres lease.
    let homeSlot: Int
    private var stopped = false
    /// PUBLISHes answered `-MOVED`, waiting for the next map to be sent again (since when).
    private var redirected: [(publish: UpstreamRedisLink.Redirected, since: UInt64)] = []
    /// Told after any change of the connections' state (the Postgres bridge follows it).
    var onStateChange: (() -> Void)?
    var onTick: (() -> Void)?

    /// A master whose link went down (a failover, a crash): its slots are unserved until the
    /// map names masters for them whose links are up.
    private struct Outage {
        let node: String
        let since: UInt64
        let slots: [Bool]
    }
    private var outages: [String: Outage] = [:]
    private(set) var gaps = 0
    private(set) var gapSecondsTotal = 0.0
    /// The counters of links dropped with their master (counters never go back).
    private var retired = RedisLinkCounters.zero

    // Counters (INFO upstreams, /metrics).
    private(set) var slotMapVersion = 0
    private(set) var redirectsFollowed = 0

    init(url: RedisURL, config: RelayConfig, state: RelayState, eventLoop: EventLoop) {
        self.url = url
        self.config = config
        self.state = state
        self.eventLoop = eventLoop
        self.relayID = UpstreamRedisLink.makeRelayID()
        self.sharded = url.cluster!.pubsub == .sharded
        self.homeSlot = ClusterSlot.of(Array(ClusterBackplane.keyNamespace(config.namespace).utf8))
        let seeds = url.cluster!.seeds.map { ClusterDiscovery.Endpoint(host: $0.host, port: $0.port) }
        let discovery = ClusterDiscovery(
            seeds: seeds, username: url.username, password: url.password, clientName: "pubsub-relay:\(relayID):control", tls: url.tls,
            timeoutMilliseconds: config.redisTimeoutMilliseconds,
            backoff: ReconnectBackoff(capMilliseconds: config.redisBackoffMaxMilliseconds), jitter: { Double.random(in: 0..<1) })
        self.watcher = ClusterWatcher(
            discovery: discovery, timeoutMilliseconds: config.redisTimeoutMilliseconds, eventLoop: eventLoop, logger: state.logger,
            tls: { [unowned self] in url.tls ? state.redisTLS : nil }
        ) { [unowned self] topology, endpoint in apply(topology, from: endpoint) }
    }

    /// The namespace as the fleet's keys and fleet channel use it on a cluster: one hash tag, so
    /// that every key (and every script touching several) lives in one slot.
    static func keyNamespace(_ namespace: String) -> String { "{\(namespace)}" }

    var keyNamespace: String { Self.keyNamespace(config.namespace) }

    private var logger: Logger { state.logger }

    // MARK: Lifecycle

    func start() {
        logger.info("redis cluster: discovering the slot map", metadata: ["url": "\(url.redacted)", "relay_id": "\(relayID)",
                                                                          "pubsub": "\(sharded ? "sharded" : "classic")"])
        watcher.start()
        scheduleTick()
    }

    func stop() {
        stopped = true
        watcher.stop()
        for link in links.values { link.stop() }
    }

    private func scheduleTick() {
        eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) { [self] in
            guard !stopped else { return }
            // A master connection that is down may mean a failover: the map is asked for again
            // (the discovery spaces the asks) until every master is back.
            if topology != nil, links.values.contains(where: { !$0.isForwarding }) { watcher.refresh("a master connection is down") }
            followOutages()
            resendRedirected()
            expireRedirected()
            sendWaitingNotifications()
            onTick?()
            scheduleTick()
        }
    }

    /// Opens an outage for each master link that stopped forwarding, and closes each whose slots
    /// are all served again (by whichever masters now own them): the gap is logged and counted.
    private func followOutages() {
        guard let topology else { return }
        let now = Self.now()
        for (id, link) in links where link.hasBeenUp && !link.isForwarding && outages[id] == nil {
            outages[id] = Outage(node: link.nodeAddress, since: link.degradedSince ?? now, slots: topology.ownedSlots(of: id))
            logger.warning("redis cluster: master down; its slots' messages are not delivered across relays until they are served again",
                           metadata: ["node": "\(link.nodeAddress)"])
        }
        for (id, outage) in outages {
            var served = true
            for slot in 0..<ClusterSlot.count where outage.slots[slot] {
                guard let owner = topology.master(forSlot: slot), let link = links[owner.id], link.isForwarding else {
                    served = false
                    break
                }
            }
            guard served else { continue }
            outages[id] = nil
            // A link that came back by itself counted its own gap (its machine's).
            if let link = links[id], link.isForwarding { continue }
            let seconds = Double(now - min(outage.since, now)) / 1e9
            gaps += 1
            gapSecondsTotal += seconds
            logger.notice("redis cluster: the slots of a master that was down are served again; messages published meanwhile were not delivered across relays",
                          metadata: ["node": "\(outage.node)", "gap_seconds": "\(SecondsText.format(seconds))"])
        }
    }

    private static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    // MARK: The slot map

    private func apply(_ new: ClusterTopology, from endpoint: ClusterDiscovery.Endpoint) {
        guard !stopped else { return }
        if let old = topology, new.changedSlots(from: old).isEmpty {
            // The same routing (a node's health may differ): names Redis dropped meanwhile are
            // subscribed again where they live.
            topology = new
            let home = new.master(forSlot: homeSlot)?.id
            for (id, link) in links { link.ownershipChanged(slots: new.ownedSlots(of: id), home: id == home) }
            resendRedirected()
            return
        }
        let first = topology == nil
        slotMapVersion += 1
        topology = new
        logger.log(level: first ? .info : .notice, "redis cluster: slot map \(first ? "discovered" : "changed")",
                   metadata: ["from": "\(endpoint)", "masters": "\(new.masters.count)", "complete": "\(new.isComplete)",
                              "version": "\(slotMapVersion)",
                              "unassigned": "\(new.unassignedSlots.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))"])
        let home = new.master(forSlot: homeSlot)?.id
        // New masters get a link; every link learns what it owns now; masters gone are dropped
        // once their names have a new owner.
        for master in new.masters where links[master.id] == nil {
            let port = url.tls ? (master.tlsPort ?? master.port) : master.port
            let link = UpstreamRedisLink(url: url, config: config, state: state, eventLoop: eventLoop, relayID: relayID,
                                         cluster: .init(address: .tcp(host: master.host, port: port),
                                                        home: master.id == home, channelsSharded: sharded,
                                                        namespace: Self.keyNamespace(config.namespace)))
            link.onStateChange = { [unowned self] in onStateChange?() }
            // The other relays' receivers of a PUBLISH, as the home master's machine knows them
            // (the home's own link counts from its machine, never through this).
            link.remoteReceivers = { [unowned self] ch, shard, patterns in self.home?.remoteExtra(for: ch, sharded: shard, patterns: patterns) ?? 0 }
            link.onSlotLost = { [unowned self] reason in watcher.refresh(reason) }
            link.onRedirect = { [unowned self] publish in
                redirectsFollowed += 1
                redirected.append((publish, Self.now()))
                watcher.refresh("a PUBLISH was answered -MOVED")
            }
            links[master.id] = link
        }
        for (id, link) in links {
            let owned = new.ownedSlots(of: id)
            link.ownershipChanged(slots: owned, home: id == home)
        }
        for (id, link) in links where !new.masters.contains(where: { $0.id == id }) {
            links[id] = nil
            retired = retired + link.status.counters
            link.retire("the master \(link.nodeAddress) serves no slot any more (failed over, or removed)")
        }
        for link in links.values where !link.isStarted { link.start() }
        resendRedirected()
        sendWaitingNotifications()
        onStateChange?()
    }

    private func resendRedirected() {
        guard !redirected.isEmpty else { return }
        let again = redirected
        redirected = []
        for (p, since) in again {
            guard let link = owner(of: p.channel), link.isForwarding else {
                redirected.append((p, since))
                continue
            }
            link.resend(p)
        }
    }

    /// A redirected PUBLISH whose slot has had no reachable master for `RELAY_REDIS_TIMEOUT`
    /// is delivered to this relay's subscribers only, as in degraded mode.
    private func expireRedirected() {
        guard !redirected.isEmpty else { return }
        let deadline = UInt64(config.redisTimeoutMilliseconds) * 1_000_000
        let now = Self.now()
        redirected.removeAll { p, since in
            guard now - min(since, now) >= deadline else { return false }
            var out = ByteBuffer()
            out.writeRESPInteger(p.sharded && !sharded ? state.hub.publish(shardChannel: p.channel, payload: p.payload)
                                                       : state.hub.publish(channel: p.channel, payload: p.payload))
            p.waiter.slot.fill(out)
            p.waiter.client.upstreamReplied()
            return true
        }
    }

    // MARK: Routing

    private var home: UpstreamRedisLink? {
        topology?.master(forSlot: homeSlot).flatMap { links[$0.id] }
    }

    /// The link of the master owning `name`'s slot.
    private func owner(of name: ByteBuffer) -> UpstreamRedisLink? {
        let slot = name.withUnsafeReadableBytes { ClusterSlot.of($0) }
        return topology?.master(forSlot: slot).flatMap { links[$0.id] }
    }

    /// Where a subscription of `kind` lives upstream.
    private func upstream(_ kind: SubscriptionKind, _ name: ByteBuffer) -> UpstreamRedisLink? {
        switch kind {
        case .pattern: return home
        case .channel: return sharded ? owner(of: name) : home
        case .shard: return owner(of: name)
        }
    }

    // MARK: Backplane (called by the executor)

    /// Whether PUBLISH goes upstream: decided per channel, by its master's link (`publish`), so
    /// that one master failing over leaves the others' channels flowing.
    var isForwarding: Bool { links.values.contains { $0.isForwarding } }

    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: ClientConnection) {
        let home = self.home
        let target = upstream(kind, name)
        if let home, home !== target { home.subscriptionAdded(kind, name, first: first, by: client, upstream: false) }
        target?.subscriptionAdded(kind, name, first: first, by: client, bookkeeping: target === home)
    }

    func holdConfirmations(_ kind: SubscriptionKind, _ names: [ByteBuffer], for client: ClientConnection) -> ReplySlot? {
        var byLink: [ObjectIdentifier: (link: UpstreamRedisLink, pending: [ByteBuffer])] = [:]
        for name in names {
            guard let link = upstream(kind, name) else { continue }
            byLink[ObjectIdentifier(link), default: (link, [])].pending.append(name)
        }
        var holds: [(UpstreamRedisLink, [ByteBuffer])] = []
        for (_, entry) in byLink {
            let pending = entry.link.pendingNames(kind, entry.pending)
            if !pending.isEmpty { holds.append((entry.link, pending)) }
        }
        guard !holds.isEmpty else { return nil }
        let slot = client.reserveReplySlot()
        slot.expectFills(holds.count)
        for (link, pending) in holds { link.hold(kind, names: names, pending: pending, for: client, slot: slot) }
        return slot
    }

    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool) {
        let home = self.home
        let target = upstream(kind, name)
        if let home, home !== target { home.subscriptionRemoved(kind, name, last: last, upstream: false) }
        target?.subscriptionRemoved(kind, name, last: last, bookkeeping: target === home)
    }

    func publish(channel: ByteBuffer, payload: ByteBuffer, sharded appSharded: Bool, from client: ClientConnection) {
        let kind: SubscriptionKind = appSharded ? .shard : .channel
        guard let link = upstream(kind, channel), link.isForwarding else {
            // That master is unreachable (a failover under way): as in degraded mode, the local
            // subscribers get it.
            let slot = client.reserveReplySlot()
            var out = ByteBuffer()
            out.writeRESPInteger(appSharded ? state.hub.publish(shardChannel: channel, payload: payload)
                                            : state.hub.publish(channel: channel, payload: payload))
            slot.fill(out)
            client.upstreamReplied()
            return
        }
        // Pattern subscribers are reached by a classic PUBLISH as well (sharded mode only).
        let alsoClassic = !appSharded && sharded && (home?.fleetHoldsPattern(matching: channel) ?? true)
        link.publish(channel: channel, payload: payload, appSharded: appSharded, sharded: appSharded || sharded, alsoClassic: alsoClassic,
                     from: client)
    }

    func answer(_ query: PubSubQuery, for client: ClientConnection) -> Bool {
        home?.answer(query, for: client) ?? false
    }

    // MARK: For the Postgres bridge

    /// Commands of other parts of the relay (the leader lease) go to the home master.
    func request(_ args: [ByteBuffer], _ completion: @escaping (UpstreamReply?) -> Void) {
        guard let home else { return completion(nil) }
        home.request(args, completion)
    }

    /// Each notification as an app's PUBLISH travels on this cluster (sharded: an SPUBLISH on its
    /// channel's master, and a classic PUBLISH too when a pattern of the fleet matches it); the
    /// commands for one master go out in order on its publisher connection.
    func publishNotifications(_ batch: [(channel: ByteBuffer, payload: ByteBuffer)], _ completion: @escaping (_ lost: Int) -> Void) {
        var remaining = 0
        var lost = 0
        var done = false
        func finished(_ ok: Bool) {
            if !ok { lost += 1 }
            remaining -= 1
            if remaining == 0 && done { completion(lost) }
        }
        for (channel, payload) in batch {
            remaining += 1
            sendNotification(channel, payload, since: Self.now(), finished)
        }
        done = true
        if remaining == 0 { completion(lost) }
    }

    /// One notification; a `-MOVED` (a reshard of its slot) or `-CLUSTERDOWN` answer sends it
    /// again once the map names the owner, as an app's PUBLISH is (within `RELAY_REDIS_TIMEOUT`).
    /// Those waiting go first, in order: a later notification never overtakes an earlier one.
    private func sendNotification(_ channel: ByteBuffer, _ payload: ByteBuffer, since: UInt64, _ finished: @escaping (Bool) -> Void) {
        guard waitingNotifications.isEmpty, let link = sharded ? owner(of: channel) : home, link.isPublisherReady else {
            waitingNotifications.append((channel, payload, since, finished))
            return
        }
        link.request([sharded ? Self.spublishWord : Self.publishWord, channel, payload]) { [weak self] reply in
            if let reply, ClusterRedirect.asksToRetry(reply), let self {
                redirectsFollowed += 1
                watcher.refresh("a notification's PUBLISH was answered \(String(reply.text.prefix(40)))")
                waitingNotifications.append((channel, payload, since, finished))
            } else {
                finished(reply != nil && !reply!.isError)
            }
        }
        if sharded, home?.fleetHoldsPattern(matching: channel) ?? true {
            link.request([Self.publishWord, channel, payload]) { _ in }
        }
    }

    private var waitingNotifications: Deque<(channel: ByteBuffer, payload: ByteBuffer, since: UInt64, finished: (Bool) -> Void)> = []

    /// Every tick and map: the notifications that wait go out while their masters are reachable;
    /// one that waited `RELAY_REDIS_TIMEOUT` is lost (counted by the bridge).
    private func sendWaitingNotifications() {
        let timeout = UInt64(config.redisTimeoutMilliseconds) * 1_000_000
        let now = Self.now()
        while let next = waitingNotifications.first {
            if let link = sharded ? owner(of: next.channel) : home, link.isPublisherReady {
                waitingNotifications.removeFirst()
                sendNotification(next.channel, next.payload, since: next.since, next.finished)
            } else if now - min(next.since, now) >= timeout {
                waitingNotifications.removeFirst()
                next.finished(false)
            } else {
                return
            }
        }
    }

    private static let publishWord = ByteBuffer(string: "PUBLISH")
    private static let spublishWord = ByteBuffer(string: "SPUBLISH")

    var isPublisherReady: Bool { home?.isPublisherReady ?? false }
    var isReachable: Bool { home?.isReachable ?? false }

    // MARK: Status

    var status: RedisLinkStatus {
        var status = home?.status ?? RedisLinkStatus.down(url: url.redacted, relayID: relayID)
        status.url = url.redacted
        status.topology = "cluster"
        // Before a map is known the only connection is the control one: its failure is the news.
        if topology == nil || home == nil { status.lastError = watcher.lastError }
        let all = links.values.map(\.status)
        status.forwarding = !all.isEmpty && all.allSatisfy(\.forwarding)
        status.counters = all.reduce(retired) { $0 + $1.counters }
        status.counters.clusterRefreshes = watcher.answers
        // The links' own gaps (a connection lost and restored) and the masters' outages.
        status.counters.gaps += gaps
        status.counters.gapSecondsTotal += gapSecondsTotal
        status.counters.clusterRedirects = redirectsFollowed
        status.pendingConfirmations = all.reduce(0) { $0 + $1.pendingConfirmations }
        status.cluster = ClusterStatus(
            nodes: topology?.nodes.count ?? 0, masters: topology?.masters.count ?? 0,
            mastersConnected: links.values.filter(\.isForwarding).count, slotMapVersion: slotMapVersion,
            complete: topology?.isComplete ?? false, control: watcher.controlNode?.description ?? "",
            home: home?.nodeAddress ?? "", pubsub: sharded ? "sharded" : "classic",
            links: links.sorted { $0.value.nodeAddress < $1.value.nodeAddress }.map { id, link in
                let s = link.status
                return ClusterStatus.Link(address: link.nodeAddress, id: String(id.prefix(8)), home: link === home, state: s.state,
                                          subscriptions: link.upstreamNames, gaps: s.counters.gaps, gapSeconds: s.counters.gapSecondsTotal)
            })
        return status
    }
}

@available(*, unavailable)
extension ClusterBackplane: Sendable {}

/// The cluster's part of INFO upstreams, `/health` and `/metrics`.
struct ClusterStatus: Sendable {
    var nodes = 0
    var masters = 0
    var mastersConnected = 0
    var slotMapVersion = 0
    var complete = false
    var control = ""
    var home = ""
    var pubsub = "sharded"
    /// One line per master link, by address.
    var links: [Link] = []

    struct Link: Sendable {
        var address: String
        var id: String
        var home: Bool
        var state: String
        /// Names (channels, shard channels, patterns) this master carries for the relay.
        var subscriptions: Int
        var gaps: Int
        var gapSeconds: Double
    }
}

extension ClusterTopology {
    /// For each slot, whether `masterID` serves it (all false for a node that is gone).
    func ownedSlots(of masterID: String) -> [Bool] {
        var owned = [Bool](repeating: false, count: ClusterSlot.count)
        for range in slots(of: masterID) {
            for slot in range { owned[slot] = true }
        }
        return owned
    }
}
