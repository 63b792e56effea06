// The Redis Cluster scenarios: relays joined through a 3-master + 3-replica cluster.
//
// cluster_cpu: the same fixed load (many channels over every master, each published on one
// relay and subscribed on the others) with the relays in `sharded` mode (SSUBSCRIBE/SPUBLISH on
// the master owning the channel's slot) and then, fresh relays, in `classic` mode (PUBLISH,
// which the cluster bus broadcasts to every node): the cluster's CPU seconds per million
// delivered messages in each, and their ratio. With --only-redis (or --cluster-direct) the same
// clients talk to the cluster nodes themselves: what Redis gives without a relay.
//
// cluster_fanout: backplane_100 (publisher on relay A, 100 subscribers on relay B) with A and B
// on the cluster in sharded mode, against A and B on one standalone redis-server.

#if canImport(Glibc)
import Glibc
#endif

enum ClusterPubSubMode: String, CaseIterable {
    case classic, sharded
}

/// A cluster_cpu run: finished (valid or not), or why it could not run.
enum SpreadOutcome {
    case done(ChannelSpreadResult)
    case failed(String)
    case skipped(String)

    var valid: Bool {
        switch self {
        case .done(let r): return r.valid
        case .failed: return false
        case .skipped: return true
        }
    }
}

struct ClusterLoadShape {
    var channels: Int
    var messages: Int
    var relays = 3
    var readers: Int
    var window: Int
    var maxLag: Int
    var payloadLength: Int

    var messagesPerChannel: Int { max(1, messages / max(1, channels)) }
    /// One subscriber per channel on every relay but the channel's publishing one.
    var subscribersPerChannel: Int { relays - 1 }
}

/// Runs the cluster scenarios on one cluster it owns; relays are launched per run and stopped
/// after it.
final class ClusterBench {
    let ws: Workspace
    let cluster: BenchRedisCluster
    let shape: ClusterLoadShape
    /// Relays that did not stop cleanly, and other problems found after a run.
    private(set) var problems: [String] = []
    private var runs = 0
    private var relaysLaunched = 0

    init(ws: Workspace, cluster: BenchRedisCluster, shape: ClusterLoadShape) {
        self.ws = ws
        self.cluster = cluster
        self.shape = shape
    }

    /// `count` channel names, as many on each master (their slot's owner), fresh for each run
    /// so that nothing a previous run left subscribed upstream counts.
    func pickChannels(_ count: Int) -> [(name: String, master: Int)] {
        runs += 1
        let masters = cluster.masters
        let quota = count / masters.count + (count % masters.count == 0 ? 0 : 1)
        var perMaster: [Int: Int] = [:]
        var out: [(name: String, master: Int)] = []
        var k = 0
        while out.count < count {
            let name = "bench:cluster:\(runs):" + String(String(100_000 + k).dropFirst())
            k += 1
            let owner = cluster.master(forSlot: clusterHashSlot(name))
            if perMaster[owner, default: 0] < quota {
                perMaster[owner, default: 0] += 1
                out.append((name, owner))
            }
        }
        return out
    }

    /// `count` relays on the cluster in `mode`, each reporting `redis_topology:cluster` and
    /// `redis_state:up`; the ones already started are stopped if one fails.
    func launchRelays(_ count: Int, mode: ClusterPubSubMode, binary: String, label: String) throws -> [Server] {
        var relays: [Server] = []
        do {
            for _ in 0..<count {
                relaysLaunched += 1
                relays.append(try Server.launchRelay(in: ws, binary: binary, name: "\(label)-\(relaysLaunched)",
                                                     redisURL: cluster.redisURL,
                                                     extraEnv: ["RELAY_REDIS_CLUSTER_PUBSUB=\(mode.rawValue)"],
                                                     topology: "cluster"))
            }
        } catch {
            for r in relays { r.stop() }
            throw BenchError("relay \(relays.count + 1) of \(count) with REDIS_URL=redis-cluster://… and "
                + "RELAY_REDIS_CLUSTER_PUBSUB=\(mode.rawValue) did not join the cluster (does this pubsub-relay "
                + "support Redis Cluster?): \(error)")
        }
        return relays
    }

    func stopRelays(_ relays: [Server], during what: String) {
        for r in relays {
            if let how = r.stop(), how != "exited with status 0" {
                problems.append("\(r.name) (\(what)) did not stop cleanly on SIGTERM: \(how)")
            }
        }
    }

    /// cluster_cpu through `shape.relays` fresh relays in `mode`.
    func cpuThroughRelays(_ mode: ClusterPubSubMode, binary: String) -> SpreadOutcome {
        let relays: [Server]
        do { relays = try launchRelays(shape.relays, mode: mode, binary: binary, label: "cl-\(mode.rawValue)") } catch {
            return .failed("\(error)")
        }
        defer { stopRelays(relays, during: "cluster_cpu \(mode.rawValue)") }
        let picked = pickChannels(shape.channels)
        var channels: [SpreadChannel] = []
        var wanted = [Int](repeating: 0, count: relays.count)
        for (c, ch) in picked.enumerated() {
            let publisher = c % relays.count
            let subscribers = relays.indices.filter { $0 != publisher }
            for j in subscribers { wanted[j] += 1 }
            channels.append(SpreadChannel(name: ch.name, publisher: publisher,
                                          subscribers: subscribers.map { .unix(relays[$0].socketPath) }))
        }
        var o = options(channels, publishers: relays.map { .unix($0.socketPath) },
                        groups: [("redis", cluster.pids), ("relays", relays.map(\.pid))])
        // The relays answer PUBLISH with the fleet's receivers, as on a standalone backplane.
        o.expectedReceivers = shape.subscribersPerChannel
        o.beforePublishing = { try self.waitUpstream(relays, channels: wanted) }
        return run(o, relays: relays, what: "cluster_cpu \(mode.rawValue)")
    }

    /// cluster_cpu with the same clients straight on the cluster's masters: SSUBSCRIBE and
    /// SPUBLISH on the channel's master (`sharded`), or each relay's clients on one master with
    /// classic SUBSCRIBE/PUBLISH (`classic`).
    func cpuDirect(_ mode: ClusterPubSubMode) -> SpreadOutcome {
        let masters = cluster.masters
        let picked = pickChannels(shape.channels)
        var channels: [SpreadChannel] = []
        for (c, ch) in picked.enumerated() {
            let owner = cluster.nodes[ch.master].port
            switch mode {
            case .sharded:
                channels.append(SpreadChannel(name: ch.name, publisher: masters.firstIndex(of: ch.master)!,
                                              subscribers: Array(repeating: .tcp(owner), count: shape.subscribersPerChannel)))
            case .classic:
                // Virtual relay j is master j: the channel is published on one, subscribed on the others.
                let publisher = c % shape.relays
                let subscribers = (0..<shape.relays).filter { $0 != publisher }
                    .map { BenchEndpoint.tcp(cluster.nodes[masters[$0 % masters.count]].port) }
                channels.append(SpreadChannel(name: ch.name, publisher: publisher % masters.count, subscribers: subscribers))
            }
        }
        var o = options(channels, publishers: masters.map { .tcp(cluster.nodes[$0].port) },
                        groups: [("redis", cluster.pids)])
        if mode == .sharded {
            o.subscribeCommand = "SSUBSCRIBE"
            o.publishCommand = "SPUBLISH"
            o.messageKind = "smessage"
            o.expectedReceivers = shape.subscribersPerChannel   // all on the master that SPUBLISH reaches
        } else {
            o.expectedReceivers = 0   // a cluster PUBLISH counts the receivers of its own node only
        }
        return run(o, relays: [], what: "cluster_cpu direct \(mode.rawValue)")
    }

    private func options(_ channels: [SpreadChannel], publishers: [BenchEndpoint],
                         groups: [(name: String, pids: [pid_t])]) -> ChannelSpreadOptions {
        ChannelSpreadOptions(channels: channels, publishers: publishers, messagesPerChannel: shape.messagesPerChannel,
                             expectedReceivers: 0, readers: shape.readers, window: shape.window, maxLag: shape.maxLag,
                             payloadLength: shape.payloadLength, cpuGroups: groups)
    }

    private func run(_ o: ChannelSpreadOptions, relays: [Server], what: String) -> SpreadOutcome {
        var outcome: SpreadOutcome
        do { outcome = .done(try runChannelSpread(o)) } catch { outcome = .failed("\(error)") }
        let dead = cluster.deadNodes()
        if !dead.isEmpty { outcome = .failed("cluster node(s) died during \(what): \(dead.joined(separator: "; "))") }
        for r in relays where !r.checkAlive() {
            outcome = .failed("\(r.name) died during \(what): \(r.exitDescription ?? "gone")\(r.logTail())")
        }
        return outcome
    }

    /// Waits (at most 15 s) until each relay holds its subscribers' channels upstream with no
    /// confirmation outstanding: a PUBLISH before that could find no subscriber in the cluster.
    private func waitUpstream(_ relays: [Server], channels wanted: [Int]) throws {
        let deadline = monoNanos() + 15_000_000_000
        for (i, relay) in relays.enumerated() {
            while true {
                // A relay without these fields is not waited for: its PUBLISH replies and the
                // delivery counts still show what it did.
                let held = relay.info("redis_upstream_channels").flatMap { Int($0) } ?? wanted[i]
                let pending = relay.info("redis_pending_confirmations").flatMap { Int($0) } ?? 0
                if held >= wanted[i] && pending == 0 { break }
                if !relay.checkAlive() { throw BenchError("\(relay.name) exited\(relay.logTail())") }
                if monoNanos() > deadline {
                    throw BenchError("\(relay.name) holds \(held) of \(wanted[i]) channels upstream (\(pending) "
                        + "confirmations pending) 15 s after its clients subscribed\(relay.logTail())")
                }
                usleep(20_000)
            }
        }
        usleep(100_000)
    }
}

// MARK: - Progress lines and the cluster table

func clusterProgress(_ scenario: String, _ name: String, _ o: SpreadOutcome) {
    var line = "  \(pad(scenario, 13)) \(pad(name, 14)) "
    switch o {
    case .done(let r):
        line += "\(grouped(r.receivedDeliveries)) of \(grouped(r.expectedDeliveries)) delivered in \(fixed(r.seconds, 2)) s "
            + "(\(grouped(Int(r.deliveriesPerSecond)))/s), lost \(r.lost), Redis CPU "
            + (r.cpuSeconds["redis"].map { fixed($0, 2) + " s" } ?? "n/a")
            + (r.cpuPerMillion("redis").map { " = " + fixed($0, 2) + " s per M deliveries" } ?? "")
            + (r.cpuSeconds["relays"].map { ", relays CPU " + fixed($0, 2) + " s" } ?? "")
            + ", bench CPU \(fixed(r.benchCPUSeconds, 2)) s"
    case .skipped(let why): line += "skipped: \(why)"
    case .failed(let why): line += "FAILED: \(why)"
    }
    out(line)
    if case .done(let r) = o, let other = r.otherCPUSeconds, r.seconds > 0, other / r.seconds > 0.15 {
        out("WARNING: other processes used \(percent(other / r.seconds)) of a core during \(scenario) (\(name)); "
            + "CPU seconds hold up better than rates under contention, but rerun on a quiet machine.")
    }
}

/// Rows and RESULT lines of one cluster_cpu pair (classic first column, sharded second, ratio
/// sharded/classic).
func addClusterCPURows(_ report: Report, label: String, classic: SpreadOutcome?, sharded: SpreadOutcome?) {
    func res(_ o: SpreadOutcome?) -> ChannelSpreadResult? { if case .done(let r)? = o { return r } else { return nil } }
    func text(_ o: SpreadOutcome?) -> String {
        switch o {
        case .none: return "-"
        case .skipped?: return "skipped"
        case .failed?: return "FAILED"
        case .done?: return "?"
        }
    }
    let a = res(classic), b = res(sharded)
    func cell(_ r: ChannelSpreadResult?, _ o: SpreadOutcome?, _ f: (ChannelSpreadResult) -> String) -> String {
        r.map(f) ?? text(o)
    }
    let perA = a.flatMap { $0.valid ? $0.cpuPerMillion("redis") : Double.nan }
    let perB = b.flatMap { $0.valid ? $0.cpuPerMillion("redis") : Double.nan }
    report.row(label, "Redis CPU s per M deliv.", cell(a, classic) { $0.cpuPerMillion("redis").map { fixed($0, 3) } ?? "n/a" },
               cell(b, sharded) { $0.cpuPerMillion("redis").map { fixed($0, 3) } ?? "n/a" }, ratio: Report.ratio(perA, perB))
    report.row(label, "Redis CPU s (all nodes)", cell(a, classic) { $0.cpuSeconds["redis"].map { fixed($0, 2) } ?? "n/a" },
               cell(b, sharded) { $0.cpuSeconds["redis"].map { fixed($0, 2) } ?? "n/a" })
    if a?.cpuSeconds["relays"] != nil || b?.cpuSeconds["relays"] != nil {
        report.row(label, "relays CPU s", cell(a, classic) { $0.cpuSeconds["relays"].map { fixed($0, 2) } ?? "n/a" },
                   cell(b, sharded) { $0.cpuSeconds["relays"].map { fixed($0, 2) } ?? "n/a" })
    }
    report.row(label, "bench CPU s", cell(a, classic) { fixed($0.benchCPUSeconds, 2) }, cell(b, sharded) { fixed($0.benchCPUSeconds, 2) })
    report.row(label, "other processes CPU s", cell(a, classic) { $0.otherCPUSeconds.map { fixed($0, 2) } ?? "n/a" },
               cell(b, sharded) { $0.otherCPUSeconds.map { fixed($0, 2) } ?? "n/a" })
    report.row(label, "delivered (of expected)", cell(a, classic) { "\(grouped($0.receivedDeliveries)) of \(grouped($0.expectedDeliveries))" },
               cell(b, sharded) { "\(grouped($0.receivedDeliveries)) of \(grouped($0.expectedDeliveries))" })
    report.row(label, "seq/frame/reply errors", cell(a, classic) { "\($0.sequenceErrors)/\($0.frameErrors)/\($0.replyErrors)" },
               cell(b, sharded) { "\($0.sequenceErrors)/\($0.frameErrors)/\($0.replyErrors)" })
    report.row(label, "PUBLISH counts unexpected", cell(a, classic) { grouped($0.receiverCountMismatches) },
               cell(b, sharded) { grouped($0.receiverCountMismatches) })
    report.row(label, "seconds, deliveries/s", cell(a, classic) { "\(fixed($0.seconds, 2)), \(grouped(Int($0.deliveriesPerSecond)))" },
               cell(b, sharded) { "\(fixed($0.seconds, 2)), \(grouped(Int($0.deliveriesPerSecond)))" })
    let key = label.replacingSpaces
    report.result(key + "_redis_cpu_s_per_m", perA, perB)
    report.result(key + "_lost", a.map { Double($0.lost) }, b.map { Double($0.lost) }, ratio: false)
    report.result(key + "_seconds", a?.seconds, b?.seconds, ratio: false)
}

extension String {
    /// "cluster_cpu direct" → "cluster_cpu_direct" (RESULT names).
    var replacingSpaces: String { String(map { $0 == " " ? "_" : $0 }) }
}
