import Logging
import NIOCore
import RelayCore

/// One local app connection on the relay socket: parses its requests, runs them, and queues both
/// its replies and the messages delivered to it. Output is coalesced: small frames are gathered
/// into one buffer, large frames are passed by reference, and everything is flushed once per
/// event-loop tick by the `OutputFlusher` — one write syscall per client per batch, not per message.
final class ClientConnection: ChannelInboundHandler, RelayClient {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Frames at most this big are copied into the client's batch buffer (a memcpy is cheaper than
    /// a queued write); bigger ones are written as the shared, once-encoded buffer.
    static let copyThreshold = 4096

    var session: ClientSession
    var respVersion: RESPVersion { session.resp }

    private let state: RelayState
    /// The state's flusher, held directly (the state owns it and outlives every client).
    private unowned(unsafe) let flusher: OutputFlusher
    /// Set between handlerAdded and handlerRemoved; nil once the connection is gone.
    private var context: ChannelHandlerContext?
    private var parser: RequestParser
    /// Unparsed bytes of a request that has not fully arrived.
    private var query: ByteBuffer?
    /// Reusable scratch buffer for one command's reply.
    private var reply: ByteBuffer
    /// Small frames and replies gathered since the last flush.
    private var pending: ByteBuffer?
    /// Capacity for the next `pending` buffer: the size of the last batch.
    private var batchSizeHint = 512
    /// Whether anything was written to the channel since the last flush.
    private var wroteSinceFlush = false
    private var loggedUnknownCommand = false
    /// Set while the client sits in the flusher's list.
    var isQueuedForFlush = false
    /// No more input is read and nothing more is queued (QUIT, protocol error, limits).
    private(set) var isClosing = false
    /// Output held behind replies that come from upstream (PUBLISH, confirmations).
    private var deferred = DeferredReplies()
    /// Input is not processed while too many upstream replies are outstanding.
    private var pausedForUpstream = false
    /// A read's first PUBLISH runs only after the loop has handled every other read of the same
    /// tick (`yieldPublish`); set by each read, the PUBLISH waiting in `yieldedRequest`.
    private var mayYieldPublish = false
    private var yieldedRequest: [ByteBuffer]?
    /// The client closed its side while a PUBLISH waited: closed once that has run.
    private var closeAfterYield = false
    /// QUIT or a protocol error arrived while replies were outstanding: close once they are in.
    private var closeWhenDrained = false
    /// Upstream replies outstanding past which the client's input is paused (backpressure for
    /// a pipelining publisher when Redis is slow).
    static let maxOutstandingUpstreamReplies = 4096
    /// When the output buffer first went over the soft limit (Redis's `obuf_soft_limit_reached_time`).
    private var softLimitSince: NIODeadline?
    let connectedAt = NIODeadline.now()
    private(set) var lastInteraction = NIODeadline.now()

    /// `ip:port` of the client and of the relay's end on the TCP listener; nil on the Unix socket.
    let peer: String?
    let local: String?

    init(id: Int, state: RelayState, peer: String? = nil, local: String? = nil) {
        self.session = ClientSession(id: id, authenticated: state.executor.newClientsAuthenticated)
        self.peer = peer
        self.local = local
        self.state = state
        self.flusher = state.flusher
        self.parser = RequestParser(limits: state.parserLimits)
        self.reply = ByteBufferAllocator().buffer(capacity: 0)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The context holds this handler: dropping it here breaks the cycle (a closed connection
    /// leaked ~650 bytes before, measured with 20 000 connects).
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        state.clientConnected(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosing = true
        pending = nil
        query = nil
        deferred.removeAll()
        state.clientDisconnected(self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !isClosing else { return }
        lastInteraction = .now()
        var input = unwrapInboundIn(data)
        if yieldedRequest != nil {
            // Waiting for the rest of the tick: kept, parsed once the PUBLISH has run.
            if query == nil { query = input } else { query!.writeBuffer(&input) }
            return
        }
        mayYieldPublish = true
        if query != nil {
            query!.writeBuffer(&input)
            var buffered = query!
            query = nil
            process(&buffered)
            keepUnparsed(buffered)
        } else {
            process(&input)
            keepUnparsed(input)
        }
    }

    /// The client closed its side (e.g. `printf 'PING\r\n' | socat - UNIX:…`): answer what it sent,
    /// then close, as Redis does.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            if yieldedRequest != nil {
                closeAfterYield = true
            } else if !isClosing {
                closeAfterFlush()
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        state.logger.debug("client connection error", metadata: ["client": "\(session.id)", "error": "\(error)"])
        context.close(promise: nil)
    }

    /// A reload changed the request limits.
    func updateLimits(_ limits: RequestParser.Limits) {
        parser.limits = limits
    }

    // MARK: Requests

    private func process(_ buffer: inout ByteBuffer) {
        while !isClosing {
            if deferred.pendingSlots >= Self.maxOutstandingUpstreamReplies {
                pauseForUpstream()
                return
            }
            let request: [ByteBuffer]?
            // Redis's limits for a client without the password (AUTH may have run just before).
            parser.unauthenticated = !session.authenticated
            do {
                request = try parser.next(from: &buffer)
            } catch {
                protocolError(error)
                return
            }
            guard let args = request else { return }
            if args.isEmpty { continue }
            if mayYieldPublish, Self.isPublish(args[0]) {
                yieldPublish(args)
                return
            }
            run(args)
        }
    }

    private func run(_ args: [ByteBuffer]) {
        reply.clear()
        let outcome = state.executor.execute(args, client: self, out: &reply)
        queue(reply)
        switch outcome {
        case .proceed:
            break
        case .closeAfterReply:
            closeAfterFlush()
        case .closeImmediately(let reason):
            state.logger.warning("\(reason)", metadata: ["client": "\(session.id)"])
            close()
        }
    }

    /// The kernel reports the sockets that became readable in one tick in an order of its own, not
    /// in the order clients wrote to them: a SUBSCRIBE on one connection and a PUBLISH that another
    /// sent right after may be read PUBLISH first. A read's first PUBLISH therefore runs after every
    /// other read of the tick (a task runs after the loop's reads), so that a subscription sent
    /// before it is in force, as the app meant (README, "PUBLISH in fleet mode"). Once per read: a
    /// burst of pipelined PUBLISHes costs one task.
    private func yieldPublish(_ args: [ByteBuffer]) {
        mayYieldPublish = false
        guard let context else { return }
        yieldedRequest = args
        context.eventLoop.assumeIsolatedUnsafeUnchecked().execute { [self] in
            guard let args = yieldedRequest else { return }
            yieldedRequest = nil
            guard !isClosing else { return }
            run(args)
            if var buffered = query, !isClosing {
                query = nil
                process(&buffered)
                keepUnparsed(buffered)
            }
            if closeAfterYield {
                closeAfterYield = false
                if !isClosing { closeAfterFlush() }
            }
        }
    }

    /// PUBLISH or SPUBLISH (an SSUBSCRIBE read in the same tick must be in force for either).
    private static func isPublish(_ name: ByteBuffer) -> Bool {
        name.withUnsafeReadableBytes { b in
            let word = b.count == 8 && (b[0] | 0x20) == UInt8(ascii: "s") ? UnsafeRawBufferPointer(rebasing: b.dropFirst()) : b
            return word.count == 7 && zip(word, "publish".utf8).allSatisfy { ($0 | 0x20) == $1 }
        }
    }

    /// The first unknown command of a connection is logged at notice (an app expecting a full
    /// Redis, e.g. a data command sent to the relay); later ones at debug, so a looping client
    /// cannot flood the journal. All are counted.
    func logUnknownCommand(_ name: ByteBuffer) {
        let shown = String(decoding: name.readableBytesView.prefix(64), as: UTF8.self)
        let level: Logger.Level = loggedUnknownCommand ? .debug : .notice
        loggedUnknownCommand = true
        state.logger.log(level: level, "unknown command (the relay carries pub/sub only)",
                         metadata: ["client": "\(session.id)", "command": "\(shown)"])
    }

    // MARK: Upstream replies

    /// A place in this client's output for a reply that upstream will give.
    func reserveReplySlot(echoes: [ByteBuffer] = []) -> ReplySlot {
        deferred.reserve(echoes: echoes)
    }

    /// Upstream filled one of this client's slots: whatever is now in order goes out.
    func upstreamReplied() {
        guard context != nil else { return }
        deferred.drain { buffer in
            buffer.withUnsafeReadableBytes { appendDirect($0) }
        }
        if deferred.isActive { return }
        if closeWhenDrained {
            closeWhenDrained = false
            closeAfterFlush()
        } else if pausedForUpstream {
            resumeAfterUpstream()
        }
    }

    private func pauseForUpstream() {
        guard !pausedForUpstream, let context else { return }
        pausedForUpstream = true
        context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
    }

    private func resumeAfterUpstream() {
        pausedForUpstream = false
        guard let context, !isClosing else { return }
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
        if var buffered = query {
            query = nil
            process(&buffered)
            keepUnparsed(buffered)
        }
    }

    private func keepUnparsed(_ buffer: ByteBuffer) {
        guard !isClosing, buffer.readableBytes > 0 else { return }
        if buffer.readableBytes > state.config.queryBufferLimit {
            state.stats.counts.queryBufferDisconnects += 1
            state.logger.warning(
                "closing client that reached RELAY_QUERY_BUFFER_LIMIT",
                metadata: ["client": "\(session.id)", "buffered": "\(buffer.readableBytes)", "limit": "\(state.config.queryBufferLimit)"])
            close()
            return
        }
        query = buffer
    }

    private func protocolError(_ error: ProtocolError) {
        state.stats.counts.protocolErrors[error.reason, default: 0] += 1
        state.logger.warning(
            "protocol error, closing client",
            metadata: ["client": "\(session.id)", "reason": "\(error.reason)", "detail": "\(error.logDescription)"])
        var bytes = ByteBufferAllocator().buffer(capacity: 64)
        bytes.writeBytes(error.replyBytes)
        queue(bytes)
        closeAfterFlush()
    }

    // MARK: Output

    /// A message frame from the hub: the per-delivery hot path, kept free of allocations and of
    /// reference-count traffic beyond the copy itself.
    @inline(__always)
    func deliver(_ frame: ByteBuffer, bytes: UnsafeRawBufferPointer) {
        guard !isClosing else {
            state.stats.counts.droppedFrames += 1
            return
        }
        if deferred.isActive {
            if !deferred.appendMessage(bytes) { appendDirect(bytes) }
            checkHeldOutput()
        } else if bytes.count <= Self.copyThreshold {
            appendDirect(bytes)
        } else {
            guard let context else { return }
            writePending()
            context.write(wrapOutboundOut(frame), promise: nil)
            wroteSinceFlush = true
            requestFlush()
        }
    }

    /// A reply of this client's own.
    private func queue(_ reply: ByteBuffer) {
        guard reply.readableBytes > 0 else { return }
        reply.withUnsafeReadableBytes { append($0) }
    }

    @inline(__always)
    private func append(_ bytes: UnsafeRawBufferPointer) {
        if deferred.isActive {
            holdBehindUpstream(bytes)
        } else {
            appendDirect(bytes)
        }
    }

    /// Output queued behind a pending upstream reply counts against the hard output limit too.
    private func holdBehindUpstream(_ bytes: UnsafeRawBufferPointer) {
        deferred.append(bytes)
        checkHeldOutput()
    }

    private func checkHeldOutput() {
        let hard = state.config.clientBufferLimit.hardBytes
        if hard > 0 && deferred.heldBytes >= hard && !isClosing {
            state.stats.counts.slowConsumerDisconnects += 1
            state.logger.warning(
                "closing subscriber: output held behind upstream replies passed the hard RELAY_CLIENT_BUFFER_LIMIT",
                metadata: ["client": "\(session.id)", "held": "\(deferred.heldBytes)", "hard": "\(hard)"])
            closeAfterFanOut()
        }
    }

    /// A close that may be asked from inside the hub's fan-out (this runs as a message is
    /// delivered): the client drops everything from now on, and the channel is closed — which
    /// fires `channelInactive` and removes its subscriptions — only once the fan-out is over,
    /// as Redis's `freeClientAsync`.
    private func closeAfterFanOut() {
        isClosing = true
        pending = nil
        deferred.removeAll()
        state.hub.whenNotFanningOut { [self] in context?.close(promise: nil) }
    }

    @inline(__always)
    private func appendDirect(_ bytes: UnsafeRawBufferPointer) {
        if pending == nil {
            pending = Self.allocator.buffer(capacity: max(batchSizeHint, bytes.count))
        }
        pending!.writeBytes(bytes)
        requestFlush()
    }

    @inline(__always)
    private func requestFlush() {
        if !isQueuedForFlush { flusher.schedule(self) }
    }

    private static let allocator = ByteBufferAllocator()

    private func writePending() {
        guard let context, let buffer = pending else { return }
        pending = nil
        // The next batch starts at this one's size: a busy subscriber's buffer is allocated at
        // the right size once per tick instead of growing by reallocation, an idle one stays small.
        batchSizeHint = min(max(512, buffer.readableBytes), 64 * 1024)
        context.write(wrapOutboundOut(buffer), promise: nil)
        wroteSinceFlush = true
    }

    /// Called once per event-loop tick by the flusher.
    func flush() {
        // A client closed earlier in this tick may still sit in the flusher's list.
        // The local reference keeps the context usable even if the flush fails and closes it.
        guard let context else { return }
        writePending()
        guard wroteSinceFlush else { return }
        wroteSinceFlush = false
        context.flush()
        if !context.channel.isWritable { enforceOutputLimit(context.channel) }
        else { softLimitSince = nil }
    }

    /// Redis's `checkClientOutputBufferLimits` for pub/sub clients: past the hard limit, or over
    /// the soft limit for longer than its seconds, the client is disconnected.
    private func enforceOutputLimit(_ channel: Channel) {
        let limit = state.config.clientBufferLimit
        guard let buffered = try? channel.syncOptions?.getOption(.bufferedWritableBytes) else { return }
        var exceeded: String?
        if limit.hardBytes > 0 && buffered >= limit.hardBytes {
            exceeded = "hard"
        } else if limit.softBytes > 0 && buffered >= limit.softBytes {
            let now = NIODeadline.now()
            if let since = softLimitSince {
                if now - since > .seconds(Int64(limit.softSeconds)) { exceeded = "soft" }
            } else {
                softLimitSince = now
            }
        } else {
            softLimitSince = nil
        }
        guard let which = exceeded else { return }
        state.stats.counts.slowConsumerDisconnects += 1
        state.logger.warning(
            "closing slow subscriber: output buffer over RELAY_CLIENT_BUFFER_LIMIT",
            metadata: ["client": "\(session.id)", "limit": "\(which)", "buffered": "\(buffered)",
                       "hard": "\(limit.hardBytes)", "soft": "\(limit.softBytes)", "seconds": "\(limit.softSeconds)"])
        close()
    }

    /// Bytes waiting in the channel (CLIENT INFO's omem).
    var bufferedOutputBytes: Int {
        (try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    var queryBufferBytes: Int { query?.readableBytes ?? 0 }

    private func close() {
        isClosing = true
        pending = nil
        deferred.removeAll()
        context?.close(promise: nil)
    }

    /// Shutdown's last resort for a client that does not read.
    func forceClose() {
        close()
    }

    /// Completes when the connection is closed; nil once it is gone.
    var closeFuture: EventLoopFuture<Void>? { context?.channel.closeFuture }

    /// Writes what is queued, then closes once the kernel has taken it.
    func closeAfterFlush() {
        guard let context else { return }
        isClosing = true
        if deferred.isActive {
            // Replies still due from upstream come first (they are bounded by its deadline).
            closeWhenDrained = true
            return
        }
        writePending()
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer()), promise: done)
        wroteSinceFlush = false
        let channel = context.channel
        done.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ClientConnection: Sendable {}
