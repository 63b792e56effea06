import NIOCore

/// Reading a topology from `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (the fallback for older
/// servers), as they arrive over RESP2: maps are flat `[key, value, key, value…]` arrays.
extension ClusterTopology {
    /// The topology in a `CLUSTER SHARDS` reply: an array of shards, each the map
    /// `slots` → `[start, end, start, end…]` and `nodes` → maps of `id`, `port`, `tls-port`, `ip`,
    /// `endpoint`, `hostname`, `role`, `replication-offset`, `health`.
    ///
    /// - Parameters:
    ///   - seedHost: the host the reply came from, used for a node whose endpoint is unknown
    ///     (`""`), as redis-cli does.
    ///   - tls: the connections will run TLS: a node's `tls-port`, when it has one, is its `port`.
    public init(shardsReply reply: UpstreamReply, seedHost: String, tls: Bool) throws(ClusterTopologyError) {
        let command = "CLUSTER SHARDS reply"
        guard case .array(let shards) = reply else { throw Self.unexpected(reply, command, "an array of shards") }
        var nodes: [Node] = []
        var slots: [(range: ClosedRange<Int>, masterID: String)] = []
        for (s, shard) in shards.enumerated() {
            let place = "\(command): shard \(s + 1)"
            let fields = try Self.fields(of: shard, place)
            guard case .array(let bounds)? = fields["slots"] else {
                throw ClusterTopologyError(.malformedReply, "\(place): no 'slots' array; expected [start, end, …]")
            }
            guard case .array(let members)? = fields["nodes"] else {
                throw ClusterTopologyError(.malformedReply, "\(place): no 'nodes' array")
            }
            var shardNodes: [Node] = []
            for (n, member) in members.enumerated() {
                shardNodes.append(try Self.shardNode(member, "\(place), node \(n + 1)", seedHost: seedHost, tls: tls))
            }
            let masters = shardNodes.filter { $0.role == .master }
            guard masters.count <= 1 else {
                throw ClusterTopologyError(.malformedReply, "\(place): \(masters.count) masters (\(masters.map(\.id).joined(separator: ", "))); a shard has one")
            }
            if let master = masters.first {
                for i in shardNodes.indices where shardNodes[i].role == .replica { shardNodes[i].masterID = master.id }
                for range in try Self.ranges(bounds, place) { slots.append((range, master.id)) }
            } else if !bounds.isEmpty {
                throw ClusterTopologyError(.malformedReply, "\(place): serves slots but lists no master")
            }
            nodes += shardNodes
        }
        do {
            try self.init(nodes: nodes, slots: slots)
        } catch {
            throw ClusterTopologyError(error.code, "\(command): \(error.message)")
        }
    }

    /// The topology in a `CLUSTER SLOTS` reply: an array of `[start, end, master, replica…]`,
    /// each node `[endpoint, port, id, {ip, hostname}]` (older servers stop after the port or the
    /// id). The port is the one for the kind of connection that asked (Redis answers a TLS
    /// client with TLS ports), so there is no `tls` parameter; health is not given.
    ///
    /// - Parameter seedHost: the host the reply came from, used for a node whose endpoint is
    ///   unknown (null or `""`), as redis-cli does.
    public init(slotsReply reply: UpstreamReply, seedHost: String) throws(ClusterTopologyError) {
        let command = "CLUSTER SLOTS reply"
        guard case .array(let entries) = reply else { throw Self.unexpected(reply, command, "an array of slot ranges") }
        var nodes: [Node] = []
        var seen: [String: Int] = [:]
        var slots: [(range: ClosedRange<Int>, masterID: String)] = []
        for (e, entry) in entries.enumerated() {
            let place = "\(command): range \(e + 1)"
            guard case .array(let items) = entry, items.count >= 3 else {
                throw ClusterTopologyError(.malformedReply, "\(place): expected [start, end, master, replica…]")
            }
            let range = try Self.ranges(Array(items[0..<2]), place)[0]
            let master = try Self.slotsNode(items[2], "\(place), master", role: .master, masterID: nil, seedHost: seedHost)
            slots.append((range, master.id))
            var listed = [master]
            for (r, item) in items.dropFirst(3).enumerated() {
                listed.append(try Self.slotsNode(item, "\(place), replica \(r + 1)", role: .replica, masterID: master.id, seedHost: seedHost))
            }
            // A master appears once per range it serves, its replicas with it each time.
            for node in listed {
                if let i = seen[node.id] {
                    guard nodes[i].role == node.role else {
                        throw ClusterTopologyError(.malformedReply, "\(place): node \(node.id) is listed both as a master and as a replica")
                    }
                } else {
                    seen[node.id] = nodes.count
                    nodes.append(node)
                }
            }
        }
        do {
            try self.init(nodes: nodes, slots: slots)
        } catch {
            throw ClusterTopologyError(error.code, "\(command): \(error.message)")
        }
    }

    // MARK: Reading the parts

    /// One node map of `CLUSTER SHARDS`.
    private static func shardNode(_ reply: UpstreamReply, _ place: String, seedHost: String, tls: Bool) throws(ClusterTopologyError) -> Node {
        let fields = try fields(of: reply, place)
        func text(_ key: String) throws(ClusterTopologyError) -> String? {
            guard let value = fields[key] else { return nil }
            guard let t = value.clusterText else {
                throw ClusterTopologyError(.malformedReply, "\(place): '\(key)' is \(value.text), expected a string")
            }
            return t
        }
        func port(_ key: String) throws(ClusterTopologyError) -> Int? {
            guard let value = fields[key] else { return nil }
            guard let p = value.clusterInteger, p > 0, p < 65536 else {
                throw ClusterTopologyError(.malformedReply, "\(place): '\(key)' is \(value.text), expected a TCP port")
            }
            return p
        }
        guard let id = try text("id"), !id.isEmpty else {
            throw ClusterTopologyError(.malformedReply, "\(place): no 'id'")
        }
        let plainPort = try port("port")
        let tlsPort = try port("tls-port")
        // Without a plaintext port a plain connection has nothing else to try (and vice versa):
        // the connection attempt then fails with its own error.
        guard let connectPort = tls ? (tlsPort ?? plainPort) : (plainPort ?? tlsPort) else {
            throw ClusterTopologyError(.malformedReply, "\(place): node \(id) has neither 'port' nor 'tls-port'")
        }
        let role: Node.Role
        switch try text("role")?.lowercased() {
        case "master"?: role = .master
        case "replica"?, "slave"?: role = .replica
        case let other:
            throw ClusterTopologyError(.malformedReply, "\(place): node \(id) has role \(other.map { "'\($0)'" } ?? "(none)"), expected master or replica")
        }
        let host = connectHost(endpoint: try text("endpoint"), ip: try text("ip"), seedHost: seedHost)
        return Node(id: id, host: host, port: connectPort, tlsPort: tlsPort, role: role,
                    health: try text("health").flatMap { Node.Health(rawValue: $0.lowercased()) })
    }

    /// One `[endpoint, port, id, {metadata}]` node of `CLUSTER SLOTS`.
    private static func slotsNode(_ reply: UpstreamReply, _ place: String, role: Node.Role, masterID: String?, seedHost: String) throws(ClusterTopologyError) -> Node {
        guard case .array(let items) = reply, items.count >= 2 else {
            throw ClusterTopologyError(.malformedReply, "\(place): expected [endpoint, port, id]")
        }
        let endpoint: String
        switch items[0] {
        case .null: endpoint = "" // cluster-preferred-endpoint-type unknown-endpoint
        case let e:
            guard let t = e.clusterText else {
                throw ClusterTopologyError(.malformedReply, "\(place): endpoint is \(e.text), expected a string or null")
            }
            endpoint = t
        }
        guard let port = items[1].clusterInteger, port > 0, port < 65536 else {
            throw ClusterTopologyError(.malformedReply, "\(place): port is \(items[1].text), expected a TCP port")
        }
        var ip: String?
        if items.count >= 4, case .array(let metadata) = items[3] {
            ip = try fields(of: .array(metadata), "\(place) metadata")["ip"]?.clusterText
        }
        let host = connectHost(endpoint: endpoint, ip: ip, seedHost: seedHost)
        var id = ""
        if items.count >= 3 {
            guard let t = items[2].clusterText else {
                throw ClusterTopologyError(.malformedReply, "\(place): id is \(items[2].text), expected a string")
            }
            id = t
        }
        // Servers before 3.2 give no id: the address is the only identity there is.
        if id.isEmpty { id = Node(id: "", host: host, port: port, role: role).address }
        return Node(id: id, host: host, port: port, role: role, masterID: masterID)
    }

    /// Where to connect to a node. An empty endpoint means Redis does not know it
    /// (`cluster-preferred-endpoint-type unknown-endpoint`, or a node that has not learnt its own
    /// IP yet): reach it by the host the reply came from. `?` means the preferred endpoint is a
    /// hostname the node lacks: its IP, if given, still reaches that node, where the seed's host
    /// would reach another.
    static func connectHost(endpoint: String?, ip: String?, seedHost: String) -> String {
        if let endpoint, !endpoint.isEmpty, endpoint != "?" { return endpoint }
        if endpoint != "", let ip, !ip.isEmpty { return ip }
        return seedHost
    }

    /// `[start, end, start, end…]` as ranges.
    private static func ranges(_ bounds: [UpstreamReply], _ place: String) throws(ClusterTopologyError) -> [ClosedRange<Int>] {
        guard bounds.count % 2 == 0 else {
            throw ClusterTopologyError(.malformedReply, "\(place): \(bounds.count) slot bounds; expected start, end pairs")
        }
        var result: [ClosedRange<Int>] = []
        for i in stride(from: 0, to: bounds.count, by: 2) {
            guard let start = bounds[i].clusterInteger, let end = bounds[i + 1].clusterInteger else {
                throw ClusterTopologyError(.malformedReply, "\(place): slot bounds \(bounds[i].text), \(bounds[i + 1].text) are not integers")
            }
            guard start >= 0, end < ClusterSlot.count, start <= end else {
                throw ClusterTopologyError(.slotOutOfRange, "\(place): slots \(start)-\(end) are not a range within 0-16383")
            }
            result.append(start...end)
        }
        return result
    }

    /// A RESP2 map (a flat array of keys and values), keyed by its string keys.
    private static func fields(of reply: UpstreamReply, _ place: String) throws(ClusterTopologyError) -> [String: UpstreamReply] {
        guard case .array(let items) = reply, items.count % 2 == 0 else {
            throw unexpected(reply, place, "a map (key, value, …)")
        }
        var fields: [String: UpstreamReply] = [:]
        for i in stride(from: 0, to: items.count, by: 2) {
            guard let key = items[i].clusterText else {
                throw ClusterTopologyError(.malformedReply, "\(place): map key \(items[i].text) is not a string")
            }
            fields[key] = items[i + 1]
        }
        return fields
    }

    private static func unexpected(_ reply: UpstreamReply, _ place: String, _ expected: String) -> ClusterTopologyError {
        if case .error = reply { return ClusterTopologyError(.errorReply, "\(place): the node answered -\(reply.text)") }
        return ClusterTopologyError(.malformedReply, "\(place): got \(reply.text), expected \(expected)")
    }
}

extension UpstreamReply {
    /// The string of a bulk or status reply.
    fileprivate var clusterText: String? {
        switch self {
        case .bulk(let b), .status(let b): return String(buffer: b)
        default: return nil
        }
    }

    /// An integer reply, or a bulk holding a decimal number (as a RESP3-to-RESP2 proxy may send).
    fileprivate var clusterInteger: Int? {
        switch self {
        case .integer(let n): return n
        case .bulk(let b): return Int(String(buffer: b))
        default: return nil
        }
    }
}
