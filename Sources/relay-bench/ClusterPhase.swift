// The cluster phase of a relay-bench run: after the other scenarios, start the Redis Cluster,
// run the selected cluster scenarios on it, stop it, and hand back their tables and failures.

#if canImport(Glibc)
import Glibc
#endif

extension RelayBench {
    /// Starts the cluster, runs the selected cluster scenarios, stops it; returns their tables
    /// (with RESULT lines) and what failed.
    func runClusterScenarios(_ scenarios: [Scenario], in ws: Workspace, standaloneFleet: Server?,
                             measureSeconds: Double, warmupSeconds: Double, fileLimit: Int) -> ([Report], [String]) {
        var failures: [String] = []
        let cpuReport = Report(columns: (first: "classic", second: "sharded", ratio: "sharded/classic"))
        let fanReport = Report(columns: (first: "standalone", second: "cluster", ratio: "cluster/standalone"))
        let shape = ClusterLoadShape(channels: clusterChannels, messages: clusterMessages ?? (quick ? 30_000 : 600_000),
                                     readers: readers, window: window, maxLag: maxLag ?? 8_192, payloadLength: payload)
        let started = monoNanos()
        let cluster: BenchRedisCluster
        do {
            cluster = try BenchRedisCluster(in: ws, serverBinary: redisServer, cliBinary: redisCli)
        } catch {
            for sc in scenarios {
                clusterProgress(sc.rawValue, "cluster", .failed("\(error)"))
                failures.append("\(sc.rawValue): \(error)")
            }
            return ([], failures)
        }
        let idle0 = (cluster.cpuNanos(), monoNanos())
        usleep(1_000_000)
        let idleCPU = zip2(cluster.cpuNanos(), idle0.0).map { Double($0 - $1) / Double(monoNanos() - idle0.1) }
        out("  redis cluster: \(cluster.masters.count) masters + \(cluster.nodes.count - cluster.masters.count) replicas on "
            + cluster.nodes.map { "127.0.0.1:\($0.port)\($0.isMaster ? "" : " (replica)")" }.joined(separator: ", ")
            + ", ready in \(fixed(Double(monoNanos() - started) / 1e9 - 1, 1)) s; idle CPU \(percent(idleCPU)) of a core (all nodes)")
        let bench = ClusterBench(ws: ws, cluster: cluster, shape: shape)
        let relayBinary = relay ?? defaultRelayBinary()

        if scenarios.contains(.cluster_cpu) {
            let needed = shape.channels * shape.subscribersPerChannel + 64
            out("  cluster_cpu: \(shape.channels) channels (as many on each master), \(grouped(shape.messagesPerChannel * shape.channels)) "
                + "messages, each channel published on one of \(shape.relays) relays and subscribed once on each of the others "
                + "(\(grouped(shape.messagesPerChannel * shape.channels * shape.subscribersPerChannel)) deliveries)")
            var pairs: [(label: String, classic: SpreadOutcome, sharded: SpreadOutcome)] = []
            if fileLimit < needed {
                let o = SpreadOutcome.skipped("needs \(needed) file descriptors, limit is \(fileLimit)")
                clusterProgress("cluster_cpu", "both", o)
                pairs.append(("cluster_cpu", o, o))
            } else {
                if !onlyRedis {
                    var got: [ClusterPubSubMode: SpreadOutcome] = [:]
                    for mode in [ClusterPubSubMode.sharded, .classic] {
                        got[mode] = bench.cpuThroughRelays(mode, binary: relayBinary)
                        clusterProgress("cluster_cpu", mode.rawValue, got[mode]!)
                    }
                    pairs.append(("cluster_cpu", got[.classic]!, got[.sharded]!))
                }
                if onlyRedis || clusterDirect {
                    var got: [ClusterPubSubMode: SpreadOutcome] = [:]
                    for mode in [ClusterPubSubMode.sharded, .classic] {
                        got[mode] = bench.cpuDirect(mode)
                        clusterProgress("cluster_cpu", "direct " + mode.rawValue, got[mode]!)
                    }
                    pairs.append(("cluster_cpu direct", got[.classic]!, got[.sharded]!))
                }
            }
            for p in pairs {
                addClusterCPURows(cpuReport, label: p.label, classic: p.classic, sharded: p.sharded)
                for (mode, o) in [("classic", p.classic), ("sharded", p.sharded)] {
                    switch o {
                    case .failed(let why): failures.append("\(p.label) \(mode): \(why)")
                    case .done(let r) where !r.valid:
                        failures.append("\(p.label) \(mode): INVALID — lost \(r.lost) (\(r.subscribersShort) subscribers short), "
                            + "sequence errors \(r.sequenceErrors), frame errors \(r.frameErrors), reply errors \(r.replyErrors)"
                            + (r.firstErrorReply.isEmpty ? "" : " (first: \(r.firstErrorReply))")
                            + ", disconnected \(r.disconnected) \(r.notes.joined(separator: "; "))")
                    default: break
                    }
                }
                cpuReport.results.append(ResultLine(name: p.label.replacingSpaces + "_valid", redis: p.classic.valid ? 1 : 0,
                                                    relay: p.sharded.valid ? 1 : 0, withRatio: false,
                                                    labels: ("classic", "sharded")))
            }
        }

        if scenarios.contains(.cluster_fanout) {
            var runs: [String: [Outcome]] = [:]
            if onlyRedis {
                runs["cluster"] = [.skipped("needs relays (not run with --only-redis)")]
                runs["standalone"] = runs["cluster"]
                progress(.cluster_fanout, "both", runs["cluster"]![0])
            } else if fileLimit < 164 {
                runs["cluster"] = [.skipped("needs 164 file descriptors, limit is \(fileLimit)")]
                runs["standalone"] = runs["cluster"]
            } else {
                var clusterFleet: Server? = nil
                var relays: [Server] = []
                var setupError: String? = nil
                do {
                    relays = try bench.launchRelays(2, mode: .sharded, binary: relayBinary, label: "cl-fanout")
                    clusterFleet = relays[1].publishing(through: relays[0], name: "cluster")
                } catch {
                    setupError = "\(error)"
                }
                let o = FanoutOptions(subscribers: 100, pattern: false, seconds: measureSeconds, warmup: warmupSeconds,
                                      readers: readers, window: window, maxLag: maxLag, payloadLength: payload)
                for rep in 0..<repeatCount {
                    for (side, server) in [("standalone", standaloneFleet), ("cluster", clusterFleet)] {
                        var outcome: Outcome
                        if let server {
                            do { outcome = .fanout(try runFanout(server: server, options: o)) } catch { outcome = .failed("\(error)") }
                        } else {
                            outcome = .failed(side == "cluster" ? (setupError ?? "no relays") : "no standalone relay fleet")
                        }
                        let dead = cluster.deadNodes()
                        if side == "cluster" && !dead.isEmpty { outcome = .failed("cluster node(s) died: \(dead.joined(separator: "; "))") }
                        for r in relays where side == "cluster" && !r.checkAlive() {
                            outcome = .failed("\(r.name) died during cluster_fanout: \(r.exitDescription ?? "gone")\(r.logTail())")
                        }
                        runs[side, default: []].append(outcome)
                        progress(.cluster_fanout, side + (repeatCount > 1 ? " #\(rep + 1)" : ""), outcome)
                    }
                }
                bench.stopRelays(relays, during: "cluster_fanout")
            }
            let a = medianOutcome(runs["standalone"] ?? []), b = medianOutcome(runs["cluster"] ?? [])
            addRows(fanReport, .cluster_fanout, a, b)
            for (side, o) in [("standalone", a), ("cluster", b)] {
                switch o {
                case .failed(let why): failures.append("cluster_fanout \(side): \(why)")
                case .fanout(let r) where !r.valid:
                    failures.append("cluster_fanout \(side): INVALID — lost \(r.lost), sequence errors \(r.sequenceErrors), "
                        + "frame errors \(r.frameErrors), reply errors \(r.replyErrors), disconnected \(r.disconnected) "
                        + r.notes.joined(separator: "; "))
                default: break
                }
            }
        }
        failures += bench.problems
        failures += cluster.stop()
        out("  redis cluster: stopped; cluster phase took \(fixed(Double(monoNanos() - started) / 1e9, 1)) s")
        return ([cpuReport, fanReport].filter { !$0.rows.isEmpty }, failures)
    }
}

private func zip2(_ a: UInt64?, _ b: UInt64?) -> (UInt64, UInt64)? {
    guard let a, let b else { return nil }
    return (a, b)
}
