
import NIOConcurrencyHelpers
import Prometheus
import RelayCore

/// The relay's Prometheus metrics. The hot path keeps plain counters on its event loop
/// (`RelayStats`); a scrape copies them (`RelaySnapshot`) and this type turns the copy into
/// swift-prometheus counters (by delta) and gauges, so no atomic is touched per message.
/// The registry also backs swift-metrics (`MetricsSystem`), so library metrics appear too.
public final class RelayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let clients: Prometheus.Gauge
    private let connections: Prometheus.Counter
    private let commands: Prometheus.Counter
    private let channelSubscriptions: Prometheus.Gauge
    private let patternSubscriptions: Prometheus.Gauge
    private let messagesLocal: Prometheus.Counter
    private let messagesRedis: Prometheus.Counter
    private let messagesPostgres: Prometheus.Counter
    private let deliveries: Prometheus.Counter
    private let dropped: Prometheus.Counter
    private let disconnectsSlow: Prometheus.Counter
    private let disconnectsProtocol: Prometheus.Counter
    private let disconnectsQuery: Prometheus.Counter
    private let disconnectsSecurity: Prometheus.Counter
    private let rejectedUnknown: Prometheus.Counter
    private let rejectedOther: Prometheus.Counter
    private let acceptErrorsFDLimit: Prometheus.Counter
    private let acceptErrorsNoMemory: Prometheus.Counter
    private let upstreamUpRedis: Prometheus.Gauge
    private let upstreamUpPostgres: Prometheus.Gauge
    private let reconnectsRedis: Prometheus.Counter
    private let reconnectsPostgres: Prometheus.Counter
    private let leader: Prometheus.Gauge
    private let gapsRedis: Prometheus.Counter
    private let gapsPostgres: Prometheus.Counter
    private let unconfirmedPublishes: Prometheus.Counter
    private let refusedSubscriptions: Prometheus.Counter
    private let replyLimitDisconnects: Prometheus.Counter
    private let masterSwitches: Prometheus.Counter
    private let pgReceived: Prometheus.Counter
    private let pgPublished: Prometheus.Counter
    private let leaseChanges: Prometheus.Counter
    /// Time from handling a publish to handing the tick's batch to the kernel.
    let deliveryLatency: DurationHistogram
    private let protocolErrors: [String: Prometheus.Counter]
    /// Prometheus.Counter values already exported, to turn snapshots into increments.
    private let exported = NIOLockedValueBox([String: Int]())

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let p = "pubsub_relay_"
        clients = registry.makeGauge(name: p + "clients", help: "Connected local clients.")
        connections = registry.makeCounter(name: p + "connections_total", help: "Client connections accepted.")
        commands = registry.makeCounter(name: p + "commands_total", help: "Commands processed.")
        channelSubscriptions = registry.makeGauge(name: p + "subscriptions", labels: [("kind", "channel")], help: "Client subscriptions by kind.")
        patternSubscriptions = registry.makeGauge(name: p + "subscriptions", labels: [("kind", "pattern")], help: "Client subscriptions by kind.")
        let inHelp = "Messages taken in for delivery, by source."
        messagesLocal = registry.makeCounter(name: p + "messages_in_total", labels: [("source", "local")], help: inHelp)
        messagesRedis = registry.makeCounter(name: p + "messages_in_total", labels: [("source", "redis")], help: inHelp)
        messagesPostgres = registry.makeCounter(name: p + "messages_in_total", labels: [("source", "postgres")], help: inHelp)
        deliveries = registry.makeCounter(name: p + "deliveries_total", help: "Frames handed to local subscribers.")
        dropped = registry.makeCounter(name: p + "dropped_total", labels: [("reason", "client_closing")], help: "Frames not delivered, by reason.")
        let dHelp = "Clients disconnected by the relay, by reason."
        disconnectsSlow = registry.makeCounter(name: p + "disconnects_total", labels: [("reason", "slow_consumer")], help: dHelp)
        disconnectsProtocol = registry.makeCounter(name: p + "disconnects_total", labels: [("reason", "protocol_error")], help: dHelp)
        disconnectsQuery = registry.makeCounter(name: p + "disconnects_total", labels: [("reason", "query_buffer")], help: dHelp)
        disconnectsSecurity = registry.makeCounter(name: p + "disconnects_total", labels: [("reason", "security")], help: dHelp)
        let rHelp = "Commands answered with an error, by reason."
        rejectedUnknown = registry.makeCounter(name: p + "commands_rejected_total", labels: [("reason", "unknown_command")], help: rHelp)
        rejectedOther = registry.makeCounter(name: p + "commands_rejected_total", labels: [("reason", "rejected")], help: rHelp)
        let aHelp = "accept(2) attempts on the relay socket refused (accepting pauses meanwhile), by reason."
        acceptErrorsFDLimit = registry.makeCounter(name: p + "accept_errors_total", labels: [("reason", "fd_limit")], help: aHelp)
        acceptErrorsNoMemory = registry.makeCounter(name: p + "accept_errors_total", labels: [("reason", "no_memory")], help: aHelp)
        let upHelp = "1 when the upstream link is up (0 when down or not configured)."
        upstreamUpRedis = registry.makeGauge(name: p + "upstream_up", labels: [("upstream", "redis")], help: upHelp)
        upstreamUpPostgres = registry.makeGauge(name: p + "upstream_up", labels: [("upstream", "postgres")], help: upHelp)
        let rcHelp = "Upstream reconnects."
        reconnectsRedis = registry.makeCounter(name: p + "upstream_reconnects_total", labels: [("upstream", "redis")], help: rcHelp)
        reconnectsPostgres = registry.makeCounter(name: p + "upstream_reconnects_total", labels: [("upstream", "postgres")], help: rcHelp)
        let gHelp = "Upstream outages survived (each logged with its duration); what other relays sent meanwhile was not delivered here."
        gapsRedis = registry.makeCounter(name: p + "upstream_gaps_total", labels: [("upstream", "redis")], help: gHelp)
        gapsPostgres = registry.makeCounter(name: p + "upstream_gaps_total", labels: [("upstream", "postgres")], help: gHelp)
        unconfirmedPublishes = registry.makeCounter(
            name: p + "redis_unconfirmed_publishes_total",
            help: "PUBLISHes in flight when the Redis publisher connection dropped: answered 0 and not delivered locally.")
        refusedSubscriptions = registry.makeCounter(
            name: p + "redis_refused_subscriptions_total",
            help: "Upstream (P)SUBSCRIBEs Redis refused (e.g. NOPERM): the asking clients got Redis's error.")
        replyLimitDisconnects = registry.makeCounter(
            name: p + "redis_reply_limit_disconnects_total",
            help: "Redis connections dropped because a reply exceeded the relay's caps on elements or bulk size.")
        masterSwitches = registry.makeCounter(
            name: p + "redis_master_switches_total",
            help: "Redis Sentinel failovers followed: the backplane moved to a new master.")
        pgReceived = registry.makeCounter(name: p + "postgres_notifications_received_total",
                                          help: "Postgres notifications received by this relay's listener.")
        pgPublished = registry.makeCounter(name: p + "postgres_notifications_published_total",
                                           help: "Postgres notifications this relay published to the Redis backplane (as the leader).")
        leaseChanges = registry.makeCounter(name: p + "leader_changes_total",
                                            help: "Times this relay took or gave up the Postgres leader lease.")
        protocolErrors = Dictionary(uniqueKeysWithValues: ProtocolError.allReasons.map { reason in
            (reason, registry.makeCounter(name: p + "protocol_errors_total", labels: [("reason", reason)],
                                          help: "Protocol errors (each closed its client), by reason."))
        })
        leader = registry.makeGauge(name: p + "leader", help: "1 while this relay holds the Postgres leader lease.")
        deliveryLatency = registry.makeDurationHistogram(
            name: p + "delivery_latency_seconds",
            buckets: [.microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
                      .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
                      .milliseconds(25), .milliseconds(100)],
            help: "Time from handling a publish to handing the batch of deliveries to the kernel.")
    }

    /// Brings the exported metrics up to `s` and renders the Prometheus text format.
    func render(_ s: RelaySnapshot) -> [UInt8] {
        clients.set(Double(s.clients))
        channelSubscriptions.set(Double(s.channelSubscriptions))
        patternSubscriptions.set(Double(s.patternSubscriptions))
        upstreamUpRedis.set(Double(s.redis?.forwarding == true ? 1 : 0))
        upstreamUpPostgres.set(Double(s.postgres?.listening == true ? 1 : 0))
        leader.set(Double(s.postgres?.leader == true ? 1 : 0))
        exported.withLockedValue { seen in
            func advance(_ counter: Prometheus.Counter, _ key: String, _ value: Int) {
                let delta = value - seen[key, default: 0]
                if delta > 0 { counter.increment(by: Int64(delta)) }
                seen[key] = value
            }
            advance(connections, "connections", s.connectionsTotal)
            advance(commands, "commands", s.commandsTotal)
            advance(messagesLocal, "messages_local", s.messagesPublished)
            advance(messagesRedis, "messages_redis", s.messagesFromRedis)
            advance(messagesPostgres, "messages_postgres", s.messagesFromPostgres)
            advance(deliveries, "deliveries", s.deliveries)
            if let p = s.postgres {
                advance(reconnectsPostgres, "reconnects_postgres", p.reconnects)
                advance(gapsPostgres, "gaps_postgres", p.gaps)
                advance(pgReceived, "pg_received", p.received)
                advance(pgPublished, "pg_published", p.published)
                advance(leaseChanges, "lease_changes", p.leaseChanges)
            }
            if let r = s.redis {
                advance(reconnectsRedis, "reconnects_redis", r.reconnects)
                advance(gapsRedis, "gaps_redis", r.gaps)
                advance(unconfirmedPublishes, "unconfirmed_publishes", r.unconfirmedPublishes)
                advance(refusedSubscriptions, "refused_subscriptions", r.refusedSubscriptions)
                advance(replyLimitDisconnects, "reply_limit_disconnects", r.replyLimitDisconnects)
                advance(masterSwitches, "master_switches", r.masterSwitches)
            }
            advance(dropped, "dropped", s.droppedFrames)
            advance(disconnectsSlow, "slow", s.slowConsumerDisconnects)
            advance(disconnectsProtocol, "protocol", s.protocolErrors.values.reduce(0, +))
            advance(disconnectsQuery, "query", s.queryBufferDisconnects)
            advance(disconnectsSecurity, "security", s.securityDisconnects)
            advance(rejectedUnknown, "unknown", s.unknownCommands)
            advance(rejectedOther, "rejected", s.rejectedCommands)
            advance(acceptErrorsFDLimit, "accept_fd_limit", s.acceptErrorsFDLimit)
            advance(acceptErrorsNoMemory, "accept_no_memory", s.acceptErrorsNoMemory)
            for (reason, count) in s.protocolErrors {
                if let counter = protocolErrors[reason] { advance(counter, "protocol_error_" + reason, count) }
            }
        }
        return registry.emitToBuffer()
    }
}
