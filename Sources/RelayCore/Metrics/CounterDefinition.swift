/// One counter, defined once: its `INFO` field, its Prometheus series and how to read it from a
/// `RelayCounters` copy. INFO's counter lines and `/metrics`'s counters are both rendered from
/// `RelayCounterTable.all`, so the two cannot drift (README, "Health and metrics").
public struct CounterDefinition: Sendable {
    /// The INFO section the line goes in, in the order the table lists them.
    public enum Section: Sendable, Equatable {
        case stats, redis, postgres
    }

    /// A counter's reading: a count, or seconds (shown in INFO with millisecond precision).
    public enum Value: Sendable, Equatable {
        case count(Int)
        case seconds(Double)

        public var infoText: String {
            switch self {
            case .count(let n): return String(n)
            case .seconds(let s): return SecondsText.format(s)
            }
        }
    }

    public struct Label: Sendable, Hashable {
        public let name: String
        public let value: String
    }

    public let section: Section
    /// The INFO field, e.g. `messages_delivered`.
    public let info: String
    /// The Prometheus name, e.g. `pubsub_relay_deliveries_total`.
    public let metric: String
    public let labels: [Label]
    /// The metric's HELP text; the same for every series of one metric.
    public let help: String
    /// nil: not shown in INFO and the metric not advanced (the upstream is not configured, or a
    /// protocol error reason that has not happened, as INFO has always omitted those).
    public let read: @Sendable (RelayCounters) -> Value?

    /// `metric` and `labels` as Prometheus writes a series, e.g. `x_total{reason="a"}`: what must
    /// be unique across the table.
    public var series: String {
        labels.isEmpty ? metric : metric + "{" + labels.map { "\($0.name)=\"\($0.value)\"" }.joined(separator: ",") + "}"
    }

    /// The INFO line, or nil when `read` gives nil.
    public func infoLine(_ counters: RelayCounters) -> String? {
        read(counters).map { "\(info):\($0.infoText)" }
    }

    static func count(_ section: Section, _ info: String, _ metric: String, _ help: String,
                      _ read: @escaping @Sendable (RelayCounters) -> Int?) -> CounterDefinition {
        count(section, info, metric, [], help, read)
    }

    static func count(_ section: Section, _ info: String, _ metric: String, _ labels: [(String, String)],
                      _ help: String, _ read: @escaping @Sendable (RelayCounters) -> Int?) -> CounterDefinition {
        CounterDefinition(section: section, info: info, metric: "pubsub_relay_" + metric,
                          labels: labels.map { Label(name: $0.0, value: $0.1) }, help: help, read: { read($0).map(Value.count) })
    }

    static func seconds(_ section: Section, _ info: String, _ metric: String, _ labels: [(String, String)],
                        _ help: String, _ read: @escaping @Sendable (RelayCounters) -> Double?) -> CounterDefinition {
        CounterDefinition(section: section, info: info, metric: "pubsub_relay_" + metric,
                          labels: labels.map { Label(name: $0.0, value: $0.1) }, help: help, read: { read($0).map(Value.seconds) })
    }
}

/// Every counter the relay exports: one row each. Adding a counter is adding a row (and the field
/// that counts it); INFO shows rows in this order within their section. Gauges and state fields
/// (clients, subscriptions, link phases, `last_error`, degraded seconds) are written by hand.
public enum RelayCounterTable {
    public static let all: [CounterDefinition] = stats + protocolErrorsByReason + redis + postgres

    public static func infoLines(_ section: CounterDefinition.Section, _ counters: RelayCounters) -> [String] {
        all.lazy.filter { $0.section == section }.compactMap { $0.infoLine(counters) }
    }

    private static let inHelp = "Messages taken in for delivery, by source."
    private static let disconnectHelp = "Clients disconnected by the relay, by reason."
    private static let rejectedHelp = "Commands answered with an error, by reason."
    private static let acceptHelp = "accept(2) attempts on the relay socket refused (accepting pauses meanwhile), by reason."
    private static let reconnectHelp = "Upstream reconnects."
    private static let gapHelp = "Upstream outages survived (each logged with its duration); what other relays sent meanwhile was not delivered here."
    private static let gapSecondsHelp = "Seconds spent in upstream outages survived, summed (what other relays sent meanwhile was not delivered here)."

    private static let stats: [CounterDefinition] = [
        .count(.stats, "total_connections_received", "connections_total", "Client connections accepted.") { $0.stats.connectionsReceived },
        .count(.stats, "total_commands_processed", "commands_total", "Commands processed.") { $0.stats.commandsProcessed },
        .count(.stats, "messages_published", "messages_in_total", [("source", "local")], inHelp) { $0.stats.messagesPublished },
        .count(.stats, "messages_from_redis", "messages_in_total", [("source", "redis")], inHelp) { $0.stats.messagesFromRedis },
        .count(.stats, "messages_from_postgres", "messages_in_total", [("source", "postgres")], inHelp) { $0.stats.messagesFromPostgres },
        .count(.stats, "messages_delivered", "deliveries_total", "Frames handed to local subscribers.") { $0.stats.deliveries },
        .count(.stats, "unknown_commands", "commands_rejected_total", [("reason", "unknown_command")], rejectedHelp) { $0.stats.unknownCommands },
        .count(.stats, "rejected_commands", "commands_rejected_total", [("reason", "rejected")], rejectedHelp) { $0.stats.rejectedCommands },
        .count(.stats, "protocol_errors", "disconnects_total", [("reason", "protocol_error")], disconnectHelp) { $0.stats.totalProtocolErrors },
        .count(.stats, "dropped_frames", "dropped_total", [("reason", "client_closing")], "Frames not delivered, by reason.") { $0.stats.droppedFrames },
        .count(.stats, "slow_consumer_disconnects", "disconnects_total", [("reason", "slow_consumer")], disconnectHelp) { $0.stats.slowConsumerDisconnects },
        .count(.stats, "query_buffer_disconnects", "disconnects_total", [("reason", "query_buffer")], disconnectHelp) { $0.stats.queryBufferDisconnects },
        .count(.stats, "security_disconnects", "disconnects_total", [("reason", "security")], disconnectHelp) { $0.stats.securityDisconnects },
        .count(.stats, "accept_errors_fd_limit", "accept_errors_total", [("reason", "fd_limit")], acceptHelp) { $0.stats.acceptErrorsFDLimit },
        .count(.stats, "accept_errors_no_memory", "accept_errors_total", [("reason", "no_memory")], acceptHelp) { $0.stats.acceptErrorsNoMemory },
        .count(.stats, "auth_failures", "auth_failures_total",
               "AUTH and HELLO AUTH attempts refused with WRONGPASS (a wrong password or user).") { $0.stats.authFailures },
    ]

    /// One row per `ProtocolError.allReasons` (sorted, as INFO lists them), so each series exists
    /// at zero before its first error; INFO shows a reason only once it has happened.
    private static let protocolErrorsByReason: [CounterDefinition] = ProtocolError.allReasons.sorted().map { reason in
        .count(.stats, "protocol_errors_" + reason, "protocol_errors_total", [("reason", reason)],
               "Protocol errors (each closed its client), by reason.") { $0.stats.protocolErrors[reason] }
    }

    private static let redis: [CounterDefinition] = [
        .count(.redis, "redis_reconnects", "upstream_reconnects_total", [("upstream", "redis")], reconnectHelp) { $0.redis?.reconnects },
        .count(.redis, "redis_gaps", "upstream_gaps_total", [("upstream", "redis")], gapHelp) { $0.redis?.gaps },
        .seconds(.redis, "redis_gap_seconds_total", "upstream_gap_seconds_total", [("upstream", "redis")], gapSecondsHelp) { $0.redis?.gapSecondsTotal },
        .count(.redis, "redis_unconfirmed_publishes", "redis_unconfirmed_publishes_total",
               "PUBLISHes in flight when the Redis publisher connection dropped: answered 0 and not delivered locally.") { $0.redis?.unconfirmedPublishes },
        .count(.redis, "redis_refused_subscriptions", "redis_refused_subscriptions_total",
               "Upstream (P)SUBSCRIBEs Redis refused (e.g. NOPERM): the asking clients got Redis's error.") { $0.redis?.refusedSubscriptions },
        .count(.redis, "redis_reply_limit_disconnects", "redis_reply_limit_disconnects_total",
               "Redis connections dropped because a reply exceeded the relay's caps on elements or bulk size.") { $0.redis?.replyLimitDisconnects },
        .count(.redis, "redis_master_switches", "redis_master_switches_total",
               "Redis Sentinel failovers followed: the backplane moved to a new master.") { $0.redis?.masterSwitches },
        .count(.redis, "redis_held_publishes", "redis_held_publishes_total",
               "PUBLISHes that waited for this relay's (un)subscription in flight to the same channel or a matching pattern.") { $0.redis?.heldPublishes },
        .count(.redis, "redis_malformed_fleet_messages", "redis_malformed_fleet_messages_total",
               "Messages on the fleet channel that were not understood (another relay version?): ignored.") { $0.redis?.malformedFleetMessages },
        .count(.redis, "redis_cluster_refreshes", "redis_cluster_refreshes_total",
               "Redis Cluster slot maps received (CLUSTER SHARDS answers: at start, every 2 s, and on each sign of a change); 0 without a cluster.") { $0.redis?.clusterRefreshes },
        .count(.redis, "redis_cluster_redirects", "redis_cluster_redirects_total",
               "Redis Cluster PUBLISHes answered -MOVED and sent again to the slot's new master.") { $0.redis?.clusterRedirects },
        .count(.redis, "redis_cluster_slot_moves_pushed", "redis_cluster_slot_moves_pushed_total",
               "Redis Cluster sunsubscribe pushes for a slot that moved away from its master (each asks for the slot map).") { $0.redis?.clusterSlotMovesPushed },
        .count(.redis, "redis_cluster_resubscriptions", "redis_cluster_resubscriptions_total",
               "Redis Cluster subscriptions made again on a slot's new master after resharding or a failover.") { $0.redis?.clusterResubscriptions },
    ]

    private static let postgres: [CounterDefinition] = [
        .count(.postgres, "postgres_lease_changes", "leader_changes_total",
               "Times this relay took or gave up the Postgres leader lease.") { $0.postgres?.leaseChanges },
        .count(.postgres, "postgres_notifications_received", "postgres_notifications_received_total",
               "Postgres notifications received by this relay's listener.") { $0.postgres?.received },
        .count(.postgres, "postgres_notifications_published", "postgres_notifications_published_total",
               "Postgres notifications this relay published to the Redis backplane (as the leader).") { $0.postgres?.published },
        .count(.postgres, "postgres_notifications_delivered_locally", "postgres_notifications_delivered_locally_total",
               "Postgres notifications this relay delivered to its own subscribers directly (no backplane, or degraded).") { $0.postgres?.deliveredLocally },
        .count(.postgres, "postgres_notifications_lost_upstream", "postgres_notifications_lost_upstream_total",
               "Postgres notifications published to Redis whose answer never came (the connection dropped).") { $0.postgres?.lostUpstream },
        .count(.postgres, "postgres_notifications_dropped_as_standby", "postgres_notifications_dropped_as_standby_total",
               "Postgres notifications dropped because this relay was not (or no longer) the leader when they arrived.") { $0.postgres?.droppedAsStandby },
        .count(.postgres, "postgres_reconnects", "upstream_reconnects_total", [("upstream", "postgres")], reconnectHelp) { $0.postgres?.reconnects },
        .count(.postgres, "postgres_gaps", "upstream_gaps_total", [("upstream", "postgres")], gapHelp) { $0.postgres?.gaps },
        .seconds(.postgres, "postgres_gap_seconds_total", "upstream_gap_seconds_total", [("upstream", "postgres")], gapSecondsHelp) { $0.postgres?.gapSecondsTotal },
    ]
}
