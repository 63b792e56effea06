#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// Pauses accepting on a listening socket while accept(2) fails for want of file descriptors
/// (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM). The connection stays in the backlog and
/// the socket stays readable, so without a pause the event loop retries at once, forever, at
/// 100 % of a core. After such a failure reading is switched off (`autoRead`, which takes the
/// socket out of epoll) and on again `pause` later. NIO's `AcceptBackoffHandler` only delays the
/// next `read()`, which does not help here: a failed accept leaves NIO's read pending, so no
/// `read()` is asked and the socket stays registered (measured: 20 000 failed accepts a
/// second). Each episode is logged once — a warning when it starts, a notice with its length
/// and the refused attempts when an accept works again — and every refused attempt is counted
/// (README, "Health and metrics": `pubsub_relay_accept_errors_total`).
final class AcceptBackoff: ChannelInboundHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel

    enum Reason: String {
        /// EMFILE / ENFILE: the process's RLIMIT_NOFILE or the system's file table.
        case fdLimit = "fd_limit"
        /// ENOBUFS / ENOMEM.
        case noMemory = "no_memory"
    }

    /// Between accept attempts while refused: short enough that clients waiting in the backlog
    /// are taken promptly once descriptors are free, long enough to cost nothing meanwhile.
    static let pause = TimeAmount.milliseconds(100)

    private let listenerName: String
    private let logger: Logger
    private let count: (Reason) -> Void
    /// Switches reading back on; set while paused.
    private var resume: Scheduled<Void>?
    /// The current episode: when it started and the attempts refused since.
    private var episode: (since: NIODeadline, refused: Int, reason: Reason)?

    /// `listenerName` names the socket in the log (`RELAY_SOCKET`, `RELAY_METRICS_ADDR`);
    /// `count` is called, on the channel's loop, once per refused accept.
    init(listenerName: String, logger: Logger, count: @escaping (Reason) -> Void = { _ in }) {
        self.listenerName = listenerName
        self.logger = logger
        self.count = count
    }

    /// The accept failures worth a pause; any other error goes down the pipeline.
    static func reason(_ error: Error) -> (Reason, errno: Int32)? {
        guard let io = error as? IOError else { return nil }
        switch io.errnoCode {
        case EMFILE, ENFILE: return (.fdLimit, io.errnoCode)
        case ENOBUFS, ENOMEM: return (.noMemory, io.errnoCode)
        default: return nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let (reason, code) = Self.reason(error) else {
            context.fireErrorCaught(error)
            return
        }
        count(reason)
        if var current = episode {
            current.refused += 1
            episode = current
        } else {
            episode = (.now(), 1, reason)
            var limit = rlimit()
            let nofile = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 ? "\(limit.rlim_cur)" : "unknown"
            let what = reason == .fdLimit ? "out of file descriptors" : "out of kernel memory"
            logger.warning(
                "cannot accept connections: \(what); pausing accepts until some close (raise LimitNOFILE= if this recurs)",
                metadata: ["socket": "\(listenerName)", "error": "\(String(cString: strerror(code)))",
                           "open_file_limit": "\(nofile)", "retry_every_ms": "\(Self.pause.nanoseconds / 1_000_000)"])
        }
        guard resume == nil, let options = context.channel.syncOptions else { return }
        try? options.setOption(.autoRead, value: false)
        let channel = context.channel
        resume = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.pause) {
            self.resume = nil
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let ended = episode {
            episode = nil
            let seconds = Double((NIODeadline.now() - ended.since).nanoseconds) / 1e9
            logger.notice(
                "accepting connections again",
                metadata: ["socket": "\(listenerName)", "reason": "\(ended.reason.rawValue)",
                           "refused_accepts": "\(ended.refused)", "paused_seconds": "\(format3(seconds))"])
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }
}

/// Seconds with three decimals, for log fields.
private func format3(_ seconds: Double) -> String {
    let ms = Int((seconds * 1000).rounded())
    return "\(ms / 1000).\(String(1000 + ms % 1000).dropFirst())"
}

@available(*, unavailable)
extension AcceptBackoff: Sendable {}
