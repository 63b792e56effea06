// The Redis Cluster of the cluster scenarios: 3 masters + 3 replicas on free 127.0.0.1 ports,
// created with `redis-cli --cluster create`, stopped by PID; each node's CPU from /proc.

#if canImport(Glibc)
import Glibc
#endif

/// One redis-server process of the bench's cluster, and its place in the cluster.
struct ClusterNode {
    let port: UInt16
    let pid: pid_t
    let logPath: String
    var id = ""
    var isMaster = false
    /// Slot ranges this node serves (masters only).
    var slots: [ClosedRange<Int>] = []
}

/// The bench's Redis Cluster: six redis-server processes it launched and stops.
final class BenchRedisCluster {
    private(set) var nodes: [ClusterNode] = []
    private var stoppedPIDs: Set<pid_t> = []
    private let createLog: String

    /// Indices (into `nodes`) of the masters, in port order.
    var masters: [Int] { nodes.indices.filter { nodes[$0].isMaster } }
    var pids: [pid_t] { nodes.map(\.pid) }
    /// `REDIS_URL` for a relay: every node as a seed.
    var redisURL: String { "redis-cluster://" + nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",") }

    /// Starts `masters` × (1 + `replicasPerMaster`) nodes and waits (bounded) until every node
    /// reports `cluster_state:ok`, knows every other node, and every replica's link is up.
    init(in ws: Workspace, serverBinary: String, cliBinary: String, masters: Int = 3, replicasPerMaster: Int = 1,
         timeout: Double = 60) throws {
        createLog = ws.file("cluster-create.log")
        do {
            try launch(ws, serverBinary, count: masters * (1 + replicasPerMaster))
            try create(cliBinary, replicasPerMaster: replicasPerMaster, timeout: timeout)
            try waitHealthy(masters: masters, timeout: timeout)
        } catch {
            let dead = deadNodes()
            stop()
            throw BenchError("Redis Cluster: \(error)" + (dead.isEmpty ? "" : "; exited: " + dead.joined(separator: "; ")))
        }
    }

    private func launch(_ ws: Workspace, _ binary: String, count: Int) throws {
        let ports = try freeClusterPorts(count)
        for port in ports {
            let log = ws.file("cluster-\(port).log")
            let conf = ws.file("cluster-\(port).nodes.conf")
            // No RDB or AOF: nothing to measure but pub/sub. Replicas load the initial sync
            // without a file (their data set is empty), so no dump lands in the workspace, and
            // masters send it at once (the default waits 5 s for more replicas).
            let rdb = ws.file("cluster-\(port).rdb")
            let args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", ws.dir,
                        "--cluster-enabled", "yes", "--cluster-config-file", conf,
                        "--cluster-node-timeout", "2000", "--appendonly", "no", "--save", "",
                        "--dbfilename", String(rdb.split(separator: "/").last!),
                        "--repl-diskless-load", "on-empty-db", "--repl-diskless-sync-delay", "0",
                        "--maxclients", "10000"]
            let pid = try spawnProcess(path: binary, args: args, env: inheritedEnvironment(), logPath: log)
            registerEmergencyPID(pid)
            nodes.append(ClusterNode(port: port, pid: pid, logPath: log))
        }
        let deadline = monoNanos() + 15_000_000_000
        for i in nodes.indices {
            while true {
                try checkRunning(i, "start-up")
                if let fd = try? connectTCP(port: nodes[i].port) {
                    defer { close(fd) }
                    setReceiveTimeout(fd, seconds: 2)
                    if (try? clusterCommand(fd, ["PING"])) == "PONG" { break }
                }
                if monoNanos() > deadline {
                    throw BenchError("node 127.0.0.1:\(nodes[i].port) did not answer PING within 15 s")
                }
                usleep(20_000)
            }
        }
    }

    private func create(_ cli: String, replicasPerMaster: Int, timeout: Double) throws {
        let args = ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" }
            + ["--cluster-replicas", String(replicasPerMaster), "--cluster-yes"]
        let env = inheritedEnvironment().filter { !$0.hasPrefix("REDISCLI_") }
        let pid = try spawnProcess(path: cli, args: args, env: env, logPath: createLog)
        registerEmergencyPID(pid)
        defer { unregisterEmergencyPID(pid) }
        let deadline = monoNanos() + UInt64(timeout * 1e9)
        while true {
            if let how = childExited(pid) {
                if how == "exited with status 0" { return }
                throw BenchError("`\(cli) \(args.joined(separator: " "))` \(how)\(tail(createLog, "redis-cli --cluster create"))")
            }
            if monoNanos() > deadline {
                stopProcess(pid, signal: SIGTERM, timeout: 2)
                throw BenchError("`redis-cli --cluster create` did not finish within \(Int(timeout)) s\(tail(createLog, "redis-cli --cluster create"))")
            }
            usleep(50_000)
        }
    }

    private func waitHealthy(masters: Int, timeout: Double) throws {
        let deadline = monoNanos() + UInt64(timeout * 1e9)
        var last = "not asked yet"
        while monoNanos() < deadline {
            for i in nodes.indices { try checkRunning(i, "cluster creation") }
            if let why = notHealthy(masters: masters) { last = why } else { return }
            usleep(100_000)
        }
        throw BenchError("cluster not healthy within \(Int(timeout)) s: \(last)")
    }

    /// Why the cluster is not ready yet, or nil when it is (and `nodes` knows the topology).
    private func notHealthy(masters: Int) -> String? {
        for node in nodes {
            guard let info = try? ask(node.port, ["CLUSTER", "INFO"]) else { return "127.0.0.1:\(node.port) does not answer CLUSTER INFO" }
            let fields = infoFields(info)
            if fields["cluster_state"] != "ok" { return "127.0.0.1:\(node.port) cluster_state:\(fields["cluster_state"] ?? "?")" }
            if fields["cluster_known_nodes"] != String(nodes.count) {
                return "127.0.0.1:\(node.port) knows \(fields["cluster_known_nodes"] ?? "?") of \(nodes.count) nodes"
            }
        }
        guard let text = try? ask(nodes[0].port, ["CLUSTER", "NODES"]) else { return "CLUSTER NODES unanswered" }
        var topology = nodes
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 8, let colon = f[1].lastIndex(of: ":") else { continue }
            let portText = f[1][f[1].index(after: colon)...].prefix { $0 != "@" && $0 != "," }
            guard let port = UInt16(portText), let i = topology.firstIndex(where: { $0.port == port }) else { continue }
            topology[i].id = String(f[0])
            topology[i].isMaster = f[2].split(separator: ",").contains("master")
            topology[i].slots = f.dropFirst(8).compactMap { range -> ClosedRange<Int>? in
                if range.hasPrefix("[") { return nil }   // a slot being migrated
                let ends = range.split(separator: "-").compactMap { Int($0) }
                if ends.count == 1 { return ends[0]...ends[0] }
                return ends.count == 2 ? ends[0]...ends[1] : nil
            }
        }
        let masterCount = topology.filter(\.isMaster).count
        let covered = topology.flatMap(\.slots).map(\.count).reduce(0, +)
        if masterCount != masters || covered != 16_384 {
            return "CLUSTER NODES shows \(masterCount) masters serving \(covered) of 16384 slots"
        }
        for node in topology where !node.isMaster {
            guard let info = try? ask(node.port, ["INFO", "replication"]) else { return "replica 127.0.0.1:\(node.port) does not answer INFO" }
            if infoFields(info)["master_link_status"] != "up" { return "replica 127.0.0.1:\(node.port) master link not up" }
        }
        nodes = topology
        return nil
    }

    /// The node index of the master serving `slot`.
    func master(forSlot slot: Int) -> Int {
        guard let i = nodes.indices.first(where: { nodes[$0].isMaster && nodes[$0].slots.contains { $0.contains(slot) } }) else {
            preconditionFailure("no master serves slot \(slot): \(nodes)")
        }
        return i
    }

    /// Sum of the nodes' CPU seconds so far (utime+stime from /proc/PID/stat); nil if a node's
    /// stat is unreadable (it has exited).
    func cpuNanos() -> UInt64? {
        var sum: UInt64 = 0
        for node in nodes {
            guard let n = processCPUNanos(node.pid) else { return nil }
            sum += n
        }
        return sum
    }

    /// Nodes that have exited, described; empty while all run.
    func deadNodes() -> [String] {
        nodes.indices.compactMap { i in
            if stoppedPIDs.contains(nodes[i].pid) { return "127.0.0.1:\(nodes[i].port) stopped" }
            guard let how = childExited(nodes[i].pid) else { return nil }
            stoppedPIDs.insert(nodes[i].pid)
            unregisterEmergencyPID(nodes[i].pid)
            return "127.0.0.1:\(nodes[i].port) \(how)\(logTail(nodes[i]))"
        }
    }

    /// One command to one node, its reply as text (errors thrown).
    func ask(_ port: UInt16, _ args: [String]) throws -> String {
        let fd = try connectTCP(port: port)
        defer { close(fd) }
        setReceiveTimeout(fd, seconds: 3)
        return try clusterCommand(fd, args)
    }

    /// Stops every node still running (SIGTERM to all, then a bounded wait for each); returns
    /// the nodes that did not exit with status 0.
    @discardableResult
    func stop() -> [String] {
        var unclean: [String] = []
        let running = nodes.filter { !stoppedPIDs.contains($0.pid) }
        // One SIGTERM each, all at once (the nodes shut down in parallel); a second one is
        // not sent, SIGKILL after 5 s is.
        for node in running { kill(node.pid, SIGTERM) }
        let deadline = monoNanos() + 5_000_000_000
        for node in running {
            var how = childExited(node.pid)
            while how == nil && monoNanos() < deadline {
                usleep(10_000)
                how = childExited(node.pid)
            }
            if how == nil { how = stopProcess(node.pid, signal: SIGKILL, timeout: 2) + " (SIGKILL after 5 s)" }
            stoppedPIDs.insert(node.pid)
            unregisterEmergencyPID(node.pid)
            if how != "exited with status 0" { unclean.append("cluster node 127.0.0.1:\(node.port) \(how!)") }
        }
        return unclean
    }

    private func checkRunning(_ i: Int, _ phase: String) throws {
        if let how = childExited(nodes[i].pid) {
            stoppedPIDs.insert(nodes[i].pid)
            unregisterEmergencyPID(nodes[i].pid)
            throw BenchError("node 127.0.0.1:\(nodes[i].port) \(how) during \(phase)")
        }
    }

    func logTail(_ node: ClusterNode) -> String { tail(node.logPath, "node 127.0.0.1:\(node.port)") }

    private func tail(_ path: String, _ what: String) -> String {
        guard let text = readSmallFile(path), !text.isEmpty else { return "" }
        return "\n--- last lines of \(what)'s log ---\n" + text.split(separator: "\n").suffix(8).joined(separator: "\n")
    }
}

/// `field:value` lines of an INFO / CLUSTER INFO reply.
func infoFields(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    // "\r\n" is one Character in Swift.
    for line in text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" || $0 == "\r" }) {
        guard let colon = line.firstIndex(of: ":") else { continue }
        out[String(line[..<colon])] = String(line[line.index(after: colon)...])
    }
    return out
}

/// Sends a command on a blocking fd and reads one non-array RESP2 reply: the simple string,
/// integer or bulk text; an error reply is thrown.
func clusterCommand(_ fd: Int32, _ args: [String]) throws -> String {
    try writeAll(fd, respCommand(args))
    var data: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 16_384)
    let deadline = monoNanos() + 5_000_000_000
    while monoNanos() < deadline {
        if let nl = data.firstIndex(of: 0x0a), nl > 0 {
            let line = String(decoding: data[1..<(nl - 1)], as: UTF8.self)
            switch data[0] {
            case UInt8(ascii: "+"), UInt8(ascii: ":"): return line
            case UInt8(ascii: "-"): throw BenchError("\(args.joined(separator: " ")): -\(line)")
            case UInt8(ascii: "$"):
                guard let len = Int(line) else { throw BenchError("bad bulk length \(line)") }
                if len < 0 { return "" }
                if data.count >= nl + 1 + len + 2 { return String(decoding: data[(nl + 1)..<(nl + 1 + len)], as: UTF8.self) }
            default:
                throw BenchError("\(args.joined(separator: " ")): unexpected reply \"\(printable(data))\"")
            }
        }
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { throw BenchError("\(args.joined(separator: " ")): \(n == 0 ? "connection closed" : "read: \(errnoString())")") }
        data += buf[0..<n]
    }
    throw BenchError("\(args.joined(separator: " ")): no reply within 5 s")
}

/// The cluster hash slot of a key or shard channel: CRC16 (XMODEM) of the key, or of its
/// first non-empty `{hash tag}`, modulo 16384.
func clusterHashSlot(_ key: String) -> Int {
    var bytes = Array(key.utf8)
    if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
       let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
        bytes = Array(bytes[(open + 1)..<close])
    }
    var crc: UInt16 = 0
    for b in bytes {
        crc ^= UInt16(b) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
    }
    return Int(crc) & 16_383
}
