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
    /// Redis Cluster (README, "Redis Cluster"): slot maps received, `-MOVED` PUBLISHes sent again,
    /// `sunsubscribe`s Redis pushed for a slot that moved, and names subscribed again on a new owner.
    public var clusterRefreshes: Int
    public var clusterRedirects: Int
    public var clusterSlotMovesPushed: Int
    public var clusterResubscriptions: Int

    public init(reconnects: Int, gaps: Int, gapSecondsTotal: Double, unconfirmedPublishes: Int,
                refusedSubscriptions: Int, replyLimitDisconnects: Int, masterSwitches: Int,
                heldPublishes: Int, malformedFleetMessages: Int, clusterRefreshes: Int, clusterRedirects: Int,
                clusterSlotMovesPushed: Int, clusterResubscriptions: Int) {
        self.clusterRefreshes = clusterRefreshes
        self.clusterRedirects = clusterRedirects
        self.clusterSlotMovesPushed = clusterSlotMovesPushed
        self.clusterResubscriptions = clusterResubscriptions
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

    public static let zero = RedisLinkCounters(reconnects: 0, gaps: 0, gapSecondsTotal: 0, unconfirmedPublishes: 0, refusedSubscriptions: 0,
                                               replyLimitDisconnects: 0, masterSwitches: 0, heldPublishes: 0, malformedFleetMessages: 0,
                                               clusterRefreshes: 0, clusterRedirects: 0, clusterSlotMovesPushed: 0, clusterResubscriptions: 0)

    /// The sum over several links (a Redis Cluster's masters).
    public static func + (a: Self, b: Self) -> Self {
        RedisLinkCounters(reconnects: a.reconnects + b.reconnects, gaps: a.gaps + b.gaps, gapSecondsTotal: a.gapSecondsTotal + b.gapSecondsTotal,
                          unconfirmedPublishes: a.unconfirmedPublishes + b.unconfirmedPublishes,
                          refusedSubscriptions: a.refusedSubscriptions + b.refusedSubscriptions,
                          replyLimitDisconnects: a.replyLimitDisconnects + b.replyLimitDisconnects, masterSwitches: a.masterSwitches + b.masterSwitches,
                          heldPublishes: a.heldPublishes + b.heldPublishes, malformedFleetMessages: a.malformedFleetMessages + b.malformedFleetMessages,
                          clusterRefreshes: a.clusterRefreshes + b.clusterRefreshes, clusterRedirects: a.clusterRedirects + b.clusterRedirects,
                          clusterSlotMovesPushed: a.clusterSlotMovesPushed + b.clusterSlotMovesPushed,
                          clusterResubscriptions: a.clusterResubscriptions + b.clusterResubscriptions)
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
