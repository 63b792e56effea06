#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The relay in local mode: one event loop serving the Unix socket, the hub behind it.
public final class RelayServer: Sendable {
    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let group: MultiThreadedEventLoopGroup
    private let state: NIOLoopBound<RelayState>
    private let serverChannel: Channel
    private let listener: UnixSocketListener
    private let logger: Logger
    /// How long SIGTERM waits for clients to take their pending output before closing them.
    public static let shutdownFlushTimeout = TimeAmount.seconds(5)

    public var eventLoop: EventLoop { group.next() }

    /// Binds the socket and starts serving; throws `StartupError` with a one-line reason.
    public static func start(config: RelayConfig, logger: Logger) throws -> RelayServer {
        raiseOpenFileLimit(logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        var listener = UnixSocketListener(path: config.socketPath, mode: config.socketMode, group: config.socketGroup)
        do {
            let bindPath: String
            do {
                bindPath = try listener.prepare()
            } catch let e as UnixSocketListener.StartupError {
                throw StartupError(description: e.description)
            }
            let state = try loop.submit {
                NIOLoopBound(RelayState(config: config, socketPath: config.socketPath, eventLoop: loop, logger: logger), eventLoop: loop)
            }.wait()
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.maxMessagesPerRead, value: 4)
                // Each channel keeps its receive buffer for reuse: start small so that an idle
                // subscriber costs little; the allocator grows it for clients that send bursts.
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let client = state.value.makeClient()
                        try channel.pipeline.syncOperations.addHandler(client)
                    }
                }
            let channel: Channel
            do {
                channel = try listener.withBindUmask {
                    try bootstrap.bind(unixDomainSocketPath: bindPath).wait()
                }
            } catch {
                listener.abandon()
                throw StartupError(description: "RELAY_SOCKET: cannot listen on \(config.socketPath): \(error)")
            }
            do {
                try listener.publish(boundPath: bindPath)
            } catch let e as UnixSocketListener.StartupError {
                try? channel.close().wait()
                throw StartupError(description: e.description)
            }
            try loop.submit { state.value.isServing = true }.wait()
            logger.info("serving", metadata: [
                "socket": "\(config.socketPath)", "mode": "\(String(config.socketMode, radix: 8))",
                "max_message_bytes": "\(config.maxMessageBytes)", "backplane": "none (local mode)",
            ])
            return RelayServer(group: group, state: state, serverChannel: channel, listener: listener, logger: logger)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    private init(group: MultiThreadedEventLoopGroup, state: NIOLoopBound<RelayState>, serverChannel: Channel,
                 listener: UnixSocketListener, logger: Logger) {
        self.group = group
        self.state = state
        self.serverChannel = serverChannel
        self.listener = listener
        self.logger = logger
    }

    /// SIGTERM/SIGINT: stop accepting, remove the socket file, give every client its pending
    /// output (bounded by `shutdownFlushTimeout`), close them, stop the loop.
    public func shutdown() {
        let loop = serverChannel.eventLoop
        let state = self.state
        let logger = self.logger
        do {
            try serverChannel.close().wait()
        } catch {
            logger.warning("closing the listening socket failed", metadata: ["error": "\(error)"])
        }
        listener.remove()
        let drained: EventLoopFuture<Void> = loop.flatSubmit {
            let relay = state.value
            relay.isServing = false
            let clients = Array(relay.allClients)
            logger.info("shutting down", metadata: ["clients": "\(clients.count)"])
            let closes = clients.compactMap { client -> EventLoopFuture<Void>? in
                client.closeAfterFlush()
                return client.closeFuture
            }
            return EventLoopFuture.andAllComplete(closes, on: loop)
        }
        let timeout = loop.scheduleTask(in: Self.shutdownFlushTimeout) {
            let remaining = Array(state.value.allClients)
            if !remaining.isEmpty {
                logger.warning("clients did not take their output in time; closing them", metadata: ["clients": "\(remaining.count)"])
            }
            for client in remaining { client.forceClose() }
        }
        try? drained.wait()
        timeout.cancel()
        try? group.syncShutdownGracefully()
        logger.info("stopped")
    }

    private static func raiseOpenFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let wanted = limit.rlim_max
        limit.rlim_cur = wanted
        if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["wanted": "\(wanted)"])
        }
    }
}
