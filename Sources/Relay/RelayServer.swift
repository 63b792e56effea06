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
    /// The TCP listener (`RELAY_TCP_ADDR` or a socket from systemd); nil when off.
    private let tcpChannel: Channel?
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
        let activated = try activatedSockets(environment, config: config, logger: logger)
        let socketPath = activated.unix?.path ?? config.socketPath
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
            // The two listeners serve the same clients: same limits, same slow-consumer rules.
            func bootstrap(listenerName: String, tcp: Bool) -> ServerBootstrap {
                var b = ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 1024)
                    // Bound and activated sockets alike: at the open-file limit, pause accepting
                    // rather than spin on the readable listening socket.
                    .serverChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let backoff = AcceptBackoff(listenerName: listenerName, logger: logger) { reason in
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
                if tcp {
                    // Replies and messages go out as soon as they are flushed, as from Redis
                    // (which sets TCP_NODELAY on every client): the relay already batches per tick.
                    b = b.childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                }
                return b.childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let client = tcp
                            ? state.value.makeClient(peer: Self.ipPort(channel.remoteAddress), local: Self.ipPort(channel.localAddress))
                            : state.value.makeClient()
                        try channel.pipeline.syncOperations.addHandler(client)
                    }
                }
            }

            let channel: Channel
            var listener: UnixSocketListener?
            if let unix = activated.unix {
                do {
                    channel = try bootstrap(listenerName: "RELAY_SOCKET", tcp: false).withBoundSocket(unix.fd).wait()
                } catch {
                    throw StartupError(description: "LISTEN_FDS: cannot serve the socket passed by systemd: \(error)")
                }
            } else {
                (channel, listener) = try bindOwnSocket(config: config, bootstrap: bootstrap(listenerName: "RELAY_SOCKET", tcp: false))
            }
            var tcpChannel: Channel?
            var tcpInfo: TCPListenerInfo?
            do {
                let tcpBootstrap = bootstrap(listenerName: "RELAY_TCP_ADDR", tcp: true)
                if let tcp = activated.tcp {
                    do {
                        tcpChannel = try tcpBootstrap.withBoundSocket(tcp.fd).wait()
                    } catch {
                        throw StartupError(description: "LISTEN_FDS: cannot serve the TCP socket passed by systemd (\(tcp.address)): \(error)")
                    }
                    tcpInfo = TCPListenerInfo(address: tcp.address, activated: true, passwordRequired: config.password != nil)
                } else if let address = config.tcpAddress {
                    do {
                        tcpChannel = try tcpBootstrap.bind(host: address.host, port: address.port).wait()
                    } catch {
                        throw StartupError(description: "RELAY_TCP_ADDR: cannot listen on \(address): \(describe(error))")
                    }
                    tcpInfo = TCPListenerInfo(address: address, activated: false, passwordRequired: config.password != nil)
                }
            } catch {
                try? channel.close().wait()
                listener?.remove()
                throw error
            }
            if let tcpInfo {
                try loop.submit { state.value.tcpListener = tcpInfo }.wait()
            }
            let closeListeners = {
                try? tcpChannel?.close().wait()
                try? channel.close().wait()
                listener?.remove()
            }

            var metricsServer: MetricsServer?
            if let metrics, let address = config.metricsAddress {
                do {
                    metricsServer = try MetricsServer.start(address: address, metrics: metrics, logger: logger) {
                        loop.submit { state.value.snapshot() }
                    }
                } catch {
                    closeListeners()
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
                "socket": "\(socketPath)", "activated": "\(activated.unix != nil)",
                "mode": "\(activated.unix == nil ? String(config.socketMode, radix: 8) : "from systemd")",
                "tcp": "\(tcpInfo.map { "\($0.address)\($0.activated ? " (from systemd)" : "")" } ?? "off")",
                "password": "\(config.password == nil ? "none" : "required on every listener")",
                "max_message_bytes": "\(config.maxMessageBytes)",
                "backplane": "\(config.redisURL.map { $0.redacted } ?? "none (local mode)")",
            ])
            if let tcpInfo {
                if config.password == nil {
                    logger.warning("TCP listener on \(tcpInfo.address) has no password: any local user can connect to it (set RELAY_PASSWORD or RELAY_PASSWORD_FILE to require AUTH)")
                }
                if !tcpInfo.address.isLoopback {
                    logger.notice("TCP listener on \(tcpInfo.address) is reachable from other hosts (RELAY_TCP_ALLOW_REMOTE=yes): the password and every message cross the network in plaintext")
                }
            }
            if let redisTLS {
                logger.info("redis backplane over TLS: \(redisTLS.summary)")
            }
            let server = RelayServer(group: group, state: state, serverChannel: channel, tcpChannel: tcpChannel, listener: listener,
                                     logger: logger, notifier: notifier, metricsServer: metricsServer)
            server.announceReady()
            return server
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    private init(group: MultiThreadedEventLoopGroup, state: NIOLoopBound<RelayState>, serverChannel: Channel, tcpChannel: Channel?,
                 listener: UnixSocketListener?, logger: Logger, notifier: SystemdNotifier?, metricsServer: MetricsServer?) {
        self.group = group
        self.state = state
        self.serverChannel = serverChannel
        self.tcpChannel = tcpChannel
        self.listener = listener
        self.logger = logger
        self.notifier = notifier
        self.metricsServer = metricsServer
    }

    // MARK: systemd

    /// READY=1 once every listener accepts (both are bound before this runs); then STATUS= on change and WATCHDOG=1 every
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
        for listening in [serverChannel] + (tcpChannel.map { [$0] } ?? []) {
            do {
                try listening.close().wait()
            } catch {
                logger.warning("closing a listening socket failed", metadata: ["error": "\(error)"])
            }
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

    /// The sockets systemd passed: at most one AF_UNIX and one TCP (AF_INET or AF_INET6) socket.
    struct ActivatedSockets {
        var unix: (fd: Int32, path: String)?
        var tcp: (fd: Int32, address: TCPListenAddress)?
    }

    /// sd_listen_fds(3): with `LISTEN_PID` = our pid and `LISTEN_FDS` = n ≥ 1, fds 3…3+n-1 are
    /// listening sockets from systemd, in the order of the .socket unit's ListenStream= lines.
    /// Each is told apart by its address family (getsockname), not by position or name: an
    /// AF_UNIX one replaces RELAY_SOCKET, a TCP one RELAY_TCP_ADDR; a listener not passed is
    /// bound as configured. A TCP socket is held to the same loopback rule as RELAY_TCP_ADDR.
    private static func activatedSockets(_ env: [String: String], config: RelayConfig, logger: Logger) throws -> ActivatedSockets {
        var found = ActivatedSockets()
        guard let pid = env["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
              let count = env["LISTEN_FDS"].flatMap(Int.init), count >= 1 else { return found }
        let names = env["LISTEN_FDNAMES"].map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        for index in 0..<count {
            let fd = Int32(3 + index)
            let name = index < names.count && !names[index].isEmpty ? " (\(names[index]))" : ""
            func option(_ option: Int32) -> Int32? {
                var value: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                return getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0 ? value : nil
            }
            let domain = option(SO_DOMAIN)
            guard let domain, [AF_UNIX, AF_INET, AF_INET6].contains(domain),
                  option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1 else {
                throw StartupError(description: "LISTEN_FDS: fd \(fd)\(name) is not a listening AF_UNIX, AF_INET or AF_INET6 stream socket; the .socket unit must use ListenStream= with a path or an address:port")
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let named = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            } == 0
            if domain == AF_UNIX {
                guard found.unix == nil else {
                    throw StartupError(description: "LISTEN_FDS: fd \(fd)\(name) is a second AF_UNIX socket; pass at most one Unix socket and one TCP socket")
                }
                let path = named ? withUnsafeBytes(of: &storage) { raw -> String in
                    let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
                    return String(decoding: raw[offset...].prefix { $0 != 0 }, as: UTF8.self)
                } : "fd \(fd)"
                found.unix = (fd, path)
            } else {
                guard found.tcp == nil else {
                    throw StartupError(description: "LISTEN_FDS: fd \(fd)\(name) is a second TCP socket; pass at most one Unix socket and one TCP socket")
                }
                guard named, let address = tcpAddress(storage) else {
                    throw StartupError(description: "LISTEN_FDS: fd \(fd)\(name): cannot read its address (getsockname: \(String(cString: strerror(errno))))")
                }
                if !address.isLoopback && !config.tcpAllowRemote {
                    throw StartupError(description: "LISTEN_FDS: fd \(fd)\(name) listens on \(address), which is not a loopback address; the TCP listener takes 127.0.0.0/8 or [::1] (ListenStream=127.0.0.1:6380), or set RELAY_TCP_ALLOW_REMOTE=yes with RELAY_PASSWORD")
                }
                found.tcp = (fd, address)
            }
        }
        if let unix = found.unix {
            if let configured = env["RELAY_SOCKET"], !configured.isEmpty {
                logger.notice("socket activation: serving the socket passed by systemd; RELAY_SOCKET is ignored",
                              metadata: ["socket": "\(unix.path)", "RELAY_SOCKET": "\(configured)"])
            } else {
                logger.info("socket activation: serving the socket passed by systemd", metadata: ["socket": "\(unix.path)"])
            }
        }
        if let tcp = found.tcp {
            if let configured = config.tcpAddress {
                logger.notice("socket activation: serving the TCP socket passed by systemd; RELAY_TCP_ADDR is ignored",
                              metadata: ["tcp": "\(tcp.address)", "RELAY_TCP_ADDR": "\(configured)"])
            } else {
                logger.info("socket activation: serving the TCP socket passed by systemd", metadata: ["tcp": "\(tcp.address)"])
            }
        }
        return found
    }

    /// The IP address and port of an AF_INET / AF_INET6 socket address.
    private static func tcpAddress(_ storage: sockaddr_storage) -> TCPListenAddress? {
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw -> TCPListenAddress? in
            switch family {
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                return TCPListenAddress.fromSocketAddress(bytes: withUnsafeBytes(of: sin.sin_addr) { Array($0) }, port: Int(UInt16(bigEndian: sin.sin_port)))
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                return TCPListenAddress.fromSocketAddress(bytes: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }, port: Int(UInt16(bigEndian: sin6.sin6_port)))
            default:
                return nil
            }
        }
    }

    /// `ip:port` (`[v6]:port`) of a TCP peer, as CLIENT INFO's addr shows it.
    static func ipPort(_ address: SocketAddress?) -> String? {
        guard let address, let ip = address.ipAddress, let port = address.port else { return nil }
        return address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
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
