/// `redis-cluster://` and `rediss-cluster://` URLs (README, "Redis Cluster"): a few nodes of the
/// cluster to learn its topology from, instead of one fixed address.
extension RedisURL {
    /// A Redis Cluster deployment: the seed nodes, asked in order for the topology.
    public struct Cluster: Sendable, Equatable {
        /// Nodes of the cluster (any role); one that answers is enough, the rest are spares.
        public var seeds: [Endpoint]
        /// `rediss-cluster://`: TLS to every node.
        public var tls = false
        /// `RELAY_REDIS_CLUSTER_PUBSUB`: how the fleet's messages travel through the cluster.
        public var pubsub = PubSubMode.sharded

        /// How the relay uses the cluster's pub/sub.
        public enum PubSubMode: String, Sendable, Equatable, CaseIterable {
            /// `SPUBLISH`/`SSUBSCRIBE` (Redis 7): each channel lives on the master of its slot, so
            /// the load spreads over the masters.
            case sharded
            /// `PUBLISH`/`SUBSCRIBE`: every message is broadcast over the cluster bus to every
            /// node; works with any version, costs every node every message.
            case classic
        }

        public init(seeds: [Endpoint], tls: Bool = false, pubsub: PubSubMode = .sharded) {
            self.seeds = seeds
            self.tls = tls
            self.pubsub = pubsub
        }
    }

    static let clusterForms = "redis-cluster://[user:password@]host1:6379[,host2:6379…]"
    public static let defaultClusterPort = 6379

    /// The cluster forms, or nil for any other scheme.
    static func parseClusterForms(_ text: String) throws(ConfigError) -> RedisURL? {
        if text.hasPrefix("redis-cluster://") {
            return try parseCluster(String(text.dropFirst("redis-cluster://".count)), original: text, tls: false)
        }
        if text.hasPrefix("rediss-cluster://") {
            return try parseCluster(String(text.dropFirst("rediss-cluster://".count)), original: text, tls: true)
        }
        return nil
    }

    /// `[user[:password]@]h1[:port][,h2[:port]…][/0]`, after the scheme.
    private static func parseCluster(_ rest: String, original: String, tls: Bool) throws(ConfigError) -> RedisURL {
        var authority = Substring(rest)
        var path = Substring("")
        if let slash = authority.firstIndex(of: "/") {
            path = authority[authority.index(after: slash)...]
            authority = authority[..<slash]
        }
        var url = RedisURL(address: .tcp(host: "", port: 0))
        try takeCredentials(&authority, into: &url)
        if path.contains("?") || authority.contains("?") {
            throw ConfigError(variable, "query parameters are not read in cluster URLs; expected \(clusterForms)")
        }
        guard !authority.isEmpty else {
            throw ConfigError(variable, "'\(redactedInput(original))' lists no node; expected \(clusterForms)")
        }
        var seeds: [Endpoint] = []
        for item in authority.split(separator: ",", omittingEmptySubsequences: false) {
            seeds.append(try listedEndpoint(item, what: "cluster node", defaultPort: defaultClusterPort))
        }
        if !path.isEmpty {
            guard path.allSatisfy(\.isNumber), let db = Int(path) else {
                throw ConfigError(variable, "'\(redactedInput(original))': expected nothing or /0 after the cluster's nodes, found /\(path)")
            }
            guard db == 0 else {
                throw ConfigError(variable, "database \(db) was asked for, but Redis Cluster has only database 0; drop the /\(path) from \(clusterForms)")
            }
        }
        url.cluster = Cluster(seeds: seeds, tls: tls)
        url.tls = tls
        return url
    }

    /// `redis-cluster://[user:***@]h1:6379,h2:6379`.
    func clusterRedacted(_ cluster: Cluster) -> String {
        var credentials = ""
        if username != nil || password != nil {
            credentials = (username ?? "") + (password != nil ? ":***" : "") + "@"
        }
        let scheme = cluster.tls ? "rediss-cluster" : "redis-cluster"
        return "\(scheme)://\(credentials)\(cluster.seeds.map(\.description).joined(separator: ","))"
    }

    /// The URL less the settings that come from other variables than `REDIS_URL`
    /// (`RELAY_REDIS_CLUSTER_PUBSUB`), to tell whether `REDIS_URL` itself changed.
    var withoutClusterPubSub: RedisURL {
        var url = self
        url.cluster?.pubsub = .sharded
        return url
    }
}
