#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import RelayCore

/// Told of what happens on one upstream connection; all calls come on the relay's event loop.
protocol RedisConnectionDelegate: AnyObject {
    /// One complete reply, borrowed for the call.
    func redisConnection(_ connection: RedisConnection, received reply: RedisReply)
    /// The connection is unusable (closed by Redis, I/O error, unparseable reply). Called once.
    func redisConnection(_ connection: RedisConnection, failed reason: String)
}

/// One TCP or Unix connection to Redis: commands go out RESP-encoded and coalesced into one write
/// per event-loop tick; replies are checked against the upstream caps (`UpstreamReplyScanner`),
/// parsed by a hiredis reader and handed to the delegate in order. No pub/sub state here: that
/// is the link's.
final class RedisConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    weak var delegate: RedisConnectionDelegate?
    private let reader = HiredisReader()
    private var scanner: UpstreamReplyScanner
    /// Set when Redis sent more than a cap allows (the reason the connection failed).
    private(set) var exceededReplyLimits = false
    /// When bytes last arrived (uptime nanoseconds): the last moment the link was known good.
    private(set) var lastReadNanoseconds: UInt64 = 0
    private var context: ChannelHandlerContext?
    private var outbound: ByteBuffer?
    private var flushScheduled = false
    private(set) var isFailed = false
    /// Added to the reason when Redis closes the connection before sending a byte (set for
    /// plaintext TCP: that is what a TLS port does with a plaintext client).
    var silentCloseHint: String?

    init(replyLimits: UpstreamReplyScanner.Limits) {
        self.scanner = UpstreamReplyScanner(limits: replyLimits)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Queues one command; everything queued in a tick goes out as one write.
    func send(_ args: [ByteBuffer]) {
        guard !isFailed, let context else { return }
        if outbound == nil { outbound = context.channel.allocator.buffer(capacity: 256) }
        RedisCommand.append(args, to: &outbound!)
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolatedUnsafeUnchecked().execute { self.flushOutbound() }
        }
    }

    private func flushOutbound() {
        flushScheduled = false
        guard let context, let buffer = outbound else { return }
        outbound = nil
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !isFailed else { return }
        let input = unwrapInboundIn(data)
        lastReadNanoseconds = NIODeadline.now().uptimeNanoseconds
        do {
            try input.withUnsafeReadableBytes { try scanner.scan($0) }
        } catch {
            exceededReplyLimits = true
            fail("Redis sent more than the relay accepts: \(error)")
            return
        }
        do {
            try input.withUnsafeReadableBytes { try reader.feed($0) }
            while !isFailed, let reply = try reader.next() {
                delegate?.redisConnection(self, received: reply)
                reply.free()
            }
        } catch {
            fail("unreadable reply from Redis: \(error)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("connection closed by Redis" + hintIfSilent)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? RedisTLSError { return fail(tls.description) }
        if let io = error as? IOError { return fail("connection error: \(String(cString: strerror(io.errnoCode)))" + hintIfSilent) }
        fail("connection error: \(error)")
    }

    private var hintIfSilent: String {
        guard lastReadNanoseconds == 0, let silentCloseHint else { return "" }
        return " before it answered; \(silentCloseHint)"
    }

    /// Marks the connection failed, tells the delegate once, and closes it.
    func fail(_ reason: String) {
        guard !isFailed else { return }
        isFailed = true
        outbound = nil
        let delegate = self.delegate
        self.delegate = nil
        context?.close(promise: nil)
        delegate?.redisConnection(self, failed: reason)
    }

    /// Closes without telling the delegate (the link dropped it on purpose).
    func close() {
        isFailed = true
        delegate = nil
        if let context, let buffer = outbound {
            outbound = nil
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        context?.close(promise: nil)
    }
}

@available(*, unavailable)
extension RedisConnection: Sendable {}

extension RedisConnection {
    /// Opens a TCP connection to `host:port` with `handler` at the end of its pipeline (behind the
    /// TLS handlers when `tls` is given): the control connections of Sentinel and Redis Cluster.
    /// `plaintextHint`: what a silent close means without TLS (a plaintext client at a tls-port).
    static func open(_ handler: RedisConnection, host: String, port: Int, tls: RedisTLS?, plaintextHint: String,
                     timeout: TimeAmount, eventLoop: EventLoop) -> EventLoopFuture<Channel> {
        if tls == nil { handler.silentCloseHint = plaintextHint }
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.addHandlers(to: channel.pipeline.syncOperations, host: host, port: port)
                    try channel.pipeline.syncOperations.addHandler(bound.value)
                }
            }
            .connect(host: host, port: port)
    }

    /// A connect error in plain words.
    static func describe(_ error: Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error)
        }
        if let channel = error as? ChannelError, case .connectTimeout(let t) = channel {
            return "connect timed out after \(SecondsText.format(Double(t.nanoseconds) / 1e9)) s"
        }
        return "\(error)"
    }
}
