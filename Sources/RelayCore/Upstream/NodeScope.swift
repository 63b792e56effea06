import NIOCore

/// What one `BackplaneStateMachine` carries upstream (README, "Redis Cluster"). On one server (or
/// a Sentinel master) it carries everything (`whole`). On a Redis Cluster there is one machine per
/// master: each carries the shard channels — and in sharded mode the app channels, as shard
/// channels — of the slots its master serves; the *home* master's machine (the owner of the
/// namespace's hash tag) also carries the patterns, the classic channels of classic mode, the
/// fleet's counts and its fleet channel, and answers the fleet-wide PUBSUB questions.
public struct NodeScope: Sendable, Equatable {
    /// Carries the fleet's bookkeeping, the patterns and (classic mode) the classic channels.
    public var home: Bool
    /// App channels go upstream as `SSUBSCRIBE`/`SPUBLISH` (a cluster in sharded mode); an app's
    /// channel and its shard channel of the same name then share one upstream subscription.
    public var channelsSharded: Bool
    /// For each slot, whether this node serves it; nil: every name (one server).
    public var slots: [Bool]?

    public init(home: Bool, channelsSharded: Bool, slots: [Bool]?) {
        self.home = home
        self.channelsSharded = channelsSharded
        self.slots = slots
    }

    /// One server: everything, with classic channels.
    public static let whole = NodeScope(home: true, channelsSharded: false, slots: nil)
    /// A cluster master before the first slot map names its slots.
    public static let noSlots = [Bool](repeating: false, count: ClusterSlot.count)

    public var isCluster: Bool { slots != nil }

    /// Whether this node serves `name`'s slot.
    @inline(__always)
    public func serves(_ name: ByteBuffer) -> Bool {
        guard let slots else { return true }
        return slots[name.withUnsafeReadableBytes { ClusterSlot.of($0) }]
    }

    /// How an app subscription of `kind` travels upstream.
    public func upstreamKind(_ kind: SubscriptionKind) -> SubscriptionKind {
        kind == .channel && channelsSharded ? .shard : kind
    }
}
