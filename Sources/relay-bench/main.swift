// relay-bench: the same pub/sub load, with the same client code, against a redis-server and
// against pubsub-relay, in one run; prints both, their ratio, and whether the client or the
// server was the bottleneck (CPU of each).

import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

enum Scenario: String, CaseIterable {
    case fanout_100, fanout_1000, pattern_1000, latency, backplane_100, backplane_latency,
         pg_notify_1, pg_notify_4x100, pg_latency, idle, cluster_cpu, cluster_fanout

    /// Postgres scenarios: NOTIFY → a subscriber on a relay (the leader relay LISTENs and
    /// publishes to Redis, the other relay delivers) against a direct LISTEN client.
    var isPostgres: Bool { self == .pg_notify_1 || self == .pg_notify_4x100 || self == .pg_latency }

    /// Backplane scenarios: the relay side is a fleet — publisher on relay A, subscribers on
    /// relay B, both joined through the same redis-server — against the same clients directly
    /// on that redis-server.
    var isBackplane: Bool { self == .backplane_100 || self == .backplane_latency }

    /// Redis Cluster scenarios: they start a cluster of their own and run after the others,
    /// only when named in --scenarios.
    var isCluster: Bool { self == .cluster_cpu || self == .cluster_fanout }

    static let defaultSelection = allCases.filter { !$0.isCluster }.map(\.rawValue).joined(separator: ",")

    /// Execution order: the idle-memory scenario runs first, on servers that have not yet
    /// grown (and kept) heap during the load scenarios, so the RSS delta per client is honest.
    var executionRank: Int { self == .idle ? 0 : 1 + (Scenario.allCases.firstIndex(of: self) ?? 0) }

    var title: String {
        switch self {
        case .fanout_100: return "1 pub -> 1 channel -> 100 subscribers"
        case .fanout_1000: return "1 pub -> 1 channel -> 1000 subscribers"
        case .pattern_1000: return "1 pub -> 1 channel -> 1000 pattern subscribers"
        case .latency: return "fixed-rate latency, 1 pub -> 1 subscriber"
        case .backplane_100: return "backplane: pub on relay A -> redis -> 100 subscribers on relay B"
        case .backplane_latency: return "backplane latency: relay A -> redis -> relay B, 1 -> 1"
        case .pg_notify_1: return "NOTIFY -> subscriber, 1 notifier, 1 per transaction"
        case .pg_notify_4x100: return "NOTIFY -> subscriber, 4 notifiers, 100 per transaction"
        case .pg_latency: return "NOTIFY -> subscriber latency at 1000/s"
        case .idle: return "idle-client memory"
        case .cluster_cpu: return "Redis Cluster CPU per delivered message, sharded vs classic relays"
        case .cluster_fanout: return "backplane fan-out through a Redis Cluster vs one redis-server"
        }
    }
}

struct RelayBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-bench",
        abstract: "Benchmark pubsub-relay against redis-server with the same pub/sub client.",
        discussion: """
            Starts a redis-server and a pubsub-relay on temporary Unix sockets (or uses running \
            ones with --redis-socket / --relay-socket), runs each scenario against both and prints \
            deliveries/s, latency percentiles, CPU of the bench and of each server, and memory. \
            Scenarios: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")) \
            (cluster_cpu and cluster_fanout start a Redis Cluster and run only when named). \
            Exit status: 0 valid run, 1 a scenario lost messages or failed, 2 setup error.
            """)

    @Option(help: "Measured seconds per fan-out/latency scenario (after the warm-up).")
    var seconds: Double?

    @Option(help: "Warm-up seconds before each measurement.")
    var warmup: Double?

    @Option(help: "Comma-separated scenarios to run.")
    var scenarios: String = Scenario.defaultSelection

    @Flag(help: "Short durations (CI smoke run).")
    var quick = false

    @Option(help: "pubsub-relay binary to launch (default: pubsub-relay next to this executable).")
    var relay: String?

    @Option(help: "Use an already-running Redis on this Unix socket instead of launching one.")
    var redisSocket: String?

    @Option(help: "Use an already-running relay on this Unix socket instead of launching one.")
    var relaySocket: String?

    @Option(help: "redis-server binary to launch.")
    var redisServer: String = "redis-server"

    @Flag(help: "Benchmark Redis only (debugging the bench itself).")
    var onlyRedis = false

    @Option(name: .customLong("repeat"),
            help: "Runs per scenario and server (alternating); the table shows the median run, losses are summed over all runs.")
    var repeatCount: Int = 1

    @Option(help: "Subscriber reader threads (epoll) for fan-out.")
    var readers: Int = 1

    @Option(help: "Fan-out: maximum outstanding PUBLISH replies.")
    var window: Int = 512

    @Option(help: "Fan-out: maximum messages the publisher may run ahead of the subscribers (default: max(64, 131072/subscribers)).")
    var maxLag: Int?

    @Option(help: "Latency scenario: messages per second.")
    var rate: Double = 10_000

    @Option(help: "Directory of the PostgreSQL server binaries (postgres, initdb) for the pg_* scenarios.")
    var postgresBin: String = "/usr/lib/postgresql/15/bin"

    @Option(help: "Idle-memory scenario: number of idle connections.")
    var idleClients: Int = 10_000

    @Option(help: "Payload bytes per message (>= 16).")
    var payload: Int = 64

    @Option(help: "redis-cli binary (creates the Redis Cluster of the cluster_* scenarios).")
    var redisCli: String = "redis-cli"

    @Option(help: "cluster_cpu: messages per run, spread evenly over the channels (default 600000; 30000 with --quick).")
    var clusterMessages: Int?

    @Option(help: "cluster_cpu: channels, as many on each master.")
    var clusterChannels: Int = 300

    @Flag(help: "cluster_cpu: also run the load with the clients straight on the cluster nodes (what --only-redis runs).")
    var clusterDirect = false

    mutating func validate() throws {
        if payload < 16 { throw ValidationError("--payload must be at least 16") }
        if let s = seconds, !(s > 0 && s <= 600) { throw ValidationError("--seconds must be in (0, 600]") }
        if let w = warmup, !(w >= 0 && w <= 60) { throw ValidationError("--warmup must be in [0, 60]") }
        if !(rate > 0 && rate <= 1_000_000) { throw ValidationError("--rate must be in (0, 1000000]") }
        if repeatCount < 1 || repeatCount > 20 { throw ValidationError("--repeat must be 1...20") }
        if readers < 1 || readers > 4 { throw ValidationError("--readers must be 1...4") }
        if window < 1 || window > 65_536 { throw ValidationError("--window must be 1...65536") }
        if idleClients < 1 || idleClients > 100_000 { throw ValidationError("--idle-clients must be 1...100000") }
        if let m = clusterMessages, m < 1 || m > 100_000_000 { throw ValidationError("--cluster-messages must be 1...100000000") }
        if clusterChannels < 3 || clusterChannels > 10_000 { throw ValidationError("--cluster-channels must be 3...10000") }
        for name in scenarios.split(separator: ",") where Scenario(rawValue: name.trimmingSpaces) == nil {
            throw ValidationError("unknown scenario '\(name)'; known: \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        installEmergencyCleanup()
        let fileLimit = raiseFileLimit()
        let measureSeconds = seconds ?? (quick ? 0.5 : 3)
        let warmupSeconds = warmup ?? (quick ? 0.2 : 0.5)
        let latencySeconds = seconds ?? (quick ? 1 : 3)
        var selected: [Scenario] = []
        for name in scenarios.split(separator: ",") {
            if let sc = Scenario(rawValue: name.trimmingSpaces), !selected.contains(sc) { selected.append(sc) }
        }

        var workspace: Workspace? = nil
        var servers: [Server] = []
        var fleetMembers: [Server] = []
        var fleet: Server? = nil
        var postgres: BenchPostgres? = nil
        var pgSetupError: String? = nil
        var pgSubscriberSocket: String? = nil
        var pgRelays: [Server] = []
        defer {
            for s in servers + fleetMembers { s.stop() }
            postgres?.stop()
            workspace?.remove()
        }
        do {
            let ws = try Workspace()
            workspace = ws
            if let p = redisSocket {
                servers.append(try Server.attach(name: "redis", socketPath: p))
            } else {
                servers.append(try Server.launchRedis(in: ws, binary: redisServer,
                                                      maxClients: max(10_000, idleClients + 1_000)))
            }
            if !onlyRedis {
                if let p = relaySocket {
                    servers.append(try Server.attach(name: "relay", socketPath: p))
                } else {
                    servers.append(try Server.launchRelay(in: ws, binary: relay ?? defaultRelayBinary()))
                }
                if selected.contains(where: \.isBackplane) || selected.contains(.cluster_fanout) {
                    let binary = relay ?? defaultRelayBinary()
                    let url = "unix://" + servers[0].socketPath
                    let a = try Server.launchRelay(in: ws, binary: binary, name: "relay-a", redisURL: url)
                    let b = try Server.launchRelay(in: ws, binary: binary, name: "relay-b", redisURL: url)
                    fleetMembers = [a, b]
                    fleet = b.publishing(through: a, name: "relay")
                }
                if selected.contains(where: \.isPostgres) {
                    do {
                        let pg = try BenchPostgres(binDir: postgresBin)
                        postgres = pg
                        let binary = relay ?? defaultRelayBinary()
                        let env = ["DATABASE_URL=\(pg.conninfo)", "RELAY_PG_CHANNELS=\(benchChannels)", "RELAY_LEADER_TTL=1s"]
                        let url = "unix://" + servers[0].socketPath
                        let a = try Server.launchRelay(in: ws, binary: binary, name: "pg-a", redisURL: url, extraEnv: env)
                        let b = try Server.launchRelay(in: ws, binary: binary, name: "pg-b", redisURL: url, extraEnv: env)
                        fleetMembers += [a, b]
                        pgRelays = [a, b]
                        pgSubscriberSocket = try waitForLeader(a, b).socketPath
                    } catch {
                        pgSetupError = "\(error)"
                    }
                }
            }
        } catch {
            printError("relay-bench: \(error)")
            throw ExitCode(2)
        }

        var cpus = 0
        if let text = readSmallFile("/proc/cpuinfo") {
            cpus = text.split(separator: "\n").filter { $0.hasPrefix("processor") }.count
        }
        out("relay-bench — pubsub-relay vs redis-server, same client code")
        out("  cpus: \(cpus)   measured: \(fixed(measureSeconds, 1)) s per fan-out scenario after "
            + "\(fixed(warmupSeconds, 1)) s warm-up; latency \(fixed(latencySeconds, 1)) s at "
            + "\(grouped(Int(rate))) msg/s; payload \(payload) B; readers \(readers)"
            + (repeatCount > 1 ? "; \(repeatCount) runs each, median shown" : ""))
        for s in servers {
            let how = s.launched ? "launched" : "attached"
            var desc = "  \(s.name): \(how), socket \(s.socketPath), pid \(s.pid)"
            if s.name == "redis", let v = s.info("redis_version") { desc += ", redis_version \(v)" }
            out(desc)
        }
        if onlyRedis { out("  relay: not run (--only-redis)") }
        out("")

        let redis = servers[0]
        let relayServer: Server? = servers.count > 1 ? servers[1] : nil
        let report = Report()

        // Idle footprint of both servers, before any load.
        let idleRSS = (redis.rssKiB, relayServer?.rssKiB)

        var outcomes: [Scenario: [String: Outcome]] = [:]
        var validByServer: [String: Bool] = [:]
        for scenario in selected.sorted(by: { $0.executionRank < $1.executionRank }) where !scenario.isCluster {
            outcomes[scenario] = [:]
            // Repeats alternate redis/relay so slow drifts in machine load hit both alike.
            let reps = scenario == .idle ? 1 : repeatCount
            var runs: [String: [Outcome]] = [:]
            for rep in 0..<reps {
                for listed in servers {
                    // Backplane scenarios measure the fleet where the local relay would be.
                    let server = scenario.isBackplane && listed.name == "relay" ? (fleet ?? listed) : listed
                    var outcome: Outcome
                    if !server.checkAlive() {
                        outcome = .failed("\(server.name) is not running (\(server.exitDescription ?? "gone"))")
                    } else {
                        if scenario.isPostgres {
                            if listed.name != "redis" { waitUntilIdle(pgRelays) }
                            outcome = runPostgresScenario(scenario, direct: listed.name == "redis", postgres: postgres,
                                                          subscriberSocket: pgSubscriberSocket, setupError: pgSetupError,
                                                          seconds: measureSeconds)
                        } else {
                            outcome = runScenario(scenario, on: server, measureSeconds: measureSeconds,
                                                  warmupSeconds: warmupSeconds, latencySeconds: latencySeconds,
                                                  fileLimit: fileLimit)
                        }
                    }
                    if server.launched && !server.checkAlive() {
                        outcome = .failed("\(server.name) died during \(scenario.rawValue): "
                            + "\(server.exitDescription ?? "gone")\(server.logTail())")
                    }
                    runs[server.name, default: []].append(outcome)
                    progress(scenario, server.name + (reps > 1 ? " #\(rep + 1)" : ""), outcome)
                }
            }
            for server in servers {
                let chosen = medianOutcome(runs[server.name] ?? [], byLatency: scenario == .pg_latency)
                outcomes[scenario]![server.name] = chosen
                validByServer[server.name] = (validByServer[server.name] ?? true) && chosen.valid
            }
        }
        var clusterReports: [Report] = []
        var clusterFailures: [String] = []
        if selected.contains(where: \.isCluster), let ws = workspace {
            (clusterReports, clusterFailures) = runClusterScenarios(selected.filter(\.isCluster), in: ws, standaloneFleet: fleet,
                                                                    measureSeconds: measureSeconds,
                                                                    warmupSeconds: warmupSeconds, fileLimit: fileLimit)
        }
        out("")

        // --- table ---------------------------------------------------------------------------
        report.row("idle footprint", "server RSS at start", kib(idleRSS.0), kib(idleRSS.1),
                   ratio: Report.ratio(idleRSS.0.map(Double.init), idleRSS.1.map(Double.init)))
        report.result("rss_idle_kib", idleRSS.0.map(Double.init), idleRSS.1.map(Double.init))
        for scenario in selected where !scenario.isCluster {
            addRows(report, scenario, outcomes[scenario]?["redis"], outcomes[scenario]?["relay"])
        }
        // A run of cluster scenarios only has nothing for this table but the idle footprint.
        if selected.contains(where: { !$0.isCluster }) {
            report.printTable()
            out("")
            out("CPU figures are % of one core (bench = this whole process: publisher + readers; "
                + "server from /proc/PID/stat). A server near 100% with the bench below it means the "
                + "server was the bottleneck.")
        }
        for scenario in selected {
            for name in ["redis", "relay"] {
                var other: Double? = nil
                switch outcomes[scenario]?[name] {
                case .fanout(let r)?: other = r.otherCPU
                case .latency(let r)?: other = r.otherCPU
                default: break
                }
                // In a backplane run the relay side's "other" processes are relay A and Redis
                // themselves: part of the measured path, not a disturbance.
                if scenario.isBackplane && name == "relay" { continue }
                if let o = other, o > 0.15 {
                    out("WARNING: other processes used \(percent(o)) of a core during \(scenario.rawValue) "
                        + "(\(name)); that run's figures are disturbed — rerun on a quiet machine.")
                }
            }
        }
        if selected.contains(where: { !$0.isCluster }) { out("") }
        for r in clusterReports {
            r.printTable()
            out("")
        }
        report.result("valid", validByServer["redis"].map { $0 ? 1 : 0 }, validByServer["relay"].map { $0 ? 1 : 0 },
                      ratio: false)
        report.printResults()
        for r in clusterReports { r.printResults() }

        if let r = relayServer, r.launched, let log = r.logPath, let text = readSmallFile(log), !text.isEmpty {
            let lines = text.split(separator: "\n")
            out("")
            out("relay log (\(lines.count) lines at RELAY_LOG_LEVEL=warning; last 10):")
            for l in lines.suffix(10) { out("  " + l) }
        }

        var failures: [String] = clusterFailures
        for scenario in selected {
            for (name, o) in outcomes[scenario] ?? [:] {
                switch o {
                case .failed(let why): failures.append("\(scenario.rawValue) \(name): \(why)")
                case .fanout(let r) where !r.valid:
                    failures.append("\(scenario.rawValue) \(name): INVALID — lost \(r.lost), sequence errors "
                        + "\(r.sequenceErrors), frame errors \(r.frameErrors), reply errors \(r.replyErrors), "
                        + "disconnected \(r.disconnected) \(r.notes.joined(separator: "; "))")
                case .latency(let r) where !r.valid:
                    failures.append("\(scenario.rawValue) \(name): INVALID — lost \(r.lost), sequence errors "
                        + "\(r.sequenceErrors), frame errors \(r.frameErrors), reply errors \(r.replyErrors)")
                default: break
                }
            }
        }
        for s in servers {
            if let how = s.stop(), how != "exited with status 0" {
                failures.append("\(s.name) did not stop cleanly on SIGTERM: \(how)")
            }
        }
        if !failures.isEmpty {
            out("")
            for f in failures { out("FAILED: \(f)") }
            throw ExitCode(1)
        }
    }

    private func runScenario(_ scenario: Scenario, on server: Server, measureSeconds: Double,
                             warmupSeconds: Double, latencySeconds: Double, fileLimit: Int) -> Outcome {
        do {
            switch scenario {
            case .fanout_100, .fanout_1000, .pattern_1000, .backplane_100:
                let n = scenario == .fanout_100 || scenario == .backplane_100 ? 100 : 1000
                if fileLimit < n + 64 {
                    return .skipped("needs \(n + 64) file descriptors, limit is \(fileLimit)")
                }
                let o = FanoutOptions(subscribers: n, pattern: scenario == .pattern_1000, seconds: measureSeconds,
                                      warmup: warmupSeconds, readers: readers, window: window, maxLag: maxLag,
                                      payloadLength: payload)
                return .fanout(try runFanout(server: server, options: o))
            case .latency, .backplane_latency:
                let o = LatencyOptions(rate: rate, seconds: latencySeconds, warmup: warmupSeconds,
                                       payloadLength: payload)
                return .latency(try runLatency(server: server, options: o))
            case .pg_notify_1, .pg_notify_4x100, .pg_latency:
                preconditionFailure("pg_* scenarios run through runPostgresScenario")
            case .cluster_cpu, .cluster_fanout:
                preconditionFailure("cluster scenarios run through runClusterScenarios")
            case .idle:
                if fileLimit < idleClients + 64 {
                    return .skipped("needs \(idleClients + 64) file descriptors, RLIMIT_NOFILE hard limit is \(fileLimit)")
                }
                if server.pid <= 0 { return .skipped("server PID unknown") }
                return .idle(try runIdle(server: server, clients: idleClients))
            }
        } catch {
            return .failed("\(error)")
        }
    }

    /// The "redis" column of a pg_* scenario is a direct LISTEN client; the "relay" column a
    /// subscriber on the relay that is not the leader (NOTIFY → leader → Redis → that relay).
    private func runPostgresScenario(_ scenario: Scenario, direct: Bool, postgres: BenchPostgres?, subscriberSocket: String?,
                                     setupError: String?, seconds: Double) -> Outcome {
        guard let postgres else { return .skipped(setupError ?? "no PostgreSQL") }
        if !direct && subscriberSocket == nil { return .skipped(setupError ?? "no relay fleet") }
        let o: PgOptions
        switch scenario {
        case .pg_notify_1: o = PgOptions(notifiers: 1, perTransaction: 1, rate: nil, seconds: seconds)
        case .pg_notify_4x100: o = PgOptions(notifiers: 4, perTransaction: 100, rate: nil, seconds: seconds)
        default: o = PgOptions(notifiers: 1, perTransaction: 1, rate: 1000, seconds: max(seconds, 2))
        }
        do {
            return .pg(try runPostgres(conninfo: postgres.conninfo, relaySocket: direct ? nil : subscriberSocket,
                                       options: o, serverPID: postgres.pid))
        } catch {
            return .failed("\(error)")
        }
    }

    /// Waits (at most 30 s) until the relays' Postgres counters stop moving: a leader still
    /// draining an earlier run's backlog would load the machine during the next measurement.
    private func waitUntilIdle(_ relays: [Server]) {
        let deadline = monoNanos() + 30_000_000_000
        var last: [String?] = relays.map { $0.info("postgres_notifications_received") }
        while monoNanos() < deadline {
            usleep(300_000)
            let now = relays.map { $0.info("postgres_notifications_received") }
            if now == last { return }
            last = now
        }
    }

    /// The relay of the two that is not the Postgres leader, once one leads.
    private func waitForLeader(_ a: Server, _ b: Server) throws -> Server {
        let deadline = monoNanos() + 15_000_000_000
        while monoNanos() < deadline {
            if a.info("postgres_leader") == "1" && b.info("postgres_listening") == "0" { return b }
            if b.info("postgres_leader") == "1" && a.info("postgres_listening") == "0" { return a }
            usleep(50_000)
        }
        throw BenchError("no relay became the Postgres leader within 15 s\(a.logTail())\(b.logTail())")
    }

    func progress(_ scenario: Scenario, _ name: String, _ o: Outcome) {
        var line = "  \(pad(scenario.rawValue, 13)) \(pad(name, 9)) "
        switch o {
        case .fanout(let r):
            line += "\(grouped(Int(r.deliveriesPerSecond))) deliveries/s, lost \(r.lost), "
                + "bench CPU \(percent(r.benchCPU)), server CPU \(percent(r.serverCPU)), "
                + "other CPU \(percent(r.otherCPU))"
        case .latency(let r):
            line += "p50 \(fixed(r.p50, 1)) µs, p99 \(fixed(r.p99, 1)) µs, p99.9 \(fixed(r.p999, 1)) µs, "
                + "\(r.samples) samples, lost \(r.lost), other CPU \(percent(r.otherCPU))"
        case .idle(let r):
            line += "\(r.clients) idle clients: RSS \(grouped(r.rssBeforeKiB)) -> \(grouped(r.rssAfterKiB)) KiB, "
                + "\(fixed(r.kibPerClient, 2)) KiB/client"
        case .pg(let r):
            line += "\(grouped(Int(r.notificationsPerSecond))) notifications/s, \(r.received) of \(r.sent), "
                + "order/dup errors \(r.orderErrors)/\(r.duplicates)"
                + (r.samples > 0 ? ", p50 \(fixed(r.p50, 1)) µs, p99 \(fixed(r.p99, 1)) µs" : "")
        case .skipped(let why): line += "skipped: \(why)"
        case .failed(let why): line += "FAILED: \(why)"
        }
        out(line)
    }

    func addRows(_ report: Report, _ scenario: Scenario, _ a: Outcome?, _ b: Outcome?) {
        let name = scenario.rawValue
        func text(_ o: Outcome?) -> String {
            switch o {
            case .none: return "-"
            case .skipped: return "skipped"
            case .failed: return "FAILED"
            default: return "?"
            }
        }
        switch scenario {
        case .cluster_cpu:
            break   // addClusterCPURows
        case .fanout_100, .fanout_1000, .pattern_1000, .backplane_100, .cluster_fanout:
            var ra: FanoutResult? = nil, rb: FanoutResult? = nil
            if case .fanout(let r)? = a { ra = r }
            if case .fanout(let r)? = b { rb = r }
            func cell(_ r: FanoutResult?, _ o: Outcome?, _ f: (FanoutResult) -> String) -> String {
                r.map(f) ?? text(o)
            }
            let da = ra.map { $0.valid ? $0.deliveriesPerSecond : Double.nan }
            let db = rb.map { $0.valid ? $0.deliveriesPerSecond : Double.nan }
            report.row(name, "deliveries/s", cell(ra, a) { grouped(Int($0.deliveriesPerSecond)) },
                       cell(rb, b) { grouped(Int($0.deliveriesPerSecond)) },
                       ratio: Report.ratio(da, db))
            report.row(name, "publishes/s", cell(ra, a) { grouped(Int($0.publishesPerSecond)) },
                       cell(rb, b) { grouped(Int($0.publishesPerSecond)) })
            report.row(name, "lost (of expected)", cell(ra, a) { "\(grouped($0.lost)) of \(grouped($0.expectedDeliveries))" },
                       cell(rb, b) { "\(grouped($0.lost)) of \(grouped($0.expectedDeliveries))" })
            report.row(name, "seq/frame/reply errors", cell(ra, a) { "\($0.sequenceErrors)/\($0.frameErrors)/\($0.replyErrors)" },
                       cell(rb, b) { "\($0.sequenceErrors)/\($0.frameErrors)/\($0.replyErrors)" })
            report.row(name, "server CPU", cell(ra, a) { percent($0.serverCPU) }, cell(rb, b) { percent($0.serverCPU) })
            report.row(name, "bench CPU (whole)", cell(ra, a) { percent($0.benchCPU) }, cell(rb, b) { percent($0.benchCPU) })
            report.row(name, "  reader thread(s)", cell(ra, a) { $0.readerCPU.map { percent($0) }.joined(separator: "+") },
                       cell(rb, b) { $0.readerCPU.map { percent($0) }.joined(separator: "+") })
            report.row(name, "  publisher thread", cell(ra, a) { percent($0.publisherCPU) }, cell(rb, b) { percent($0.publisherCPU) })
            report.row(name, "other processes CPU", cell(ra, a) { percent($0.otherCPU) }, cell(rb, b) { percent($0.otherCPU) })
            report.row(name, "bottleneck", cell(ra, a, bottleneck), cell(rb, b, bottleneck))
            report.row(name, "server RSS after", cell(ra, a) { kib($0.serverRSSAfterKiB) }, cell(rb, b) { kib($0.serverRSSAfterKiB) })
            report.result(name, da, db)
            report.result(name + "_lost", ra.map { Double($0.lost) }, rb.map { Double($0.lost) }, ratio: false)
            report.result(name + "_server_cpu", ra?.serverCPU, rb?.serverCPU, ratio: false)
            report.result(name + "_bench_cpu", ra?.benchCPU, rb?.benchCPU, ratio: false)
            report.result(name + "_server_rss_kib", ra?.serverRSSAfterKiB.map(Double.init),
                          rb?.serverRSSAfterKiB.map(Double.init), ratio: false)
        case .pg_notify_1, .pg_notify_4x100, .pg_latency:
            var ra: PgResult? = nil, rb: PgResult? = nil
            if case .pg(let r)? = a { ra = r }
            if case .pg(let r)? = b { rb = r }
            func cell(_ r: PgResult?, _ o: Outcome?, _ f: (PgResult) -> String) -> String {
                r.map(f) ?? text(o)
            }
            let rateA = ra.map { $0.valid ? $0.notificationsPerSecond : Double.nan }
            let rateB = rb.map { $0.valid ? $0.notificationsPerSecond : Double.nan }
            report.row(name, "notifications/s received", cell(ra, a) { grouped(Int($0.notificationsPerSecond)) },
                       cell(rb, b) { grouped(Int($0.notificationsPerSecond)) }, ratio: Report.ratio(rateA, rateB))
            report.row(name, "received / sent", cell(ra, a) { "\(grouped($0.received)) / \(grouped($0.sent))" },
                       cell(rb, b) { "\(grouped($0.received)) / \(grouped($0.sent))" })
            report.row(name, "order / duplicate errors", cell(ra, a) { "\($0.orderErrors) / \($0.duplicates)" },
                       cell(rb, b) { "\($0.orderErrors) / \($0.duplicates)" })
            report.row(name, "postgres CPU", cell(ra, a) { percent($0.serverCPU) }, cell(rb, b) { percent($0.serverCPU) })
            report.result(name, rateA, rateB)
            if scenario == .pg_latency || (ra?.samples ?? 0) > 0 {
                report.row(name, "p50 / p99 µs", cell(ra, a) { "\(fixed($0.p50, 1)) / \(fixed($0.p99, 1))" },
                           cell(rb, b) { "\(fixed($0.p50, 1)) / \(fixed($0.p99, 1))" })
                report.result(name + "_p50_us", ra?.p50, rb?.p50)
                report.result(name + "_p99_us", ra?.p99, rb?.p99)
                if let x = ra, let y = rb { report.result(name + "_p99_added_us", nil, y.p99 - x.p99, ratio: false) }
            }
        case .latency, .backplane_latency:
            var ra: LatencyResult? = nil, rb: LatencyResult? = nil
            if case .latency(let r)? = a { ra = r }
            if case .latency(let r)? = b { rb = r }
            func cell(_ r: LatencyResult?, _ o: Outcome?, _ f: (LatencyResult) -> String) -> String {
                r.map(f) ?? text(o)
            }
            let label = scenario.rawValue
            for (metric, suffix, get) in [("p50 µs", "_p50_us", { (r: LatencyResult) in r.p50 }),
                                          ("p99 µs", "_p99_us", { (r: LatencyResult) in r.p99 }),
                                          ("p99.9 µs", "_p999_us", { (r: LatencyResult) in r.p999 }),
                                          ("max µs", "_max_us", { (r: LatencyResult) in r.max }),
                                          ("mean µs", "_mean_us", { (r: LatencyResult) in r.mean })] {
                let key = label + suffix
                let va = ra.map { $0.valid ? get($0) : Double.nan }
                let vb = rb.map { $0.valid ? get($0) : Double.nan }
                report.row(label, metric, cell(ra, a) { fixed(get($0), 1) }, cell(rb, b) { fixed(get($0), 1) },
                           ratio: Report.ratio(va, vb))
                if suffix != "_max_us" && suffix != "_mean_us" { report.result(key, va, vb) }
            }
            if let x = ra, let y = rb, x.valid, y.valid {
                report.row(label, "p99 added by relay", "", fixed(y.p99 - x.p99, 1) + " µs")
                report.results.append(ResultLine(name: label + "_p99_added_us", redis: nil, relay: y.p99 - x.p99, withRatio: false))
            }
            report.row(label, "samples / lost", cell(ra, a) { "\($0.samples) / \($0.lost)" }, cell(rb, b) { "\($0.samples) / \($0.lost)" })
            report.row(label, "achieved rate msg/s", cell(ra, a) { grouped(Int($0.achievedRate)) },
                       cell(rb, b) { grouped(Int($0.achievedRate)) })
            report.row(label, "late sends (>1 ms)", cell(ra, a) { "\($0.lateSends)" }, cell(rb, b) { "\($0.lateSends)" })
            report.row(label, "server CPU", cell(ra, a) { percent($0.serverCPU) }, cell(rb, b) { percent($0.serverCPU) })
            report.row(label, "bench CPU (whole)", cell(ra, a) { percent($0.benchCPU) }, cell(rb, b) { percent($0.benchCPU) })
            report.row(label, "other processes CPU", cell(ra, a) { percent($0.otherCPU) }, cell(rb, b) { percent($0.otherCPU) })
            report.result(label + "_lost", ra.map { Double($0.lost) }, rb.map { Double($0.lost) }, ratio: false)
            report.result(label + "_server_cpu", ra?.serverCPU, rb?.serverCPU, ratio: false)
            report.result(label + "_bench_cpu", ra?.benchCPU, rb?.benchCPU, ratio: false)
        case .idle:
            var ra: IdleResult? = nil, rb: IdleResult? = nil
            if case .idle(let r)? = a { ra = r }
            if case .idle(let r)? = b { rb = r }
            func cell(_ r: IdleResult?, _ o: Outcome?, _ f: (IdleResult) -> String) -> String {
                r.map(f) ?? text(o)
            }
            let label = "idle \(grouped(idleClients))"
            report.row(label, "server RSS before", cell(ra, a) { kib($0.rssBeforeKiB) }, cell(rb, b) { kib($0.rssBeforeKiB) })
            report.row(label, "server RSS with clients", cell(ra, a) { kib($0.rssAfterKiB) }, cell(rb, b) { kib($0.rssAfterKiB) })
            report.row(label, "server RSS after close", cell(ra, a) { kib($0.rssAfterCloseKiB) }, cell(rb, b) { kib($0.rssAfterCloseKiB) })
            report.row(label, "KiB per idle client", cell(ra, a) { fixed($0.kibPerClient, 2) }, cell(rb, b) { fixed($0.kibPerClient, 2) },
                       ratio: Report.ratio(ra?.kibPerClient, rb?.kibPerClient))
            report.result("idle_kib_per_client", ra?.kibPerClient, rb?.kibPerClient)
            report.result("idle_rss_with_clients_kib", ra.map { Double($0.rssAfterKiB) }, rb.map { Double($0.rssAfterKiB) }, ratio: false)
        }
    }
}

/// The median run (by deliveries/s, by p99 for latency runs; for pg runs by notifications/s, or
/// by p99 when `byLatency`); any failure wins, and losses/errors of all runs are added to the
/// chosen one so that a loss in any run invalidates the result.
func medianOutcome(_ runs: [Outcome], byLatency: Bool = false) -> Outcome {
    guard !runs.isEmpty else { return .skipped("not run") }
    if runs.count == 1 { return runs[0] }
    if let failed = runs.first(where: { if case .failed = $0 { return true } else { return false } }) { return failed }
    var fan: [FanoutResult] = [], lat: [LatencyResult] = []
    for r in runs {
        if case .fanout(let x) = r { fan.append(x) }
        if case .latency(let x) = r { lat.append(x) }
    }
    if fan.count == runs.count {
        var m = fan.sorted { $0.deliveriesPerSecond < $1.deliveriesPerSecond }[(fan.count - 1) / 2]
        m.lost = fan.map(\.lost).reduce(0, +)
        m.sequenceErrors = fan.map(\.sequenceErrors).reduce(0, +)
        m.frameErrors = fan.map(\.frameErrors).reduce(0, +)
        m.replyErrors = fan.map(\.replyErrors).reduce(0, +)
        m.disconnected = fan.map(\.disconnected).reduce(0, +)
        return .fanout(m)
    }
    if lat.count == runs.count {
        var m = lat.sorted { $0.p99 < $1.p99 }[(lat.count - 1) / 2]
        m.lost = lat.map(\.lost).reduce(0, +)
        m.sequenceErrors = lat.map(\.sequenceErrors).reduce(0, +)
        m.frameErrors = lat.map(\.frameErrors).reduce(0, +)
        m.replyErrors = lat.map(\.replyErrors).reduce(0, +)
        if lat.contains(where: { $0.samples == 0 }) { m.samples = 0 }
        return .latency(m)
    }
    let pg = runs.compactMap { if case .pg(let x) = $0 { return x } else { return nil } }
    if pg.count == runs.count {
        var m = pg.sorted { byLatency ? $0.p99 < $1.p99 : $0.notificationsPerSecond < $1.notificationsPerSecond }[(pg.count - 1) / 2]
        m.lost = pg.map(\.lost).reduce(0, +)
        m.orderErrors = pg.map(\.orderErrors).reduce(0, +)
        m.duplicates = pg.map(\.duplicates).reduce(0, +)
        return .pg(m)
    }
    return runs[runs.count / 2]
}

/// Which side limited a fan-out run: the server (a core saturated) or the bench.
func bottleneck(_ r: FanoutResult) -> String {
    let server = r.serverCPU ?? 0
    let reader = r.readerCPU.max() ?? 0
    let benchBusy = reader >= 0.9 || r.benchCPU >= 0.9
    if server >= 0.9 && !benchBusy { return "server" }
    if server >= 0.9 { return "server+bench (?)" }
    if benchBusy { return "BENCH" }
    if (r.otherCPU ?? 0) > 0.15 { return "other load" }
    return "neither (?)"
}

func kib(_ v: Int?) -> String { v.map { grouped($0) + " KiB" } ?? "n/a" }

/// Unbuffered line output (stdout may be a pipe; progress lines should appear as they happen).
func out(_ s: String = "") {
    var line = s + "\n"
    line.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(1, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { if errno == EINTR { continue }; return }
            off += n
        }
    }
}

func printError(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

extension Substring {
    var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

RelayBench.main()
