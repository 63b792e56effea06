import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The I/O of `ClusterDiscovery` (README, "Redis Cluster"): the one control connection that asks
/// a node for the slot map, a 100 ms tick, and the maps it hands to its owner.
///
/// Confined to the relay's event loop, like the backplane that owns it.
final class ClusterWatcher: RedisConnectionDelegate {
    private var discovery: ClusterDiscovery
    private let eventLoop: EventLoop
    private let logger: Logger
    private let timeout: TimeAmount
    private let tls: () -> RedisTLS?
    private let onTopology: (ClusterTopology, ClusterDiscovery.Endpoint) -> Void
    private var connection: (endpoint: ClusterDiscovery.Endpoint, handler: RedisConnection)?
    private var stopped = false

    /// A map of a few hundred nodes is well within these; anything larger is not a cluster talking.
    private static let replyLimits = UpstreamReplyScanner.Limits(maxElements: 1 << 20, maxBulkLength: 64 << 10)
    private static let tick = TimeAmount.milliseconds(100)

    init(discovery: ClusterDiscovery, timeoutMilliseconds: Int, eventLoop: EventLoop, logger: Logger,
         tls: @escaping () -> RedisTLS?, onTopology: @escaping (ClusterTopology, ClusterDiscovery.Endpoint) -> Void) {
        self.discovery = discovery
        self.eventLoop = eventLoop
        self.logger = logger
        self.timeout = .milliseconds(Int64(timeoutMilliseconds))
        self.tls = tls
        self.onTopology = onTopology
    }

    /// The node the control connection is open to.
    var controlNode: ClusterDiscovery.Endpoint? { discovery.controlNode }
    var answers: Int { discovery.answers }
    var lastError: String { discovery.lastError }

    func start() {
        run(discovery.handle(.start(now: Self.now())))
        scheduleTick()
    }

    func stop() {
        stopped = true
        run(discovery.handle(.stop))
    }

    /// Something suggests the map changed: ask again (rate-limited by the discovery).
    func refresh(_ reason: String) {
        guard !stopped else { return }
        run(discovery.handle(.refresh(reason: reason, now: Self.now())))
    }

    private func scheduleTick() {
        eventLoop.assumeIsolated().scheduleTask(in: Self.tick) { [self] in
            guard !stopped else { return }
            run(discovery.handle(.tick(now: Self.now())))
            scheduleTick()
        }
    }

    private func run(_ actions: [ClusterDiscovery.Action]) {
        for action in actions {
            switch action {
            case .connect(let endpoint):
                connect(endpoint)
            case .close:
                connection?.handler.close()
                connection = nil
            case .send(let args):
                connection?.handler.send(args)
            case .topology(let topology, let endpoint):
                onTopology(topology, endpoint)
            case .log(let level, let text):
                switch level {
                case .info: logger.info("\(text)")
                case .notice: logger.notice("\(text)")
                case .warning: logger.warning("\(text)")
                }
            }
        }
    }

    private func connect(_ endpoint: ClusterDiscovery.Endpoint) {
        guard !stopped else { return }
        connection?.handler.close()
        let handler = RedisConnection(replyLimits: Self.replyLimits)
        handler.delegate = self
        connection = (endpoint, handler)
        RedisConnection.open(handler, host: endpoint.host, port: endpoint.port, tls: tls(),
                             plaintextHint: RedisTLS.plaintextClusterCloseHint, timeout: timeout, eventLoop: eventLoop)
            .assumeIsolated().whenComplete { [self] result in
                guard connection?.handler === handler else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success:
                    if !handler.isFailed { run(discovery.handle(.connected(now: Self.now()))) }
                case .failure(let error):
                    connection = nil
                    run(discovery.handle(.failed(reason: "cannot connect: \(RedisConnection.describe(error))", now: Self.now())))
                }
            }
    }

    // MARK: RedisConnectionDelegate

    func redisConnection(_ connection: RedisConnection, received reply: RedisReply) {
        guard self.connection?.handler === connection else { return }
        run(discovery.handle(.reply(UpstreamReply(reply, onSubscriber: false), now: Self.now())))
    }

    func redisConnection(_ connection: RedisConnection, failed reason: String) {
        guard self.connection?.handler === connection else { return }
        self.connection = nil
        run(discovery.handle(.failed(reason: reason, now: Self.now())))
    }

    private static func now() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds
    }
}

@available(*, unavailable)
extension ClusterWatcher: Sendable {}
