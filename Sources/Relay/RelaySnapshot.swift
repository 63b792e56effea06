import RelayCore

/// The relay's counters and state at one instant, copied off the client event loop for
/// `/metrics` and `/health`.
struct RelaySnapshot: Sendable {
    var isServing: Bool
    var socketPath: String
    var clients: Int
    var channelSubscriptions: Int
    var patternSubscriptions: Int
    var shardChannelSubscriptions: Int
    /// Every counter; `RelayCounterTable` turns them into `/metrics` series (and INFO lines).
    var counters: RelayCounters
    /// nil when no backplane is configured.
    var redis: RedisLinkStatus?
    /// nil when no Postgres bridge is configured.
    var postgres: PostgresBridgeStatus?
    /// The TCP listener; nil when there is none.
    var tcp: TCPListenerInfo?

    /// `redis`: nil when not configured, else whether it is up (forwarding).
    static func statusLine(isServing: Bool, clients: Int, redis: Bool?, postgres: String?) -> String {
        let backplane = redis.map { $0 ? "up" : "degraded" } ?? "not configured"
        return "\(isServing ? "serving" : "stopping") \(clients) clients; redis: \(backplane); postgres: \(postgres ?? "not configured")"
    }

    /// `/health`'s body.
    var healthJSON: String {
        "{\"status\":\"\(isServing ? "serving" : "stopping")\",\"degraded\":\(redis.map { !$0.forwarding } ?? false),\"clients\":\(clients),"
            + "\"socket\":\(RelayLogHandler.jsonString(socketPath)),"
            + "\"listeners\":{\"unix\":{\"path\":\(RelayLogHandler.jsonString(socketPath)),\"listening\":\(isServing)},\"tcp\":\(tcpJSON)},"
            + "\"upstreams\":{\"redis\":\(redisJSON),\"postgres\":\(postgresJSON)}}"
    }

    private var tcpJSON: String {
        guard let t = tcp else { return "\"not configured\"" }
        return "{\"address\":\(RelayLogHandler.jsonString(t.address.description)),\"port\":\(t.address.port),"
            + "\"listening\":\(isServing),\"activated\":\(t.activated),\"password\":\(t.passwordRequired)}"
    }

    private var postgresJSON: String {
        guard let p = postgres else { return "\"not configured\"" }
        return "{\"mode\":\"\(p.mode)\",\"listening\":\(p.listening),\"leader\":\(p.leader),"
            + "\"reconnects\":\(p.counters.reconnects),\"last_error\":\(RelayLogHandler.jsonString(p.lastError))}"
    }

    private var redisJSON: String {
        guard let r = redis else { return "\"not configured\"" }
        return "{\"state\":\"\(r.state)\",\"subscriber\":\"\(r.subscriber)\",\"publisher\":\"\(r.publisher)\","
            + "\"degraded_seconds\":\(r.degradedSeconds.map { UpstreamRedisLink.format($0) } ?? "0"),"
            + "\"reconnects\":\(r.counters.reconnects),\"last_error\":\(RelayLogHandler.jsonString(r.lastError)),"
            + "\"topology\":\"\(r.topology)\",\"master\":\(RelayLogHandler.jsonString(r.master)),\"master_switches\":\(r.counters.masterSwitches)"
            + (r.cluster.map { c in
                ",\"cluster\":{\"pubsub\":\"\(c.pubsub)\",\"nodes\":\(c.nodes),\"masters\":\(c.masters),\"masters_connected\":\(c.mastersConnected),"
                    + "\"slots_complete\":\(c.complete),\"slot_map_version\":\(c.slotMapVersion),\"home\":\(RelayLogHandler.jsonString(c.home))}"
            } ?? "") + "}"
    }
}

/// The TCP listener as INFO, /health and /metrics show it.
struct TCPListenerInfo: Sendable {
    var address: TCPListenAddress
    /// Passed by systemd (socket activation) rather than bound from `RELAY_TCP_ADDR`.
    var activated: Bool
    /// Clients must AUTH (as on every listener when a password is set).
    var passwordRequired: Bool
}
