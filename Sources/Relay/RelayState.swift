#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import RelayCore

/// Everything the client connections share, confined to the one event loop that serves them:
/// the hub (registry and fan-out), the command executor, the output flusher and the counters.
/// A single loop is the design, as in Redis: no locks on the hot path, and one core left for
/// the apps and the kernel.
final class RelayState {
    /// Replaced by a reload (SIGHUP) with its reloadable settings applied.
    private(set) var config: RelayConfig
    let logger: Logger
    let stats = RelayStats()
    let hub: PubSubHub<ClientConnection>
    let executor: CommandExecutor<ClientConnection>
    let flusher: OutputFlusher
    private(set) var parserLimits: RequestParser.Limits
    let startedAt = NIODeadline.now()
    private(set) var clients: [ObjectIdentifier: ClientConnection] = [:]
    private var nextClientID = 1
    /// Set when the server stops accepting; /health and INFO report it.
    var isServing = false
    let socketPath: String
    /// The Redis backplane when `REDIS_URL` is set (started by the server once it serves).
    private(set) var backplane: (any BackplaneService)?
    /// The Postgres bridge when `DATABASE_URL` is set.
    private(set) var postgres: PostgresBridge?
    private let heapTrim: IdleHeapTrim
    /// The TLS files of a `rediss://` backplane as last read (start-up or reload): each new
    /// upstream connection takes the current one.
    var redisTLS: RedisTLS?
    /// The TCP listener once it listens (set by the server); nil without one.
    var tcpListener: TCPListenerInfo?
    /// Failed AUTHs are logged at most once a second (all are counted).
    private var authFailureLog = AuthFailureLogLimiter()

    init(config: RelayConfig, socketPath: String, eventLoop: EventLoop, logger: Logger, redisTLS: RedisTLS? = nil) {
        self.config = config
        self.redisTLS = redisTLS
        self.socketPath = socketPath
        self.logger = logger
        self.heapTrim = IdleHeapTrim(logger: logger)
        self.hub = PubSubHub(stats: stats)
        self.executor = CommandExecutor(hub: hub)
        self.flusher = OutputFlusher(eventLoop: eventLoop, stats: stats)
        self.parserLimits = RequestParser.Limits(maxBulkLength: config.maxMessageBytes, maxArguments: config.maxArguments)
        executor.infoText = { [unowned self] sections in self.infoText(sections: sections) }
        executor.clientInfoLine = { [unowned self] client in self.clientInfoLine(client) }
        executor.unknownCommand = { client, name in client.logUnknownCommand(name) }
        executor.debugCommandEnabled = config.debugCommandEnabled
        executor.password = config.password
        executor.authFailed = { [unowned self] client, user in self.logAuthFailure(client, user: user) }
        executor.debugSleep = { seconds in
            var remaining = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
            var left = timespec()
            while nanosleep(&remaining, &left) != 0 && errno == EINTR { remaining = left }
        }
        if let url = config.redisURL {
            if url.cluster != nil {
                let cluster = ClusterBackplane(url: url, config: config, state: self, eventLoop: eventLoop)
                backplane = cluster
                executor.backplane = cluster
            } else {
                let link = UpstreamRedisLink(url: url, config: config, state: self, eventLoop: eventLoop)
                backplane = link
                executor.backplane = link
            }
        }
        if let conninfo = config.databaseURL {
            postgres = PostgresBridge(config: config, conninfo: conninfo, state: self, backplane: backplane, eventLoop: eventLoop)
        }
    }

    /// Applies a reloaded configuration's reloadable settings to the relay and every client.
    func apply(_ new: RelayConfig) {
        config = new
        parserLimits = RequestParser.Limits(maxBulkLength: new.maxMessageBytes, maxArguments: new.maxArguments)
        executor.debugCommandEnabled = new.debugCommandEnabled
        for client in clients.values { client.updateLimits(parserLimits) }
    }

    /// Once a second (a timer on this loop): the heap is trimmed when the relay has been quiet.
    func idleTick() {
        heapTrim.tick(IdleHeapTrim.Activity(
            commands: stats.counts.commandsProcessed,
            messagesIn: stats.counts.messagesFromRedis + stats.counts.messagesFromPostgres + (postgres?.notificationsReceived ?? 0),
            connections: stats.counts.connectionsReceived, clients: clients.count))
    }

    /// The systemd STATUS= line, checked every second: cheap (no walk over the subscriptions).
    var statusLine: String {
        RelaySnapshot.statusLine(isServing: isServing, clients: clients.count, redis: backplane?.isForwarding,
                                 postgres: postgres?.mode)
    }

    /// Every counter at this instant: INFO's counter lines and `/metrics` render from it.
    var counters: RelayCounters {
        RelayCounters(stats: stats.counts, redis: backplane?.status.counters, postgres: postgres?.counters)
    }

    /// The counters and state for `/metrics` and `/health`.
    func snapshot() -> RelaySnapshot {
        let totals = hub.registry.subscriptionTotals
        let redis = backplane?.status, pg = postgres?.status
        return RelaySnapshot(
            isServing: isServing, socketPath: socketPath, clients: clients.count,
            channelSubscriptions: totals.channels, patternSubscriptions: totals.patterns,
            shardChannelSubscriptions: totals.shardChannels,
            counters: RelayCounters(stats: stats.counts, redis: redis?.counters, postgres: pg?.counters),
            redis: redis, postgres: pg, tcp: tcpListener)
    }

    /// `peer`: the client's `ip:port` on the TCP listener, nil on the Unix socket.
    func makeClient(peer: String? = nil, local: String? = nil) -> ClientConnection {
        defer { nextClientID += 1 }
        return ClientConnection(id: nextClientID, state: self, peer: peer, local: local)
    }

    /// One `warning` per second at most, however fast a client guesses; never the password,
    /// nor the user name (a client that swapped the two would put its password there).
    private func logAuthFailure(_ client: ClientConnection, user: ByteBuffer) {
        let now = UInt64(NIODeadline.now().uptimeNanoseconds)
        guard let notLogged = authFailureLog.failure(now: now) else { return }
        var metadata: Logger.Metadata = [
            "client": "\(client.session.id)", "listener": "\(client.peer == nil ? "unix" : "tcp")",
            "user": "\(user.readableBytesView.elementsEqual("default".utf8) ? "default" : "(another user)")",
            "auth_failures": "\(stats.counts.authFailures)",
        ]
        if let peer = client.peer { metadata["peer"] = "\(peer)" }
        if notLogged > 0 { metadata["not_logged_since_last"] = "\(notLogged)" }
        logger.warning("AUTH failed: wrong password or user (WRONGPASS); failures are logged at most once a second", metadata: metadata)
    }

    func clientConnected(_ client: ClientConnection) {
        clients[ObjectIdentifier(client)] = client
        stats.counts.connectionsReceived += 1
    }

    func clientDisconnected(_ client: ClientConnection) {
        executor.clientClosed(client)
        clients[ObjectIdentifier(client)] = nil
    }

    var allClients: Dictionary<ObjectIdentifier, ClientConnection>.Values { clients.values }

    // MARK: INFO

    func infoText(sections requested: [String]) -> String {
        let all = ["server", "clients", "upstreams", "stats"]
        let wanted: [String]
        if requested.isEmpty || requested.contains(where: { ["all", "everything", "default"].contains($0) }) {
            wanted = all
        } else {
            wanted = all.filter { requested.contains($0) }
        }
        var out: [String] = []
        for section in wanted {
            if !out.isEmpty { out.append("") }
            switch section {
            case "server": out += serverSection()
            case "clients": out += clientsSection()
            case "upstreams": out += upstreamsSection()
            default: out += statsSection()
            }
        }
        return out.isEmpty ? "" : out.joined(separator: "\r\n") + "\r\n"
    }

    private func serverSection() -> [String] {
        let uptime = Int((NIODeadline.now() - startedAt).nanoseconds / 1_000_000_000)
        var uts = utsname()
        uname(&uts)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return [
            "# Server",
            "redis_version:\(CommandExecutor<ClientConnection>.compatibleRedisVersion)",
            "relay_version:\(RelayVersion.current)",
            "redis_mode:standalone",
            "relay_mode:\(backplane == nil ? "local" : "backplane")",
            "os:\(field(uts.sysname)) \(field(uts.release)) \(field(uts.machine))",
            "arch_bits:\(MemoryLayout<Int>.size * 8)",
            "process_id:\(getpid())",
            "uptime_in_seconds:\(uptime)",
            "uptime_in_days:\(uptime / 86400)",
            "unix_socket:\(socketPath)",
            // As Redis's tcp_port: 0 when there is no TCP listener.
            "tcp_port:\(tcpListener?.address.port ?? 0)",
            "tcp_address:\(tcpListener?.address.description ?? "")",
            "tcp_activated:\(tcpListener?.activated == true ? 1 : 0)",
            "password_required:\(config.password == nil ? "no" : "yes")",
        ]
    }

    private func clientsSection() -> [String] {
        let limit = config.clientBufferLimit
        return [
            "# Clients",
            "connected_clients:\(clients.count)",
            "pubsub_clients:\(hub.registry.subscriberCount)",
            "client_output_buffer_limit_pubsub:\(limit.hardBytes) \(limit.softBytes) \(limit.softSeconds)",
            "max_message_bytes:\(config.maxMessageBytes)",
        ]
    }

    private func upstreamsSection() -> [String] {
        let counters = self.counters
        var lines = ["# Upstreams"]
        if let status = backplane?.status {
            lines += [
                "redis_backplane:enabled",
                "redis_url:\(status.url)",
                "redis_relay_id:\(status.relayID)",
                "redis_state:\(status.state)",
                "redis_subscriber_link:\(status.subscriber)",
                "redis_publisher_link:\(status.publisher)",
                "redis_degraded:\(status.forwarding ? 0 : 1)",
                "redis_degraded_since:\(status.degradedSinceUnixMilliseconds.map { "\($0 / 1000).\(String(1000 + $0 % 1000).dropFirst())" } ?? "")",
                "redis_degraded_seconds:\(status.degradedSeconds.map { UpstreamRedisLink.format($0) } ?? "0")",
                "redis_last_error:\(status.lastError)",
                "redis_upstream_channels:\(status.upstreamChannels)",
                "redis_upstream_patterns:\(status.upstreamPatterns)",
                "redis_upstream_shard_channels:\(status.upstreamShardChannels)",
                "redis_pending_confirmations:\(status.pendingConfirmations)",
                "redis_topology:\(status.topology)",
                "redis_master:\(status.master)",
                "redis_fleet_receivers:\(status.fleetReceivers ? "counted" : "this_relay_only")",
                "redis_fleet_relays_known:\(status.fleetRelaysKnown)",
            ]
            if status.topology == "sentinel" { lines.append("redis_sentinel:\(status.sentinel)") }
            if let c = status.cluster {
                lines += [
                    "redis_cluster_pubsub:\(c.pubsub)",
                    "redis_cluster_nodes:\(c.nodes)",
                    "redis_cluster_masters:\(c.masters)",
                    "redis_cluster_masters_connected:\(c.mastersConnected)",
                    "redis_cluster_slots_complete:\(c.complete ? 1 : 0)",
                    "redis_cluster_slot_map_version:\(c.slotMapVersion)",
                    "redis_cluster_home:\(c.home)",
                    "redis_cluster_control_node:\(c.control)",
                ]
                for (i, node) in c.links.enumerated() {
                    lines.append("redis_cluster_master\(i):addr=\(node.address),id=\(node.id),home=\(node.home ? 1 : 0),state=\(node.state),"
                                 + "subscriptions=\(node.subscriptions),gaps=\(node.gaps),gap_seconds=\(UpstreamRedisLink.format(node.gapSeconds))")
                }
            }
            lines += RelayCounterTable.infoLines(.redis, counters)
        } else {
            lines.append("redis_backplane:disabled")
        }
        if let postgres {
            lines += postgres.infoLines + RelayCounterTable.infoLines(.postgres, counters)
        } else {
            lines.append("postgres_bridge:disabled")
        }
        return lines
    }

    private func statsSection() -> [String] {
        ["# Stats", "pubsub_channels:\(hub.registry.channelCount)", "pubsub_patterns:\(hub.registry.patternCount)",
         "pubsubshard_channels:\(hub.registry.shardChannelCount)"]
            + RelayCounterTable.infoLines(.stats, counters)
    }

    func clientInfoLine(_ c: ClientConnection) -> String {
        let s = c.session
        let now = NIODeadline.now()
        let age = (now - c.connectedAt).nanoseconds / 1_000_000_000
        let idle = (now - c.lastInteraction).nanoseconds / 1_000_000_000
        let name = s.name.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let libName = s.libName.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let libVer = s.libVersion.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let flags = s.inPubSubContext ? "P" : "N"
        let registry = hub.registry
        let addr = c.peer ?? "\(socketPath):0", laddr = c.local ?? "\(socketPath):0"
        return "id=\(s.id) addr=\(addr) laddr=\(laddr) fd=-1 name=\(name) age=\(age) idle=\(idle) "
            + "flags=\(flags) db=\(s.db) sub=\(registry.channelCount(of: c)) psub=\(registry.patternCount(of: c)) ssub=\(registry.shardChannelCount(of: c)) "
            + "multi=-1 qbuf=\(c.queryBufferBytes) qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 "
            + "omem=\(c.bufferedOutputBytes) tot-mem=0 events=r cmd=\(s.lastCommand) user=default redir=-1 "
            + "resp=\(s.resp.rawValue) lib-name=\(libName) lib-ver=\(libVer)"
    }
}

/// The relay's own version.
public enum RelayVersion {
    public static let current = "0.1.0"
}
