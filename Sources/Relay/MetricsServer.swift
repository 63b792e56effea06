#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `/metrics` (Prometheus text) and `/health` (JSON; 503 once the relay stops serving) on
/// `RELAY_METRICS_ADDR`, served from its own thread so a scrape never waits behind fan-out.
final class MetricsServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    /// The Unix socket file we created, removed on stop; nil for TCP.
    private let listener: UnixSocketListener?

    /// `snapshot` must complete on any loop with the relay's current state.
    static func start(address: String, metrics: RelayMetrics, logger: Logger,
                      snapshot: @escaping @Sendable () -> EventLoopFuture<RelaySnapshot>) throws -> MetricsServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Logged, not counted: the counters live on the relay's loop, and at the open-file
            // limit the relay socket reports the episode too.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoff(listenerName: "RELAY_METRICS_ADDR", logger: logger))
                }
            }
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(MetricsHTTPHandler(metrics: metrics, snapshot: snapshot))
                }
            }
        do {
            let channel: Channel
            var listener: UnixSocketListener?
            if address.hasPrefix("/") {
                // The same care as the relay socket: a live endpoint is never taken over.
                var unix = UnixSocketListener(path: address, mode: 0o660, group: nil, variable: "RELAY_METRICS_ADDR")
                let bindPath = try unix.prepare()
                do {
                    channel = try unix.withBindUmask { try bootstrap.bind(unixDomainSocketPath: bindPath).wait() }
                } catch {
                    unix.abandon()
                    throw error
                }
                try unix.publish(boundPath: bindPath)
                listener = unix
            } else {
                let colon = address.lastIndex(of: ":")!
                var host = String(address[..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                let port = Int(address[address.index(after: colon)...])!
                channel = try bootstrap.bind(host: host, port: port).wait()
                if !["127.0.0.1", "::1", "localhost"].contains(host) && !host.hasPrefix("127.") {
                    logger.warning("RELAY_METRICS_ADDR is not a loopback address: /metrics and /health are reachable from other hosts",
                                   metadata: ["addr": "\(address)"])
                }
            }
            logger.info("metrics and health endpoint listening", metadata: ["addr": "\(address)"])
            return MetricsServer(group: group, channel: channel, listener: listener)
        } catch let error as UnixSocketListener.StartupError {
            try? group.syncShutdownGracefully()
            throw RelayServer.StartupError(description: error.description)
        } catch {
            try? group.syncShutdownGracefully()
            throw RelayServer.StartupError(description: "RELAY_METRICS_ADDR: cannot listen on \(address): \(describe(error))")
        }
    }

    private init(group: MultiThreadedEventLoopGroup, channel: Channel, listener: UnixSocketListener?) {
        self.group = group
        self.channel = channel
        self.listener = listener
    }

    func stop() {
        try? channel.close().wait()
        listener?.remove()
        try? group.syncShutdownGracefully()
    }
}

/// One HTTP/1.1 request at a time; each response closes the connection (scrapers reconnect).
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: RelayMetrics
    private let snapshot: @Sendable () -> EventLoopFuture<RelaySnapshot>
    private var request: HTTPRequestHead?

    init(metrics: RelayMetrics, snapshot: @escaping @Sendable () -> EventLoopFuture<RelaySnapshot>) {
        self.metrics = metrics
        self.snapshot = snapshot
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            send(.methodNotAllowed, "text/plain", Array("only GET\n".utf8), head, context)
            return
        }
        switch path {
        case "/metrics", "/health":
            let metrics = self.metrics
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            snapshot().hop(to: context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                switch result {
                case .success(let s) where path == "/metrics":
                    handler.send(.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.render(s), head, context)
                case .success(let s):
                    handler.send(s.isServing ? .ok : .serviceUnavailable, "application/json",
                                 Array((s.healthJSON + "\n").utf8), head, context)
                case .failure:
                    handler.send(.serviceUnavailable, "application/json",
                                 Array("{\"status\":\"stopped\"}\n".utf8), head, context)
                }
            }
        default:
            send(.notFound, "text/plain", Array("not found; try /metrics or /health\n".utf8), head, context)
        }
    }

    private func send(_ status: HTTPResponseStatus, _ contentType: String, _ body: [UInt8],
                      _ request: HTTPRequestHead, _ context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// A system error as a person reads it: `Address already in use`, not NIO's call-site dump.
func describe(_ error: Error) -> String {
    if let io = error as? IOError {
        return String(cString: strerror(io.errnoCode))
    }
    return "\(error)"
}
