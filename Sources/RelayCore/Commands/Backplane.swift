import NIOCore

/// A fleet-wide PUBSUB question the backplane may answer instead of the local registry.
public enum PubSubQuery: Sendable {
    case channels(pattern: ByteBuffer?)
    case numsub([ByteBuffer])
    case numpat
    /// `PUBSUB SHARDCHANNELS [pattern]` and `SHARDNUMSUB [shardchannel…]`: shard channels only.
    case shardchannels(pattern: ByteBuffer?)
    case shardnumsub([ByteBuffer])

    /// Whether it asks about shard channels.
    public var isSharded: Bool {
        switch self {
        case .shardchannels, .shardnumsub: return true
        case .channels, .numsub, .numpat: return false
        }
    }
}

/// The executor's view of an upstream backplane (the Redis link, which lives at the I/O edge).
/// The executor keeps the local registry exact and tells the backplane of every change; the
/// backplane reference-counts the upstream subscriptions from the `first`/`last` flags, and holds
/// a client's reply (through its `DeferredReplies`) when it must wait for upstream.
public protocol Backplane<Client>: AnyObject {
    associatedtype Client: RelayClient

    /// Whether a local PUBLISH goes upstream now; false while degraded (delivered locally).
    var isForwarding: Bool { get }
    /// `client` now holds `name`; `first` when no local client held it before. Called before the
    /// client's confirmation is queued, so a wait registered here holds that confirmation back.
    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: Client)
    /// After one (P|S)SUBSCRIBE added `names` for `client` (each already told through
    /// `subscriptionAdded`): a slot holding the command's confirmations while any of them waits
    /// for upstream, or nil to send them at once. The backplane fills the slot when upstream has
    /// confirmed them all, or with Redis's error if it refused one (then it also asks the
    /// executor to undo the command: `undoSubscriptions`).
    func holdConfirmations(_ kind: SubscriptionKind, _ names: [ByteBuffer], for client: Client) -> ReplySlot?
    /// A local subscription to `name` was dropped; `last` when no local client holds it any more.
    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool)
    /// Sends a local PUBLISH (`sharded`: SPUBLISH) upstream; the reply is queued for `client`
    /// when Redis answers.
    func publish(channel: ByteBuffer, payload: ByteBuffer, sharded: Bool, from client: Client)
    /// Answers a PUBSUB question for the whole fleet; false: answer from the local registry.
    func answer(_ query: PubSubQuery, for client: Client) -> Bool
}
