import DequeModule
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The Redis backplane (README, "The Redis backplane"): one subscriber connection and one
/// publisher connection to Redis, whatever the number of local clients.
///
/// * Upstream (P)SUBSCRIBE is reference-counted from the registry's first/last transitions, and a
///   local client's confirmation waits for Redis's (subscribe-then-publish safety). If Redis
///   refuses one (an error reply, e.g. `-NOPERM` from its ACL), the client's command fails with
///   Redis's error, as it would on Redis, and every other subscription carries on.
/// * Local PUBLISH goes to Redis only; local subscribers get it when Redis delivers it back on the
///   subscriber connection, so every relay sees Redis's order and nothing twice.
/// * While either connection is down the relay is *degraded*: subscriptions are confirmed
///   locally, PUBLISH is delivered locally and answers the local count. Each connection
///   reconnects on its own with capped, jittered backoff; the subscriber resubscribes everything
///   in one pipeline, and the relay leaves degraded mode when both are back and in sync.
///
/// Confined to the relay's event loop, like the hub it feeds.
final class UpstreamRedisLink: Backplane, RedisConnectionDelegate {
    typealias Client = ClientConnection
    typealias Waiter = (client: ClientConnection, slot: ReplySlot)

    enum Role: String {
        case subscriber = "sub"
        case publisher = "pub"
    }

    enum Phase: String {
        case down, connecting, handshaking, syncing, ready
    }

    /// What the next non-pub/sub reply on a connection answers.
    enum Expected {
        /// A login step; an error fails the attempt when `fatal` (or when Redis says NOAUTH).
        case handshake(step: String, fatal: Bool)
        /// The handshake's closing PING.
        case handshakeDone
        case ping
        case publish(Waiter)
        case query(Waiter, PubSubQuery)
        /// One of the EVALs of a fleet-wide NUMSUB; the last one answers the client.
        case numsubPart(NumsubAnswer)
        /// Fleet-count writes: an error is logged, nothing waits.
        case bookkeeping
        /// The last write of a fleet-count batch: releases the clients whose confirmation waited.
        case fleetAck([Waiter])
        /// A request of another part of the relay (the Postgres bridge); nil when the link dropped.
        case callback((RedisReply?) -> Void)
        /// A (P)(UN)SUBSCRIBE of `total` names on the subscriber connection, `remaining` of them
        /// not yet confirmed. Redis answers with one push frame per name, or one error for all.
        case subscriptions(total: Int, remaining: Int)
    }

    final class Link {
        let role: Role
        var phase = Phase.down
        var connection: RedisConnection?
        var expected: Deque<Expected> = []
        var deadline = ReplyDeadline()
        var backoff: ReconnectBackoff
        var everConnected = false
        var lastPingSent: UInt64 = 0
        /// Bookkeeping errors are logged once per connection.
        var loggedBookkeepingError = false
        /// When the lost connection was last known good (uptime ns): its gap starts there.
        var lostAt: UInt64?

        init(role: Role, backoff: ReconnectBackoff) {
            self.role = role
            self.backoff = backoff
        }
    }

    let url: RedisURL
    let relayID: String
    private let timeout: TimeAmount
    private let pingInterval: TimeAmount
    private let eventLoop: EventLoop
    private unowned let state: RelayState
    private let sub: Link
    private let pub: Link
    private var ledger = UpstreamSubscriptionLedger<SubscribeWait>()
    private let replyLimits: UpstreamReplyScanner.Limits
    /// When the 100 ms tick last ran: a longer silence means the event loop was frozen (SIGSTOP,
    /// a stalled host), and data read since then may be stale.
    private var lastTick: UInt64 = 0
    /// Names whose refusal by Redis was logged (once each; bounded).
    private var loggedRefusals: Set<ByteBuffer> = []
    /// Resubscribe confirmations still expected after a reconnect.
    private var resyncRemaining = 0
    /// Upstream (un)subscribe names gathered in this tick, sent as one command per run.
    private var pendingRun: (kind: SubscriptionKind, subscribe: Bool, names: [ByteBuffer])?
    private var runFlushScheduled = false
    private var fleet: FleetCounts
    private var fleetFlushScheduled = false
    private var fleetWaiters: [Waiter] = []
    private var lastFleetRefresh: UInt64 = 0
    private var stopped = false
    // MARK: Sentinel (state; the rest is in the `// MARK: Sentinel` extension at the end)
    /// Set with a redis-sentinel:// URL: finds the master and follows its failovers.
    private var sentinelWatcher: SentinelWatcher?
    /// A master switch reconnects both connections without the backoff wait.
    private var reconnectAtOnce = false

    /// Local PUBLISH goes upstream (both connections ready and resubscribed).
    private(set) var isForwarding = false
    /// Since when the relay is degraded; nil while forwarding.
    private(set) var degradedSince: NIODeadline? = .now()
    private var hasBeenUp = false
    private(set) var reconnects = 0
    private(set) var gaps = 0
    private(set) var gapSecondsTotal = 0.0
    private(set) var lastError = ""
    /// PUBLISHes whose connection dropped before Redis answered (answered 0, not delivered).
    private(set) var unconfirmedPublishes = 0
    /// Subscriptions Redis refused (each failed its client's command with Redis's error).
    private(set) var refusedSubscriptions = 0
    /// Connections dropped because Redis sent more than `replyLimits` allow.
    private(set) var replyLimitDisconnects = 0
    /// Told after any change of the connections' state (the Postgres bridge follows it).
    var onStateChange: (() -> Void)?
    /// Called every tick (100 ms) while the link runs.
    var onTick: (() -> Void)?

    init(url: RedisURL, config: RelayConfig, state: RelayState, eventLoop: EventLoop) {
        self.url = url
        self.state = state
        self.eventLoop = eventLoop
        self.relayID = Self.makeRelayID()
        self.timeout = .milliseconds(Int64(config.redisTimeoutMilliseconds))
        self.pingInterval = .milliseconds(Int64(min(1000, config.redisTimeoutMilliseconds / 2)))
        let backoff = ReconnectBackoff(capMilliseconds: config.redisBackoffMaxMilliseconds)
        self.sub = Link(role: .subscriber, backoff: backoff)
        self.pub = Link(role: .publisher, backoff: backoff)
        self.fleet = FleetCounts(namespace: config.namespace, relayID: relayID, ttlMilliseconds: Self.fleetTTLMilliseconds)
        self.replyLimits = .relay(maxMessageBytes: config.maxMessageBytes)
    }

    /// How long a relay's fleet counts outlive it (refreshed every second).
    static let fleetTTLMilliseconds = 5000

    private var logger: Logger { state.logger }
    private var registry: SubscriptionRegistry<ClientConnection> { state.hub.registry }

    // MARK: Lifecycle

    func start() {
        logger.info("redis backplane: connecting", metadata: ["url": "\(url.redacted)", "relay_id": "\(relayID)"])
        lastTick = Self.now()
        startSentinelWatcher()  // Sentinel
        connect(sub)
        connect(pub)
        scheduleTick()
    }

    /// Shutdown: removes this relay's fleet counts (its apps stop counting at once) and closes.
    func stop() {
        stopped = true
        sentinelWatcher?.stop()  // Sentinel
        if pub.phase == .ready, let connection = pub.connection {
            for command in fleet.removal() { connection.send(command) }
        }
        for link in [sub, pub] {
            link.connection?.close()
            link.connection = nil
            link.phase = .down
        }
    }

    private func connect(_ link: Link) {
        guard !stopped else { return }
        guard let address = masterAddress else { return }  // Sentinel: not discovered yet
        link.phase = .connecting
        let handler = RedisConnection(replyLimits: replyLimits)
        handler.delegate = self
        link.connection = handler
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
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
        future.assumeIsolated().whenComplete { result in
            guard link.connection === handler else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success:
                if !handler.isFailed { self.handshake(link) }
            case .failure(let error):
                self.linkFailed(link, "cannot connect to \(self.connectTarget): \(Self.describe(error))")
            }
        }
    }

    /// Login, name, and (publisher) the fleet counts, pipelined; the closing PING's answer
    /// completes it.
    private func handshake(_ link: Link) {
        link.phase = .handshaking
        link.loggedBookkeepingError = false
        if let password = url.password {
            var auth = [Self.arg("AUTH")]
            if let user = url.username { auth.append(Self.arg(user)) }
            auth.append(Self.arg(password))
            send(link, auth, .handshake(step: "AUTH", fatal: true))
        }
        if link.role == .publisher && url.db != 0 {
            send(link, [Self.arg("SELECT"), Self.arg(String(url.db))], .handshake(step: "SELECT", fatal: true))
        }
        send(link, [Self.arg("CLIENT"), Self.arg("SETNAME"), Self.arg("pubsub-relay:\(relayID):\(link.role.rawValue)")],
             .handshake(step: "CLIENT SETNAME", fatal: false))
        sendRoleCheck(link)  // Sentinel
        send(link, [Self.arg("PING")], .handshakeDone)
    }

    private func handshakeDone(_ link: Link) {
        link.backoff.connected(at: Self.now())
        if link.everConnected { reconnects += 1 }
        link.everConnected = true
        switch link.role {
        case .subscriber:
            resubscribe()
        case .publisher:
            rewriteFleetCounts(at: Self.now())
            pub.phase = .ready
            updateMode()
        }
    }

    /// Every channel and pattern held locally, in one pipeline.
    private func resubscribe() {
        sub.phase = .syncing
        flushRun()
        let channels = Array(registry.activeChannels)
        let patterns = Array(registry.patterns.keys)
        resyncRemaining = channels.count + patterns.count
        for (kind, names) in [(SubscriptionKind.channel, channels), (.pattern, patterns)] {
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(start + 1024, names.count)])
                for name in chunk { ledger.sent(kind, name, subscribe: true) }
                sendSubscriptionCommand(kind, subscribe: true, chunk)
                start += chunk.count
            }
        }
        if resyncRemaining == 0 {
            sub.phase = .ready
            updateMode()
        } else {
            updateMode()
            logger.info("redis backplane: resubscribing", metadata: ["channels": "\(channels.count)", "patterns": "\(patterns.count)"])
        }
    }

    // MARK: Failure and reconnect

    /// Drops a connection: everything waiting on it is answered locally, the relay goes
    /// degraded, and a reconnect is scheduled.
    private func linkFailed(_ link: Link, _ reason: String) {
        guard link.phase != .down else { return }
        let now = Self.now()
        let wasUp = link.phase == .ready || link.phase == .syncing
        if wasUp {
            // The gap starts when the link was last known good: its last bytes — unless the loop
            // was frozen since the last tick, for then those bytes may have waited in the kernel.
            var knownGood = link.connection?.lastReadNanoseconds ?? now
            if now - lastTick > 3 * Self.tickNanoseconds { knownGood = min(knownGood, lastTick) }
            link.lostAt = knownGood
        }
        link.connection?.close()
        link.connection = nil
        link.phase = .down
        link.deadline.reset()
        let expected = link.expected
        link.expected.removeAll()
        var waiters: [SubscribeWait] = []
        if link.role == .subscriber {
            waiters = ledger.reset()
            resyncRemaining = 0
            pendingRun = nil
        }
        lastError = reason
        updateMode()
        guard !stopped else { return }
        let delay = reconnectAtOnce ? 0 : link.backoff.nextDelayMilliseconds(now: now) { Double.random(in: 0..<1) }
        logger.log(level: wasUp ? .error : .warning, "redis \(link.role == .subscriber ? "subscriber" : "publisher") connection down",
                   metadata: ["reason": "\(reason)", "retry_in_ms": "\(delay)", "url": "\(url.redacted)"])
        eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(delay))) { [self] in
            if link.phase == .down { connect(link) }
        }
        // Answer what waited only now: a client resuming here already sees the relay degraded.
        for entry in expected { resolveLocally(entry) }
        for wait in waiters { resolve(wait, refusal: nil) }
    }

    private func resolveLocally(_ entry: Expected) {
        switch entry {
        case .publish(let w):
            unconfirmedPublishes += 1
            var reply = ByteBuffer()
            reply.writeRESPInteger(0)
            fill(w, reply)
        case .query(let w, let query):
            var reply = ByteBuffer()
            state.executor.writeLocalAnswer(query, w.client.respVersion, into: &reply)
            fill(w, reply)
        case .numsubPart(let answer):
            answer.fail()
            if let w = answer.takeWaiterIfComplete() { fill(w, answer.reply(w.client.respVersion, executor: state.executor)) }
        case .fleetAck(let waiters):
            release(waiters)
        case .callback(let completion):
            completion(nil)
        case .handshake, .handshakeDone, .ping, .bookkeeping, .subscriptions:
            break
        }
    }

    private func updateMode() {
        defer { onStateChange?() }
        let forwarding = sub.phase == .ready && pub.phase == .ready
        guard forwarding != isForwarding else { return }
        isForwarding = forwarding
        if forwarding {
            sub.lostAt = nil
            pub.lostAt = nil
            if let since = degradedSince, hasBeenUp {
                let seconds = Double((NIODeadline.now() - since).nanoseconds) / 1e9
                gaps += 1
                gapSecondsTotal += seconds
                logger.notice("redis backplane restored; messages other relays published during the gap were not delivered here",
                              metadata: ["gap_seconds": "\(Self.format(seconds))", "reconnects": "\(reconnects)"])
            } else {
                logger.info("redis backplane up", metadata: ["relay_id": "\(relayID)"])
            }
            hasBeenUp = true
            degradedSince = nil
        } else {
            let lostAt = [sub.lostAt, pub.lostAt].compactMap { $0 }.min()
            degradedSince = lostAt.map { NIODeadline.uptimeNanoseconds($0) } ?? .now()
            if hasBeenUp {
                logger.error("redis backplane lost: degraded mode, local publishes reach local subscribers only",
                             metadata: ["reason": "\(lastError)"])
            }
        }
    }

    /// Whether commands can be sent (PUBLISH, the lease), whatever the subscriber's state.
    var isPublisherReady: Bool { pub.phase == .ready }

    /// Redis answers on at least one of the two connections. When neither does, Redis is down
    /// for this relay (as opposed to one connection having been cut, e.g. by Redis's own
    /// output-buffer limit, which reconnects in milliseconds).
    /// The subscriber counts from the moment it sends its resubscriptions (syncing): from then on
    /// Redis may deliver, so a relay delivering Postgres events locally must stop.
    var isReachable: Bool { sub.phase == .syncing || sub.phase == .ready || pub.phase == .ready }

    // MARK: Timer

    private static let tickNanoseconds: UInt64 = 100_000_000

    private func scheduleTick() {
        eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(Self.tickNanoseconds))) { [self] in
            guard !stopped else { return }
            tick()
            onTick?()
            lastTick = Self.now()
            scheduleTick()
        }
    }

    /// Deadlines of both connections, the subscriber's PING, the fleet-count refresh.
    private func tick() {
        let now = Self.now()
        let limit = UInt64(timeout.nanoseconds)
        // Redis is hung when it has been silent for the timeout with a request outstanding. After a
        // stall of the relay's own loop (a long burst of work, SIGSTOP) its replies may be sitting
        // unread in the socket: a deadline missed meanwhile says nothing about Redis.
        let stalled = now - lastTick > 3 * Self.tickNanoseconds
        for link in [sub, pub] where link.phase != .down && link.phase != .connecting {
            link.deadline.resume(at: stalled ? now : link.connection?.lastReadNanoseconds ?? 0)
            if !stalled, link.deadline.isOverdue(now: now, timeoutNanoseconds: limit) {
                linkFailed(link, "no reply from Redis within \(Self.format(Double(limit) / 1e9)) s (hung, stopped or overloaded)")
            }
        }
        if sub.phase == .ready || sub.phase == .syncing, now - sub.lastPingSent >= UInt64(pingInterval.nanoseconds) {
            sub.lastPingSent = now
            send(sub, [Self.arg("PING")], .ping)
        }
        if pub.phase == .ready, now - lastFleetRefresh >= 1_000_000_000 {
            // Unrefreshed for most of its lifetime (the relay was stalled or stopped): the hash
            // may have expired in Redis, so it is written whole again.
            if now - lastFleetRefresh >= UInt64(Self.fleetTTLMilliseconds) * 800_000 {
                rewriteFleetCounts(at: now)
            } else {
                lastFleetRefresh = now
                for command in fleet.refresh() { send(pub, command, .bookkeeping) }
            }
        }
    }

    /// This relay's whole fleet-count hash, from the registry (after a reconnect or a stall).
    private func rewriteFleetCounts(at now: UInt64) {
        let counts = registry.activeChannels.map { ($0, registry.numberOfSubscribers(channel: $0)) }
        for command in fleet.takeFullRewrite(counts) { send(pub, command, .bookkeeping) }
        lastFleetRefresh = now
    }

    // MARK: Replies

    func redisConnection(_ connection: RedisConnection, received reply: RedisReply) {
        let link = connection === sub.connection ? sub : pub
        guard link.connection === connection else { return }
        if link.role == .subscriber, reply.isArray, reply.count >= 3, handlePubSubFrame(reply) { return }
        if reply.isError, refusedAsReadOnly(link, reply) { return }  // Sentinel
        guard let expected = link.expected.popFirst() else {
            linkFailed(link, "unexpected reply from Redis: \(Self.describe(reply))")
            return
        }
        link.deadline.answered()
        switch expected {
        case .handshake(let step, let fatal):
            if reply.isError {
                let text = reply.text
                if fatal || text.hasPrefix("NOAUTH") || text.hasPrefix("WRONGPASS") {
                    linkFailed(link, "Redis refused \(step): \(text)")
                } else {
                    logger.notice("redis: \(step) refused (continuing)", metadata: ["error": "\(text)"])
                }
            }
        case .handshakeDone, .ping:
            if reply.isError {
                linkFailed(link, "Redis answered PING with an error: \(reply.text)")
            } else if case .handshakeDone = expected {
                handshakeDone(link)
            }
        case .publish(let w):
            var out = ByteBuffer()
            if reply.isInteger {
                out.writeRESPInteger(reply.integer)
            } else {
                reply.write(asRESP: w.client.respVersion, into: &out)
            }
            fill(w, out)
        case .query(let w, let query):
            var out = ByteBuffer()
            if reply.isError {
                logger.warning("redis: fleet-wide PUBSUB query failed; answering from this relay's own subscribers",
                               metadata: ["error": "\(reply.text)"])
                state.executor.writeLocalAnswer(query, w.client.respVersion, into: &out)
            } else {
                reply.write(asRESP: w.client.respVersion, into: &out)
            }
            fill(w, out)
        case .numsubPart(let answer):
            if reply.isError {
                logger.warning("redis: fleet-wide PUBSUB query failed; answering from this relay's own subscribers",
                               metadata: ["error": "\(reply.text)"])
                answer.fail()
            } else {
                answer.add(reply)
            }
            if let w = answer.takeWaiterIfComplete() { fill(w, answer.reply(w.client.respVersion, executor: state.executor)) }
        case .bookkeeping:
            logBookkeepingError(link, reply)
        case .fleetAck(let waiters):
            logBookkeepingError(link, reply)
            release(waiters)
        case .callback(let completion):
            completion(reply)
        case .subscriptions(let total, let remaining):
            guard reply.isError, remaining == total else {
                linkFailed(link, "subscriber connection out of step: \(Self.describe(reply)) in answer to a subscription command")
                return
            }
            subscriptionsRefused(total, reply)
        }
    }

    func redisConnection(_ connection: RedisConnection, failed reason: String) {
        let link = connection === sub.connection ? sub : pub
        guard link.connection === connection else { return }
        if connection.exceededReplyLimits { replyLimitDisconnects += 1 }
        linkFailed(link, reason)
    }

    private func logBookkeepingError(_ link: Link, _ reply: RedisReply) {
        guard reply.isError, !link.loggedBookkeepingError else { return }
        link.loggedBookkeepingError = true
        logger.warning("redis: writing the fleet subscriber counts failed; PUBSUB NUMSUB will miss this relay's apps",
                       metadata: ["error": "\(reply.text)", "namespace": "\(fleet.namespace)"])
    }

    /// A message or a subscription confirmation on the subscriber connection; false for anything
    /// else (a `pong` array).
    private func handlePubSubFrame(_ reply: RedisReply) -> Bool {
        let kind = reply[0]
        if kind.equals("message"), reply.count == 3 {
            state.hub.deliverUpstream(channel: Self.key(reply[1].bytes, reusing: &lastChannel), payload: reply[2].bytes)
            return true
        }
        if kind.equals("pmessage"), reply.count == 4 {
            state.hub.deliverUpstream(pattern: Self.key(reply[1].bytes, reusing: &lastPattern),
                                      channel: reply[2].bytes, payload: reply[3].bytes)
            return true
        }
        let confirmation: (SubscriptionKind, Bool)
        if kind.equals("subscribe") { confirmation = (.channel, true) }
        else if kind.equals("unsubscribe") { confirmation = (.channel, false) }
        else if kind.equals("psubscribe") { confirmation = (.pattern, true) }
        else if kind.equals("punsubscribe") { confirmation = (.pattern, false) }
        else { return false }
        let name = ByteBuffer(bytes: reply[1].bytes)
        guard case .subscriptions(let total, let remaining)? = sub.expected.first else {
            linkFailed(sub, "subscriber connection out of step: a confirmation with no subscription command in flight")
            return true
        }
        if remaining > 1 {
            sub.expected[0] = .subscriptions(total: total, remaining: remaining - 1)
        } else {
            sub.expected.removeFirst()
            sub.deadline.answered()
        }
        do {
            let waiters = try ledger.confirmed(confirmation.0, name, subscribe: confirmation.1)
            resyncProgressed()
            for wait in waiters { resolve(wait, refusal: nil) }
        } catch {
            linkFailed(sub, "subscriber connection out of step: \(error)")
        }
        return true
    }

    /// One resubscription after a reconnect was answered; the last one makes the link ready.
    private func resyncProgressed() {
        guard resyncRemaining > 0 else { return }
        resyncRemaining -= 1
        if resyncRemaining == 0 {
            sub.phase = .ready
            updateMode()
        }
    }

    /// Redis answered a (P)SUBSCRIBE of `count` names with an error: none of them is subscribed.
    /// A command of several names (one tick's subscriptions of several clients, or a
    /// resubscription) is sent again one name at a time, so that only the names Redis refuses
    /// fail; a refused name fails the commands of the clients that waited for it.
    private func subscriptionsRefused(_ count: Int, _ reply: RedisReply) {
        let refused: [UpstreamSubscriptionLedger<SubscribeWait>.Refused]
        do {
            refused = try ledger.refuseOldest(count)
        } catch {
            linkFailed(sub, "subscriber connection out of step: \(error)")
            return
        }
        sub.deadline.answered()
        var errorLine = ByteBuffer()
        reply.write(asRESP: .resp2, into: &errorLine)
        // Names queued for this tick are in the ledger already: they go out before the retries.
        flushRun()
        for entry in refused {
            if count > 1, entry.subscribe, holdsLocally(entry.kind, entry.name) {
                ledger.sent(entry.kind, entry.name, subscribe: true)
                for wait in entry.waiters { _ = ledger.wait(for: entry.kind, entry.name, wait) }
                sendSubscriptionCommand(entry.kind, subscribe: true, [entry.name])
                continue
            }
            if entry.subscribe {
                refusedSubscriptions += 1
                logRefusal(entry.kind, entry.name, reply.text)
            }
            resyncProgressed()
            for wait in entry.waiters { resolve(wait, refusal: errorLine) }
        }
    }

    private func holdsLocally(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        kind == .channel ? registry.numberOfSubscribers(channel: name) > 0 : registry.patterns[name] != nil
    }

    private func logRefusal(_ kind: SubscriptionKind, _ name: ByteBuffer, _ error: String) {
        let first = loggedRefusals.count < 10_000 && loggedRefusals.insert(name).inserted
        let shown = String(decoding: name.readableBytesView.prefix(128), as: UTF8.self)
        logger.log(level: first ? .warning : .debug,
                   "redis refused a subscription: the apps asking for it get Redis's error, other subscriptions carry on",
                   metadata: [kind == .channel ? "channel" : "pattern": "\(shown)", "error": "\(error)"])
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

    // MARK: Backplane (called by the executor)

    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: ClientConnection) {
        if kind == .channel {
            fleetChanged(name, client: isForwarding ? client : nil)
        }
        guard first, sub.phase == .syncing || sub.phase == .ready else { return }
        queueSubscription(kind, name.compacted(), subscribe: true)
    }

    func holdConfirmations(_ kind: SubscriptionKind, _ names: [ByteBuffer], for client: ClientConnection) -> ReplySlot? {
        guard isForwarding else { return nil }
        let pending = names.filter { ledger.isPending(kind, $0) }
        guard !pending.isEmpty else { return nil }
        let wait = SubscribeWait(client: client, slot: client.reserveReplySlot(), kind: kind, names: names, remaining: pending.count)
        for name in pending { _ = ledger.wait(for: kind, name, wait) }
        return wait.slot
    }

    /// One of the names `wait` waited for was confirmed (or confirmed locally, the link having
    /// dropped), or refused; after the last, the client sees its confirmations or Redis's error.
    private func resolve(_ wait: SubscribeWait, refusal: ByteBuffer?) {
        if let refusal, wait.refusal == nil { wait.refusal = refusal }
        wait.remaining -= 1
        guard wait.remaining == 0 else { return }
        if let refusal = wait.refusal {
            state.executor.undoSubscriptions(wait.kind, wait.names, of: wait.client)
            fill((wait.client, wait.slot), refusal)
        } else {
            fill((wait.client, wait.slot), nil)
        }
    }

    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool) {
        if kind == .channel { fleetChanged(name, client: nil) }
        guard last, sub.phase == .syncing || sub.phase == .ready else { return }
        queueSubscription(kind, name.compacted(), subscribe: false)
    }

    func publish(channel: ByteBuffer, payload: ByteBuffer, from client: ClientConnection) {
        send(pub, [Self.publishCommand, channel, payload], .publish((client, client.reserveReplySlot())))
    }

    func answer(_ query: PubSubQuery, for client: ClientConnection) -> Bool {
        guard isForwarding else { return false }
        let command: [ByteBuffer]
        switch query {
        case .numsub(let channels):
            let commands = fleet.numsubCommands(channels)
            let answer = NumsubAnswer((client, client.reserveReplySlot()), query, parts: commands.count)
            for command in commands { send(pub, command, .numsubPart(answer)) }
            return true
        case .channels(let pattern): command = [Self.arg("PUBSUB"), Self.arg("CHANNELS")] + (pattern.map { [$0] } ?? [])
        case .numpat: command = [Self.arg("PUBSUB"), Self.arg("NUMPAT")]
        }
        send(pub, command, .query((client, client.reserveReplySlot()), query))
        return true
    }

    /// Sends a command on the publisher connection for another part of the relay; `completion`
    /// gets Redis's reply, or nil if the connection is not ready or drops first.
    func request(_ args: [ByteBuffer], _ completion: @escaping (RedisReply?) -> Void) {
        guard pub.phase == .ready else {
            completion(nil)
            return
        }
        send(pub, args, .callback(completion))
    }

    // MARK: Sending

    private func send(_ link: Link, _ args: [ByteBuffer], _ expected: Expected) {
        guard let connection = link.connection else {
            resolveLocally(expected)
            return
        }
        connection.send(args)
        link.expected.append(expected)
        link.deadline.sent(at: Self.now())
    }

    /// Upstream (un)subscriptions of one tick go out as one command per run of the same kind
    /// (SUBSCRIBE a b c …), in order; the ledger records each name as it is queued.
    private func queueSubscription(_ kind: SubscriptionKind, _ name: ByteBuffer, subscribe: Bool) {
        ledger.sent(kind, name, subscribe: subscribe)
        if let run = pendingRun, run.kind != kind || run.subscribe != subscribe || run.names.count >= 1024 {
            flushRun()
        }
        if pendingRun == nil { pendingRun = (kind, subscribe, []) }
        pendingRun!.names.append(name)
        if !runFlushScheduled {
            runFlushScheduled = true
            eventLoop.assumeIsolated().execute { [self] in
                runFlushScheduled = false
                flushRun()
            }
        }
    }

    private func flushRun() {
        guard let run = pendingRun else { return }
        pendingRun = nil
        sendSubscriptionCommand(run.kind, subscribe: run.subscribe, run.names)
    }

    /// `(P)(UN)SUBSCRIBE name…` on the subscriber connection (the ledger already has the names).
    private func sendSubscriptionCommand(_ kind: SubscriptionKind, subscribe: Bool, _ names: [ByteBuffer]) {
        let verb = (kind == .pattern ? "P" : "") + (subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE")
        send(sub, [Self.arg(verb)] + names, .subscriptions(total: names.count, remaining: names.count))
    }

    /// A channel's local count changed: written to the fleet hash at the end of the tick. While
    /// forwarding, the subscribing client's confirmation also waits for that write, so that a
    /// NUMSUB asked after the confirmation (anywhere in the fleet) counts it.
    private func fleetChanged(_ channel: ByteBuffer, client: ClientConnection?) {
        fleet.changed(channel.compacted())
        guard pub.phase == .ready else { return }
        if let client, fleetWaiters.last?.client !== client {
            fleetWaiters.append((client, client.reserveReplySlot()))
        }
        if !fleetFlushScheduled {
            fleetFlushScheduled = true
            eventLoop.assumeIsolated().execute { [self] in
                fleetFlushScheduled = false
                flushFleet()
            }
        }
    }

    private func flushFleet() {
        let waiters = fleetWaiters
        fleetWaiters = []
        guard pub.phase == .ready, fleet.hasChanges else {
            release(waiters)
            return
        }
        let commands = fleet.takeUpdate { registry.numberOfSubscribers(channel: $0) }
        for (i, command) in commands.enumerated() {
            send(pub, command, i == commands.count - 1 ? .fleetAck(waiters) : .bookkeeping)
        }
    }

    private func release(_ waiters: [Waiter]) {
        for w in waiters { fill(w, nil) }
    }

    private func fill(_ w: Waiter, _ bytes: ByteBuffer?) {
        w.slot.fill(bytes)
        w.client.upstreamReplied()
    }

    // MARK: Status

    var status: RedisLinkStatus {
        sentinelStatus(RedisLinkStatus(
            url: url.redacted, relayID: relayID,
            subscriber: sub.phase.rawValue, publisher: pub.phase.rawValue,
            forwarding: isForwarding,
            degradedSeconds: degradedSince.map { Double((NIODeadline.now() - $0).nanoseconds) / 1e9 },
            degradedSinceUnixMilliseconds: degradedSince.map {
                RedisLinkStatus.wallClockMilliseconds() - Int((NIODeadline.now() - $0).nanoseconds / 1_000_000)
            },
            reconnects: reconnects, gaps: gaps, gapSecondsTotal: gapSecondsTotal, lastError: lastError,
            upstreamChannels: registry.channelCount, upstreamPatterns: registry.patternCount,
            pendingConfirmations: ledger.count, unconfirmedPublishes: unconfirmedPublishes,
            refusedSubscriptions: refusedSubscriptions, replyLimitDisconnects: replyLimitDisconnects))
    }

    // MARK: Helpers

    private static let publishCommand = ByteBuffer(string: "PUBLISH")

    private static func arg(_ s: String) -> ByteBuffer {
        ByteBuffer(string: s)
    }


    private static func now() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds
    }

    static func format(_ seconds: Double) -> String {
        let ms = Int((seconds * 1000).rounded())
        let frac = ms % 1000
        return "\(ms / 1000)." + String(repeating: "0", count: frac < 10 ? 2 : frac < 100 ? 1 : 0) + "\(frac)"
    }

    private static func describe(_ error: Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error)
        }
        if let channel = error as? ChannelError, case .connectTimeout(let t) = channel {
            return "connect timed out after \(format(Double(t.nanoseconds) / 1e9)) s"
        }
        return "\(error)"
    }

    private static func describe(_ reply: RedisReply) -> String {
        if reply.isArray { return "array of \(reply.count)" }
        if reply.isInteger { return ":\(reply.integer)" }
        return String(reply.text.prefix(80))
    }

    /// `host-pid-xxxx`: readable in CLIENT LIST, unique across restarts.
    private static func makeRelayID() -> String {
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

// MARK: Sentinel

/// Redis Sentinel (README, "Redis Sentinel"): the connections go to the master the sentinels
/// name, are checked with `ROLE`, and move at once when the master switches; a `-READONLY`
/// (a demoted master) fails the connection and sends discovery back to the sentinels.
extension UpstreamRedisLink {
    /// Where the connections go: the URL's fixed address, or the discovered master (nil until
    /// the sentinels have answered).
    private var masterAddress: RedisURL.Address? {
        guard let sentinelWatcher else { return url.address }
        return sentinelWatcher.master.map { .tcp(host: $0.host, port: $0.port) }
    }

    private var connectTarget: String {
        guard let sentinelWatcher, let master = sentinelWatcher.master, let name = url.sentinel?.masterName else { return url.redacted }
        return "master '\(name)' at \(master)"
    }

    private func startSentinelWatcher() {
        guard let sentinel = url.sentinel else { return }
        let watcher = SentinelWatcher(
            sentinel: sentinel, timeoutMilliseconds: Int(timeout.nanoseconds / 1_000_000),
            backoffCapMilliseconds: sub.backoff.capMilliseconds, eventLoop: eventLoop, logger: logger
        ) { [unowned self] address in sentinelMasterChanged(to: address) }
        sentinelWatcher = watcher
        watcher.start()
    }

    /// The sentinels name a new master (or the first one): both connections are dropped and
    /// reconnected there without waiting; the resubscription on reconnect re-establishes every
    /// subscription, and the gap is logged and counted as for any outage.
    private func sentinelMasterChanged(to address: RedisURL.Address) {
        guard !stopped else { return }
        if sentinelWatcher?.switches ?? 0 > 0 {
            logger.notice("redis master switched: reconnecting both connections to the new master", metadata: [
                "master": "\(connectTarget)", "master_switches": "\(sentinelWatcher?.switches ?? 0)",
            ])
        }
        reconnectAtOnce = true
        defer { reconnectAtOnce = false }
        for link in [sub, pub] {
            if link.phase == .down {
                connect(link)
            } else {
                linkFailed(link, "the master moved to \(connectTarget) (sentinel failover)")
            }
        }
    }

    /// In the handshake: `ROLE` must answer `master` first, or the connection fails and the
    /// sentinels are asked again (a stale answer, or a node demoted since).
    private func sendRoleCheck(_ link: Link) {
        guard sentinelWatcher != nil else { return }
        send(link, [Self.arg("ROLE")], .callback { [unowned self] reply in
            guard let reply else { return }
            let role = reply.isArray && reply.count > 0 ? reply[0].text : reply.isError ? "-" + reply.text : "?"
            guard role != "master", link.connection != nil else { return }
            linkFailed(link, "\(connectTarget) is not a master: ROLE answered \(role.prefix(80))")
            sentinelWatcher?.masterRefused("ROLE answered \(role.prefix(80))")
        })
    }

    /// Never publish to a demoted master: a `-READONLY` on either connection drops it (what
    /// waited on it is answered locally, as after any loss) and sends discovery back to the
    /// sentinels. Without Sentinel a READONLY is Redis's answer like any other.
    private func refusedAsReadOnly(_ link: Link, _ reply: RedisReply) -> Bool {
        guard sentinelWatcher != nil, reply.text.hasPrefix("READONLY") else { return false }
        linkFailed(link, "\(connectTarget) answered -READONLY: it is a replica now")
        sentinelWatcher?.masterRefused("-READONLY")
        return true
    }

    private func sentinelStatus(_ base: RedisLinkStatus) -> RedisLinkStatus {
        var s = base
        switch masterAddress {
        case .tcp(let host, let port)?: s.master = RedisURL.Sentinel.Endpoint(host: host, port: port).description
        case .unix(let path)?: s.master = path
        case nil: s.master = ""
        }
        guard let sentinelWatcher else { return s }
        s.topology = "sentinel"
        s.masterSwitches = sentinelWatcher.switches
        s.sentinel = sentinelWatcher.subscribedSentinel?.description ?? ""
        return s
    }
}

/// One client's SUBSCRIBE or PSUBSCRIBE whose confirmations wait for upstream: the names it
/// added (undone if Redis refuses any) and how many are still unconfirmed.
final class SubscribeWait {
    let client: ClientConnection
    let slot: ReplySlot
    let kind: SubscriptionKind
    let names: [ByteBuffer]
    var remaining: Int
    /// Redis's error line, once it refused one of the names.
    var refusal: ByteBuffer?

    init(client: ClientConnection, slot: ReplySlot, kind: SubscriptionKind, names: [ByteBuffer], remaining: Int) {
        self.client = client
        self.slot = slot
        self.kind = kind
        self.names = names
        self.remaining = remaining
    }
}

@available(*, unavailable)
extension SubscribeWait: Sendable {}

/// A fleet-wide NUMSUB answered by several EVALs: their answers are gathered in order; if any
/// fails (an error reply, the connection dropped), the client gets this relay's own count.
final class NumsubAnswer {
    typealias Waiter = UpstreamRedisLink.Waiter
    private var waiter: Waiter?
    private let query: PubSubQuery
    private var remaining: Int
    private var failed = false
    private var elements = 0
    private var body = ByteBuffer()

    init(_ waiter: Waiter, _ query: PubSubQuery, parts: Int) {
        self.waiter = waiter
        self.query = query
        self.remaining = parts
    }

    func add(_ reply: RedisReply) {
        remaining -= 1
        guard !failed, let version = waiter?.client.respVersion else { return }
        guard reply.isArray else { return fail(counted: false) }
        elements += reply.count
        for i in 0..<reply.count { reply[i].write(asRESP: version, into: &body) }
    }

    func fail() { fail(counted: true) }

    private func fail(counted: Bool) {
        if counted { remaining -= 1 }
        failed = true
        body = ByteBuffer()
    }

    /// The client's waiter once every part is in (handed out once).
    func takeWaiterIfComplete() -> Waiter? {
        guard remaining == 0, let w = waiter else { return nil }
        waiter = nil
        return w
    }

    func reply(_ version: RESPVersion, executor: CommandExecutor<ClientConnection>) -> ByteBuffer {
        var out = ByteBuffer()
        if failed {
            executor.writeLocalAnswer(query, version, into: &out)
        } else {
            out.writeRESPArrayHeader(elements)
            out.writeImmutableBuffer(body)
        }
        return out
    }
}

@available(*, unavailable)
extension NumsubAnswer: Sendable {}

/// The backplane's state at one instant, for INFO, `/health` and `/metrics`.
struct RedisLinkStatus: Sendable {
    var url: String
    var relayID: String
    var subscriber: String
    var publisher: String
    var forwarding: Bool
    var degradedSeconds: Double?
    var degradedSinceUnixMilliseconds: Int?
    var reconnects: Int
    var gaps: Int
    var gapSecondsTotal: Double
    var lastError: String
    var upstreamChannels: Int
    var upstreamPatterns: Int
    var pendingConfirmations: Int
    var unconfirmedPublishes: Int
    var refusedSubscriptions: Int
    var replyLimitDisconnects: Int
    // Sentinel (README, "Redis Sentinel"): set by `UpstreamRedisLink.sentinelStatus`.
    /// `standalone` or `sentinel`.
    var topology = "standalone"
    /// The address the connections go to (`host:port`, or the socket path).
    var master = ""
    var masterSwitches = 0
    /// The sentinel whose `+switch-master` is followed (empty when none, or standalone).
    var sentinel = ""

    /// `up`, or `degraded` (not yet connected, or lost: local delivery only).
    var state: String { forwarding ? "up" : "degraded" }

    static func wallClockMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }
}
