import Logging
import NIOCore
import RelayCore

/// Postgres notifications as relay channels (README, "The Postgres bridge"). Decides when this relay
/// LISTENs and where each notification goes:
///
/// * no backplane, or Redis down for this relay (neither connection up: degraded): LISTEN, deliver
///   to the local subscribers directly;
/// * Redis up: only the lease holder (the leader) LISTENs, and publishes each notification to
///   Redis on `${RELAY_PG_PREFIX}<channel>`; every relay's subscribers get it from the backplane.
///   Leading needs only the publisher connection (PUBLISH, the lease): a leader whose subscriber
///   connection is cut keeps leading, and a standby in that state does not start listening
///   (its subscribers miss what Redis pub/sub misses, rather than risk getting it twice).
///
/// Confined to the relay's event loop; the listener's thread reports through `handle(_:)`.
final class PostgresBridge {
    private let listener: PostgresListener
    private unowned let state: RelayState
    private unowned let backplane: (any BackplaneService)?
    private var lease: LeaderLease?
    /// `${RELAY_PG_PREFIX}<channel>` for each configured channel, by the listener's index.
    private let relayChannels: [ByteBuffer]
    private var logger: Logger { state.logger }
    private let eventLoop: EventLoop

    private(set) var listening = false
    private(set) var notificationsReceived = 0
    private(set) var publishedUpstream = 0
    private(set) var deliveredLocally = 0
    /// Notifications whose upstream PUBLISH got no answer (the publisher connection dropped).
    private(set) var lostUpstream = 0
    private(set) var reconnects = 0
    private(set) var gaps = 0
    private(set) var gapSecondsTotal = 0.0
    private(set) var lastError = ""
    private var everListened = false

    init(config: RelayConfig, conninfo: String, state: RelayState, backplane: (any BackplaneService)?, eventLoop: EventLoop) {
        self.state = state
        self.backplane = backplane
        self.eventLoop = eventLoop
        self.relayChannels = config.pgChannels.map { ByteBuffer(string: config.pgPrefix + $0) }
        if let backplane {
            lease = LeaderLease(namespace: backplane.keyNamespace, holder: backplane.relayID, ttlMilliseconds: config.leaderTTLMilliseconds)
        }
        // The listener's thread hands its events to this loop; the box is filled once self exists.
        let loop = eventLoop
        let box = NIOLoopBoundBox<PostgresBridge?>(nil, eventLoop: loop)
        guard case .success(let pq) = Libpq.shared else {
            // The executable checks DATABASE_URL (and so loads libpq) before starting.
            preconditionFailure("Postgres bridge started without libpq: \(Libpq.shared)")
        }
        listener = PostgresListener(pq: pq, conninfo: conninfo, channels: config.pgChannels) { event in
            loop.execute { box.value?.handle(event) }
        }
        box.value = self
        backplane?.onStateChange = { [unowned self] in backplaneChanged() }
        backplane?.onTick = { [unowned self] in leaseTick() }
    }

    var isLeader: Bool { lease?.isLeader ?? false }
    var leaseChanges: Int { lease?.changes ?? 0 }
    var mode: String {
        guard let backplane else { return "local" }
        if isLeader { return "leader" }
        return backplane.isReachable ? "standby" : "degraded"
    }

    /// Notifications that reached this relay's listener while it was a standby (in the moment
    /// between the backplane's return and the connection's close), or that piled up while a
    /// leader was paused past its lease: dropped, as the (new) leader publishes them —
    /// delivering them too could duplicate them.
    private(set) var droppedAsStandby = 0

    func start() {
        logger.info("postgres bridge: starting", metadata: ["mode": "\(mode)", "channels": "\(state.config.pgChannels.joined(separator: ","))"])
        listener.start()
        updateWanted()
    }

    /// Shutdown: hands the lease over at once (the release is queued on the backplane, which
    /// the loop keeps serving) and asks the listener to close the connection; the future
    /// completes when its thread has ended.
    func stop() -> EventLoopFuture<Void> {
        if isLeader, let lease, let backplane { backplane.request(lease.releaseCommand) { _ in } }
        return listener.stop(on: eventLoop)
    }

    /// LISTEN while this relay is the one that must: the leader, or every relay when there is no
    /// backplane or Redis is down for it.
    private func updateWanted() {
        let wanted = backplane == nil || !backplane!.isReachable || isLeader
        listener.setWanted(wanted)
    }

    // MARK: Listener events (on the event loop)

    private func handle(_ event: PostgresListener.Event) {
        switch event {
        case .listening(let gap):
            listening = true
            if everListened { reconnects += 1 }
            everListened = true
            if let gap {
                gaps += 1
                gapSecondsTotal += gap
                logger.notice("postgres: listening again; notifications sent while no one listened are lost (LISTEN/NOTIFY is at-most-once)",
                              metadata: ["gap_seconds": "\(UpstreamRedisLink.format(gap))", "mode": "\(mode)"])
            } else {
                logger.info("postgres: listening", metadata: ["channels": "\(state.config.pgChannels.count)", "mode": "\(mode)"])
            }
        case .lost(let reason):
            listening = false
            lastError = reason
            logger.error("postgres: listening connection lost; reconnecting", metadata: ["reason": "\(reason)"])
        case .attemptFailed(let reason, let retry):
            lastError = reason
            logger.warning("postgres: connect/LISTEN failed", metadata: ["reason": "\(reason)", "retry_in_ms": "\(retry)"])
        case .stopped:
            listening = false
            logger.info("postgres: stopped listening", metadata: ["mode": "\(mode)"])
        case .notifications(let batch):
            deliver(batch)
        }
    }

    /// Each notification goes to the backplane while it works (published by this relay because
    /// it was listening as the leader), else straight to the local subscribers.
    private func deliver(_ batch: [PostgresListener.Notification]) {
        notificationsReceived += batch.count
        // A leader resumed after a pause must not publish what piled up meanwhile: another
        // relay may have led (and published it) since.
        if isLeader, let action = lease?.checkExpiry(now: monotonicNanoseconds()), action != .none {
            apply(action)
            droppedAsStandby += batch.count
            return
        }
        if let backplane, backplane.isPublisherReady, isLeader {
            publishUpstream(batch, backplane)
            return
        }
        for n in batch {
            if backplane == nil || !backplane!.isReachable {
                deliveredLocally += 1
                state.stats.counts.messagesFromPostgres += 1
                state.hub.publish(channel: relayChannels[n.channel], payload: n.payload)
            } else {
                droppedAsStandby += 1
            }
        }
    }

    /// The leader's publishes, in commit order, in chunks of up to `maxPerScript`: on one server,
    /// one PUBLISH for a lone notification and one EVAL of PUBLISHes for a batch (what one wake-up
    /// of the listener drained, e.g. a transaction's worth) — one command and one reply instead
    /// of one per notification; on a cluster, each as an app's PUBLISH travels there.
    private func publishUpstream(_ batch: [PostgresListener.Notification], _ backplane: any BackplaneService) {
        var start = 0
        while start < batch.count {
            let chunk = batch[start..<min(start + Self.maxPerScript, batch.count)]
            start += chunk.count
            publishedUpstream += chunk.count
            publishesInFlight += 1
            if publishesInFlight == Self.maxPublishesInFlight { listener.setPaused(true) }
            backplane.publishNotifications(chunk.map { (relayChannels[$0.channel], $0.payload) }) { [unowned self] lost in
                lostUpstream += lost
                publishesInFlight -= 1
                if publishesInFlight == Self.maxPublishesInFlight / 2 { listener.setPaused(false) }
            }
        }
    }

    static let maxPerScript = 256
    /// Publish commands the leader may have unanswered before it stops reading from Postgres:
    /// Postgres then holds the rest, in order, in its notification queue, and Redis's answers
    /// (the lease renewal among them) stay prompt — without it an overloaded leader queued
    /// seconds of publishes ahead of its renewal, lost the lease, and the next leader's messages
    /// overtook its backlog.
    static let maxPublishesInFlight = 64
    private var publishesInFlight = 0

    // MARK: Lease

    private func backplaneChanged() {
        guard let backplane else { return }
        if !backplane.isPublisherReady, isLeader, let action = lease?.backplaneLost() { apply(action) }
        if backplane.isPublisherReady && !wasPublisherReady { leaseTick() }
        wasPublisherReady = backplane.isPublisherReady
        updateWanted()
    }

    private var wasPublisherReady = false

    private func leaseTick() {
        guard let backplane, backplane.isPublisherReady, lease != nil else { return }
        apply(lease!.tick(now: monotonicNanoseconds()))
    }

    private func apply(_ action: LeaderLease.Action) {
        guard let backplane, let lease else { return }
        switch action {
        case .none:
            return
        case .acquire:
            backplane.request(lease.acquireCommand) { [unowned self] reply in
                let ok = reply == .status(ByteBuffer(string: "OK"))
                if self.lease!.acquired(ok) {
                    logger.notice("postgres: this relay is now the leader (holds the lease, LISTENs for the fleet)",
                                  metadata: ["lease": "\(lease.key)", "ttl_ms": "\(lease.ttlMilliseconds)"])
                    updateWanted()
                } else if let reply, reply.isError {
                    logger.warning("postgres: taking the leader lease failed", metadata: ["error": "\(reply.text)"])
                }
            }
        case .renew:
            backplane.request(lease.renewCommand) { [unowned self] reply in
                let ok = reply?.integer == 1
                apply(self.lease!.renewed(ok))
            }
        case .stepDown(let reason):
            logger.warning("postgres: stepping down as leader; stopped listening", metadata: ["reason": "\(reason)"])
            updateWanted()
        }
    }

    // MARK: Status

    /// The state lines of `INFO upstreams`; the counters follow from `RelayCounterTable`.
    var infoLines: [String] {
        [
            "postgres_bridge:enabled",
            "postgres_mode:\(mode)",
            "postgres_listening:\(listening ? 1 : 0)",
            "postgres_leader:\(isLeader ? 1 : 0)",
            "postgres_channels:\(state.config.pgChannels.joined(separator: ","))",
            "postgres_last_error:\(lastError)",
        ]
    }

    var counters: PostgresBridgeCounters {
        PostgresBridgeCounters(received: notificationsReceived, published: publishedUpstream, deliveredLocally: deliveredLocally,
                               lostUpstream: lostUpstream, droppedAsStandby: droppedAsStandby, leaseChanges: leaseChanges,
                               reconnects: reconnects, gaps: gaps, gapSecondsTotal: gapSecondsTotal)
    }

    var status: PostgresBridgeStatus {
        PostgresBridgeStatus(mode: mode, listening: listening, leader: isLeader, lastError: lastError, counters: counters)
    }
}

@available(*, unavailable)
extension PostgresBridge: Sendable {}

struct PostgresBridgeStatus: Sendable {
    var mode: String
    var listening: Bool
    var leader: Bool
    var lastError: String
    /// INFO's and `/metrics`'s counters (`RelayCounterTable`).
    var counters: PostgresBridgeCounters
}
