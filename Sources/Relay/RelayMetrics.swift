
import NIOConcurrencyHelpers
import Prometheus
import RelayCore

/// The relay's Prometheus metrics. The hot path keeps plain counters on its event loop
/// (`RelayStats`); a scrape copies them (`RelaySnapshot`) and this type turns the copy into
/// swift-prometheus counters (by delta, one per `RelayCounterTable` row) and gauges, so no atomic
/// is touched per message.
/// The registry also backs swift-metrics (`MetricsSystem`), so library metrics appear too.
public final class RelayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let clients: Prometheus.Gauge
    private let channelSubscriptions: Prometheus.Gauge
    private let patternSubscriptions: Prometheus.Gauge
    private let shardChannelSubscriptions: Prometheus.Gauge
    private let upstreamUpRedis: Prometheus.Gauge
    private let upstreamUpPostgres: Prometheus.Gauge
    private let leader: Prometheus.Gauge
    private let listeningUnix: Prometheus.Gauge
    private let listeningTCP: Prometheus.Gauge
    private let clusterMasters: Prometheus.Gauge
    private let clusterMastersConnected: Prometheus.Gauge
    private let clusterSlotMapVersion: Prometheus.Gauge
    /// One per `RelayCounterTable.all` row, in its order; all made at start, so every series is
    /// exported (at 0) before its first event.
    private let counters: [(definition: CounterDefinition, counter: Prometheus.Counter)]
    /// Time from handling a publish to handing the tick's batch to the kernel.
    let deliveryLatency: DurationHistogram
    /// The readings already exported, by table row, to turn snapshots into increments.
    private let exported: NIOLockedValueBox<[CounterDefinition.Value?]>

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let p = "pubsub_relay_"
        clients = registry.makeGauge(name: p + "clients", help: "Connected local clients.")
        channelSubscriptions = registry.makeGauge(name: p + "subscriptions", labels: [("kind", "channel")], help: "Client subscriptions by kind.")
        patternSubscriptions = registry.makeGauge(name: p + "subscriptions", labels: [("kind", "pattern")], help: "Client subscriptions by kind.")
        shardChannelSubscriptions = registry.makeGauge(name: p + "subscriptions", labels: [("kind", "shard")], help: "Client subscriptions by kind.")
        let upHelp = "1 when the upstream link is up (0 when down or not configured)."
        upstreamUpRedis = registry.makeGauge(name: p + "upstream_up", labels: [("upstream", "redis")], help: upHelp)
        upstreamUpPostgres = registry.makeGauge(name: p + "upstream_up", labels: [("upstream", "postgres")], help: upHelp)
        leader = registry.makeGauge(name: p + "leader", help: "1 while this relay holds the Postgres leader lease.")
        let listeningHelp = "1 while the listener accepts connections (the TCP one: 0 when RELAY_TCP_ADDR is off)."
        listeningUnix = registry.makeGauge(name: p + "listening", labels: [("listener", "unix")], help: listeningHelp)
        listeningTCP = registry.makeGauge(name: p + "listening", labels: [("listener", "tcp")], help: listeningHelp)
        clusterMasters = registry.makeGauge(name: p + "redis_cluster_masters", help: "Redis Cluster masters serving slots in the slot map (0 without a cluster).")
        clusterMastersConnected = registry.makeGauge(name: p + "redis_cluster_masters_connected",
                                                     help: "Redis Cluster masters whose two connections are up and resubscribed.")
        clusterSlotMapVersion = registry.makeGauge(name: p + "redis_cluster_slot_map_version",
                                                   help: "Slot maps whose routing (which master serves which slot, at which address) differed from the one before (1 after discovery).")
        counters = RelayCounterTable.all.map { d in
            (d, registry.makeCounter(name: d.metric, labels: d.labels.map { ($0.name, $0.value) }, help: d.help))
        }
        exported = NIOLockedValueBox(Array(repeating: nil, count: counters.count))
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
        shardChannelSubscriptions.set(Double(s.shardChannelSubscriptions))
        upstreamUpRedis.set(Double(s.redis?.forwarding == true ? 1 : 0))
        upstreamUpPostgres.set(Double(s.postgres?.listening == true ? 1 : 0))
        leader.set(Double(s.postgres?.leader == true ? 1 : 0))
        listeningUnix.set(Double(s.isServing ? 1 : 0))
        listeningTCP.set(Double(s.isServing && s.tcp != nil ? 1 : 0))
        clusterMasters.set(Double(s.redis?.cluster?.masters ?? 0))
        clusterMastersConnected.set(Double(s.redis?.cluster?.mastersConnected ?? 0))
        clusterSlotMapVersion.set(Double(s.redis?.cluster?.slotMapVersion ?? 0))
        exported.withLockedValue { seen in
            for (i, row) in counters.enumerated() {
                guard let value = row.definition.read(s.counters) else { continue }
                switch (value, seen[i]) {
                case (.count(let n), .count(let before)?):
                    if n > before { row.counter.increment(by: Int64(n - before)) }
                case (.count(let n), _):
                    if n > 0 { row.counter.increment(by: Int64(n)) }
                case (.seconds(let x), .seconds(let before)?):
                    if x > before { row.counter.increment(by: x - before) }
                case (.seconds(let x), _):
                    if x > 0 { row.counter.increment(by: x) }
                }
                seen[i] = value
            }
        }
        return registry.emitToBuffer()
    }
}
