#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import RelayCore

/// The relay in local mode: one event loop serving the Unix socket, the hub behind it, and the
/// operations around it — sd_notify, socket activation, the metrics/health endpoint, reload.
public final class RelayServer: Sendable {
    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    private let group: MultiThreadedEventLoopGroup
    private let state: NIOLoopBound<RelayState>
    private let serverChannel: Channel
    /// Nil under socket activation: the socket file is systemd's, never ours to remove.
    private let listener: UnixSocketListener?
    private let logger: Logger
    private let notifier: SystemdNotifier?
    private let metricsServer: MetricsServer?
    /// How long SIGTERM waits for clients to take their pending output before closing them.
    public static let shutdownFlushTimeout = TimeAmount.seconds(5)
    /// How long SIGTERM waits for the Postgres listener's thread to close its connection.
    static let postgresStopTimeout = TimeAmount.seconds(5)

    public var eventLoop: EventLoop { group.next() }

    /// Binds (or adopts) the socket, starts serving, then tells systemd it is ready.
    /// Throws `StartupError` with a one-line reason.
    /// `redisTLS`: the files of a `rediss://` URL, read by `RedisTLS.load` (read here when nil).
    public static func start(config: RelayConfig, environment: [String: String], logger: Logger,
                             metrics: RelayMetrics?, redisTLS loadedTLS: RedisTLS? = nil) throws -> RelayServer {
        let redisTLS: RedisTLS?
        do {
            redisTLS = try loadedTLS ?? RedisTLS.load(config)
        } catch {
            throw StartupError(description: "\(error)")
        }
        raiseOpenFileLimit(logger: logger)
        let notifier = SystemdNotifier.fromEnvironment(environment)
        let activated = try activatedSocket(environment, logger: logger)
        let socketPath = activated?.path ?? config.socketPath
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        do {
            let state = try loop.submit {
                NIOLoopBound(RelayState(config: config, socketPath: socketPath, eventLoop: loop, logger: logger, redisTLS: redisTLS),
                             eventLoop: loop)
            }.wait()
            if let metrics {
                let histogram = metrics.deliveryLatency
                try loop.submit {
                    state.value.flusher.recordDeliveryLatency = { histogram.recordNanoseconds($0.nanoseconds) }
                }.wait()
            }
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                // Bound and activated sockets alike: at the open-file limit, pause accepting
                // rather than spin on the readable listening socket.
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let backoff = AcceptBackoff(listenerName: "RELAY_SOCKET", logger: logger) { reason in
                            switch reason {
                            case .fdLimit: state.value.stats.counts.acceptErrorsFDLimit += 1
                            case .noMemory: state.value.stats.counts.acceptErrorsNoMemory += 1
                            }
                        }
                        try channel.pipeline.syncOperations.addHandler(backoff)
                    }
                }
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
            var listener: UnixSocketListener?
            if let activated {
                do {
                    channel = try bootstrap.withBoundSocket(activated.fd).wait()
                } catch {
                    throw StartupError(description: "LISTEN_FDS: cannot serve the socket passed by systemd: \(error)")
                }
            } else {
                (channel, listener) = try bindOwnSocket(config: config, bootstrap: bootstrap)
            }

            var metricsServer: MetricsServer?
            if let metrics, let address = config.metricsAddress {
                do {
                    metricsServer = try MetricsServer.start(address: address, metrics: metrics, logger: logger) {
                        loop.submit { state.value.snapshot() }
                    }
                } catch {
                    try? channel.close().wait()
                    listener?.remove()
                    throw error
                }
            }

            try loop.submit {
                loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in state.value.idleTick() }
                state.value.isServing = true
                state.value.backplane?.start()
                state.value.postgres?.start()
            }.wait()
            logger.info("serving", metadata: [
                "socket": "\(socketPath)", "activated": "\(activated != nil)",
                "mode": "\(activated == nil ? String(config.socketMode, radix: 8) : "from systemd")",
                "max_message_bytes": "\(config.maxMessageBytes)",
                "backplane": "\(config.redisURL.map { $0.redacted } ?? "none (local mode)")",
            ])
            if let redisTLS {
                logger.info("redis backplane over TLS: \(redisTLS.summary)")
            }
            let server = RelayServer(group: group, state: state, serverChannel: channel, listener: listener,
                                     logger: logger, notifier: notifier, metricsServer: metricsServer)
            server.announceReady()
            return server
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    private init(group: MultiThreadedEventLoopGroup, state: NIOLoopBound<RelayState>, serverChannel: Channel,
                 listener: UnixSocketListener?, logger: Logger, notifier: SystemdNotifier?, metricsServer: MetricsServer?) {
        self.group = group
        self.state = state
        self.serverChannel = serverChannel
        self.listener = listener
        self.logger = logger
        self.notifier = notifier
        self.metricsServer = metricsServer
    }

    // MARK: systemd

    /// READY=1 once the socket accepts; then STATUS= on change and WATCHDOG=1 every
    /// WATCHDOG_USEC/2, both from the client event loop, so a wedged loop stops the pings.
    private func announceReady() {
        guard let notifier else { return }
        let loop = serverChannel.eventLoop
        let state = self.state
        let status = (try? loop.submit { state.value.statusLine }.wait()) ?? "serving"
        notifier.send("READY=1", "MAINPID=\(getpid())", "STATUS=\(status)")
        let interval = notifier.watchdogInterval
        loop.execute {
            let lastStatus = NIOLoopBoundBox(status, eventLoop: loop)
            loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                let line = state.value.statusLine
                if line != lastStatus.value {
                    lastStatus.value = line
                    notifier.send("STATUS=\(line)")
                }
            }
            if let interval {
                loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                    notifier.send("WATCHDOG=1")
                }
            }
        }
        if let interval {
            logger.info("systemd watchdog on", metadata: ["ping_every": "\(interval.nanoseconds / 1_000_000) ms"])
        }
    }

    /// SIGHUP: applies the reloadable settings of `new` (log level, limits, the Redis TLS files
    /// in `redisTLS`, read again by the caller) and says what needs a restart. `RELOADING=1` …
    /// `READY=1` around it.
    public func reload(_ new: RelayConfig, redisTLS: RedisTLS? = nil) {
        notifier?.send("RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
        let logger = self.logger
        let state = self.state
        let status = try? serverChannel.eventLoop.submit { () -> String in
            let relay = state.value
            let plan = relay.config.reloadPlan(to: new)
            // New upstream connections take the files as they are now (the link reads
            // `redisTLS` at each connect); established connections keep their session. Not when
            // REDIS_URL changed: the running link keeps the URL, and the TLS files, it started with.
            let tlsReloaded = new.redisURL == relay.config.redisURL && redisTLS != nil
            if tlsReloaded { relay.redisTLS = redisTLS }
            relay.apply(relay.config.applyingReloadable(from: new))
            RelayLogHandler.setLevel(Logger.Level(rawValue: new.logLevel) ?? .info)
            if let redisTLS, tlsReloaded {
                logger.notice("reload: Redis TLS files read again; new upstream connections use them: \(redisTLS.summary)")
            }
            if plan.applied.isEmpty && !tlsReloaded {
                logger.notice("reload: no reloadable setting changed")
            }
            for change in plan.applied {
                logger.notice("reload: applied \(change)")
            }
            for name in plan.needsRestart {
                logger.warning("reload: \(name) changed; it takes effect only after a restart")
            }
            return relay.statusLine
        }.wait()
        notifier?.send("READY=1", "STATUS=\(status ?? "serving")")
    }

    /// A reload whose configuration was invalid: nothing changed, systemd is told we are ready.
    public func reloadFailed(_ reason: String) {
        notifier?.send("RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
        logger.error("reload failed, configuration unchanged: \(reason)")
        notifier?.send("READY=1", "STATUS=serving; last reload failed: \(reason)")
    }

    // MARK: Shutdown

    /// SIGTERM/SIGINT: STOPPING=1, stop accepting, remove our socket file, /health turns 503,
    /// give every client its pending output (bounded by `shutdownFlushTimeout`), close them,
    /// stop the loops.
    public func shutdown() {
        notifier?.send("STOPPING=1", "STATUS=stopping")
        let loop = serverChannel.eventLoop
        let state = self.state
        let logger = self.logger
        try? loop.submit { state.value.isServing = false }.wait()
        do {
            try serverChannel.close().wait()
        } catch {
            logger.warning("closing the listening socket failed", metadata: ["error": "\(error)"])
        }
        listener?.remove()
        let drained: EventLoopFuture<Void> = loop.flatSubmit {
            let relay = state.value
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
        // The Postgres listener's thread ends off the loop, which meanwhile sends the lease
        // release; the backplane is closed after that (bounded: a thread stuck in libpq does
        // not hold the exit).
        let postgresStopped: EventLoopFuture<Void> = loop.flatSubmit {
            guard let postgres = state.value.postgres else { return loop.makeSucceededVoidFuture() }
            let done = loop.makePromise(of: Void.self)
            let finished = NIOLoopBoundBox(false, eventLoop: loop)
            let deadline = loop.scheduleTask(in: Self.postgresStopTimeout) {
                guard !finished.value else { return }
                finished.value = true
                logger.warning("postgres listener thread did not end in time; exiting without waiting for it",
                               metadata: ["waited_seconds": "\(Self.postgresStopTimeout.nanoseconds / 1_000_000_000)"])
                done.succeed(())
            }
            postgres.stop().whenComplete { _ in
                deadline.cancel()
                guard !finished.value else { return }
                finished.value = true
                done.succeed(())
            }
            return done.futureResult
        }
        try? postgresStopped.wait()
        try? loop.submit { state.value.backplane?.stop() }.wait()
        metricsServer?.stop()
        try? group.syncShutdownGracefully()
        logger.info("stopped")
    }

    // MARK: Sockets

    private static func bindOwnSocket(config: RelayConfig, bootstrap: ServerBootstrap) throws -> (Channel, UnixSocketListener) {
        var listener = UnixSocketListener(path: config.socketPath, mode: config.socketMode, group: config.socketGroup)
        let bindPath: String
        do {
            bindPath = try listener.prepare()
        } catch let e as UnixSocketListener.StartupError {
            throw StartupError(description: e.description)
        }
        let channel: Channel
        do {
            channel = try listener.withBindUmask {
                try bootstrap.bind(unixDomainSocketPath: bindPath).wait()
            }
        } catch {
            listener.abandon()
            throw StartupError(description: "RELAY_SOCKET: cannot listen on \(config.socketPath): \(describe(error))")
        }
        do {
            try listener.publish(boundPath: bindPath)
        } catch let e as UnixSocketListener.StartupError {
            try? channel.close().wait()
            throw StartupError(description: e.description)
        }
        return (channel, listener)
    }

    /// sd_listen_fds(3): with `LISTEN_PID` = our pid and `LISTEN_FDS` ≥ 1, fd 3 is a listening
    /// socket from systemd. It must be an AF_UNIX stream socket that listens.
    private static func activatedSocket(_ env: [String: String], logger: Logger) throws -> (fd: Int32, path: String)? {
        guard let pid = env["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
              let count = env["LISTEN_FDS"].flatMap(Int.init), count >= 1 else { return nil }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        let fd: Int32 = 3
        if count > 1 {
            logger.warning("socket activation passed \(count) sockets; serving the first (fd 3) only")
        }
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard option(SO_DOMAIN) == AF_UNIX, option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1 else {
            throw StartupError(description: "LISTEN_FDS: fd 3 is not a listening AF_UNIX stream socket; the .socket unit must use ListenStream= with a path")
        }
        var addr = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let path = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        } == 0 ? withUnsafeBytes(of: addr.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } : "fd 3"
        if let configured = env["RELAY_SOCKET"], !configured.isEmpty {
            logger.notice("socket activation: serving the socket passed by systemd; RELAY_SOCKET is ignored",
                          metadata: ["socket": "\(path)", "RELAY_SOCKET": "\(configured)"])
        } else {
            logger.info("socket activation: serving the socket passed by systemd", metadata: ["socket": "\(path)"])
        }
        return (fd, path)
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
