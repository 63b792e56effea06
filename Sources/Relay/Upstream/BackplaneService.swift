import NIOCore
import RelayCore

/// What the rest of the relay — the server's lifecycle, INFO, `/health`, `/metrics`, the
/// Postgres bridge — needs of the Redis backplane, whatever the shape behind `REDIS_URL`: one
/// server or Sentinel (`UpstreamRedisLink`), or a Redis Cluster (`ClusterBackplane`).
protocol BackplaneService: AnyObject {
    var relayID: String { get }
    /// The namespace of the fleet's keys (the Postgres lease among them): `RELAY_NAMESPACE`, as
    /// one hash tag on a Redis Cluster so that they all live on the home master.
    var keyNamespace: String { get }
    var isForwarding: Bool { get }
    /// Whether commands can be sent (PUBLISH, the lease), whatever the subscriber's state.
    var isPublisherReady: Bool { get }
    /// Redis answers on at least one connection.
    var isReachable: Bool { get }
    var status: RedisLinkStatus { get }
    var onStateChange: (() -> Void)? { get set }
    var onTick: (() -> Void)? { get set }
    func start()
    func stop()
    /// A command for another part of the relay (the lease); nil reply: not sent or not answered.
    func request(_ args: [ByteBuffer], _ completion: @escaping (UpstreamReply?) -> Void)
    /// The Postgres bridge's notifications, in order, as app PUBLISHes would travel; `completion`
    /// is told how many were not confirmed by Redis.
    func publishNotifications(_ batch: [(channel: ByteBuffer, payload: ByteBuffer)], _ completion: @escaping (_ lost: Int) -> Void)
}
