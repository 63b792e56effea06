#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The I/O of `SentinelDiscovery` (README, "Redis Sentinel"): opens the connections to the
/// sentinels it asks for (RESP2, replies parsed by hiredis through `RedisConnection`), feeds it
/// their replies and a 100 ms tick, and tells its owner where the master is.
///
/// Confined to the relay's event loop, like the backplane that owns it.
final class SentinelWatcher: RedisConnectionDelegate {
    private var discovery: SentinelDiscovery
    private let eventLoop: EventLoop
    private let logger: Logger
    private let timeout: TimeAmount
    private let onMaster: (RedisURL.Address) -> Void
    /// `rediss-sentinel://`: the TLS of the next sentinel connection, read at each connect so
    /// that a reload's files apply from then on (README, "Redis over TLS"); nil for plain TCP.
    private let tls: () -> RedisTLS?
    /// The one open sentinel connection and the index of its sentinel.
    private var connection: (index: Int, handler: RedisConnection)?
    private var stopped = false

    /// Sentinels answer in a few short lines; anything much larger is not a sentinel talking.
    private static let replyLimits = UpstreamReplyScanner.Limits(maxElements: 1024, maxBulkLength: 64 << 10)
    private static let tick = TimeAmount.milliseconds(100)

    init(sentinel: RedisURL.Sentinel, timeoutMilliseconds: Int, backoffCapMilliseconds: Int,
         eventLoop: EventLoop, logger: Logger, tls: @escaping () -> RedisTLS? = { nil },
         onMaster: @escaping (RedisURL.Address) -> Void) {
        self.discovery = SentinelDiscovery(
            sentinel: sentinel, timeoutMilliseconds: timeoutMilliseconds,
            pingIntervalMilliseconds: min(1000, timeoutMilliseconds / 2),
            backoff: ReconnectBackoff(capMilliseconds: backoffCapMilliseconds), jitter: { Double.random(in: 0..<1) })
        self.eventLoop = eventLoop
        self.logger = logger
        self.timeout = .milliseconds(Int64(timeoutMilliseconds))
        self.onMaster = onMaster
        self.tls = tls
    }

    /// The master as the sentinels last gave it.
    var master: RedisURL.Sentinel.Endpoint? { discovery.master }
    /// Failovers followed since start.
    var switches: Int { discovery.switches }
    /// The sentinel whose `+switch-master` is followed, if any.
    var subscribedSentinel: RedisURL.Sentinel.Endpoint? { discovery.subscribedSentinel }

    func start() {
        run(discovery.handle(.start(now: Self.now())))
        scheduleTick()
    }

    func stop() {
        stopped = true
        run(discovery.handle(.stop))
    }

    /// The node at `master` is not a master (ROLE, `-READONLY`): the sentinels are asked again.
    func masterRefused(_ reason: String) {
        run(discovery.handle(.masterRefused(reason: reason, now: Self.now())))
    }

    private func scheduleTick() {
        eventLoop.assumeIsolated().scheduleTask(in: Self.tick) { [self] in
            guard !stopped else { return }
            run(discovery.handle(.tick(now: Self.now())))
            scheduleTick()
        }
    }

    private func run(_ actions: [SentinelDiscovery.Action]) {
        for action in actions {
            switch action {
            case .connectSentinel(let i):
                connect(i)
            case .closeSentinel(let i):
                guard let open = connection, open.index == i else { continue }
                connection = nil
                open.handler.close()
            case .send(let i, let args):
                guard let open = connection, open.index == i else { continue }
                open.handler.send(args.map { ByteBuffer(string: $0) })
            case .useMaster(let host, let port):
                onMaster(.tcp(host: host, port: port))
            case .log(let level, let text):
                switch level {
                case .info: logger.info("\(text)")
                case .notice: logger.notice("\(text)")
                case .warning: logger.warning("\(text)")
                }
            }
        }
    }

    private func connect(_ i: Int) {
        guard !stopped else { return }
        connection?.handler.close()
        let endpoint = discovery.sentinels[i]
        let handler = RedisConnection(replyLimits: Self.replyLimits)
        handler.delegate = self
        connection = (i, handler)
        // A failed handshake fails the connection with RedisTLS's reason (`TLS handshake with
        // host:port failed: …`), which the discovery logs once, naming the sentinel, before it
        // goes on with the next one (README, "Redis Sentinel").
        RedisConnection.open(handler, host: endpoint.host, port: endpoint.port, tls: tls(),
                             plaintextHint: RedisTLS.plaintextSentinelCloseHint, timeout: timeout, eventLoop: eventLoop)
            .assumeIsolated().whenComplete { [self] result in
                guard connection?.handler === handler else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success:
                    if !handler.isFailed { run(discovery.handle(.sentinelConnected(i, now: Self.now()))) }
                case .failure(let error):
                    connection = nil
                    run(discovery.handle(.sentinelFailed(i, reason: "cannot connect: \(RedisConnection.describe(error))", now: Self.now())))
                }
            }
    }

    // MARK: RedisConnectionDelegate

    func redisConnection(_ connection: RedisConnection, received reply: RedisReply) {
        guard let open = self.connection, open.handler === connection else { return }
        run(discovery.handle(.reply(open.index, Self.reply(reply), now: Self.now())))
    }

    func redisConnection(_ connection: RedisConnection, failed reason: String) {
        guard let open = self.connection, open.handler === connection else { return }
        self.connection = nil
        run(discovery.handle(.sentinelFailed(open.index, reason: reason, now: Self.now())))
    }

    // MARK: Helpers

    /// A hiredis reply as the state machine's value (sentinel replies nest at most two deep).
    static func reply(_ r: RedisReply, depth: Int = 0) -> SentinelDiscovery.Reply {
        if r.isArray {
            guard depth < 4 else { return .null }
            return .array((0..<min(r.count, 64)).map { reply(r[$0], depth: depth + 1) })
        }
        if r.isError { return .error(r.text) }
        if r.isStatus { return .status(r.text) }
        if r.isString { return .bulk(r.text) }
        if r.isInteger { return .integer(r.integer) }
        return .null
    }

    private static func now() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds
    }
}

@available(*, unavailable)
extension SentinelWatcher: Sendable {}
