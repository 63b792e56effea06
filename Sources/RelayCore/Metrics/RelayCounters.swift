/// Every counter the relay keeps, copied at one instant on the client event loop: what INFO's
/// counter lines and `/metrics`'s counters are rendered from (`RelayCounterTable`).
public struct RelayCounters: Sendable, Equatable {
    public var stats: RelayStats.Counts
    /// nil when no Redis backplane is configured.
    public var redis: RedisLinkCounters?
    /// nil when no Postgres bridge is configured.
    public var postgres: PostgresBridgeCounters?

    public init(stats: RelayStats.Counts, redis: RedisLinkCounters? = nil, postgres: PostgresBridgeCounters? = nil) {
        self.stats = stats
        self.redis = redis
        self.postgres = postgres
    }
}

/// The Redis backplane's counters (kept by `BackplaneStateMachine`). No defaults: the copy in
/// `UpstreamRedisLink.status` must name every field.
public struct RedisLinkCounters: Sendable, Equatable {
    public var reconnects: Int
    public var gaps: Int
    public var gapSecondsTotal: Double
    public var unconfirmedPublishes: Int
    public var refusedSubscriptions: Int
    public var replyLimitDisconnects: Int
    public var masterSwitches: Int
    public var heldPublishes: Int
    public var malformedFleetMessages: Int

    public init(reconnects: Int, gaps: Int, gapSecondsTotal: Double, unconfirmedPublishes: Int,
                refusedSubscriptions: Int, replyLimitDisconnects: Int, masterSwitches: Int,
                heldPublishes: Int, malformedFleetMessages: Int) {
        self.reconnects = reconnects
        self.gaps = gaps
        self.gapSecondsTotal = gapSecondsTotal
        self.unconfirmedPublishes = unconfirmedPublishes
        self.refusedSubscriptions = refusedSubscriptions
        self.replyLimitDisconnects = replyLimitDisconnects
        self.masterSwitches = masterSwitches
        self.heldPublishes = heldPublishes
        self.malformedFleetMessages = malformedFleetMessages
    }
}

/// The Postgres bridge's counters (kept by `PostgresBridge` and its `LeaderLease`). No defaults:
/// the copy in `PostgresBridge.status` must name every field.
public struct PostgresBridgeCounters: Sendable, Equatable {
    public var received: Int
    public var published: Int
    public var deliveredLocally: Int
    public var lostUpstream: Int
    public var droppedAsStandby: Int
    public var leaseChanges: Int
    public var reconnects: Int
    public var gaps: Int
    public var gapSecondsTotal: Double

    public init(received: Int, published: Int, deliveredLocally: Int, lostUpstream: Int, droppedAsStandby: Int,
                leaseChanges: Int, reconnects: Int, gaps: Int, gapSecondsTotal: Double) {
        self.received = received
        self.published = published
        self.deliveredLocally = deliveredLocally
        self.lostUpstream = lostUpstream
        self.droppedAsStandby = droppedAsStandby
        self.leaseChanges = leaseChanges
        self.reconnects = reconnects
        self.gaps = gaps
        self.gapSecondsTotal = gapSecondsTotal
    }
}
