/// `redis-sentinel://` and `rediss-sentinel://` URLs (README, "Redis Sentinel"): a list of
/// sentinels and the name of the master they watch, instead of one fixed address.
extension RedisURL {
    /// A Sentinel deployment: the sentinels to ask, in order, and the name of the master.
    public struct Sentinel: Sendable, Equatable {
        /// One sentinel's TCP address (sentinels listen on TCP only; 26379 by default).
        public typealias Endpoint = RedisURL.Endpoint

        public var sentinels: [Endpoint]
        /// The name the sentinels monitor the master under (`sentinel monitor <name> …`).
        public var masterName: String
        /// `rediss-sentinel://`: TLS to the sentinels and to the master.
        public var tls = false
        /// The sentinels' own credentials (`RELAY_REDIS_SENTINEL_USERNAME` / `_PASSWORD`); the
        /// URL's user and password are the data nodes'.
        public var username: String?
        public var password: String?

        public init(sentinels: [Endpoint], masterName: String, tls: Bool = false, username: String? = nil, password: String? = nil) {
            self.sentinels = sentinels
            self.masterName = masterName
            self.tls = tls
            self.username = username
            self.password = password
        }
    }

    static let sentinelForms = "redis-sentinel://[user:password@]host1:26379[,host2:26379…]/<master-name>[/db]"
    public static let defaultSentinelPort = 26379

    /// The sentinel forms, or nil for any other scheme (parsed by `parse` as before).
    static func parseSentinelForms(_ text: String) throws(ConfigError) -> RedisURL? {
        if text.hasPrefix("redis-sentinel://") {
            return try parseSentinel(String(text.dropFirst("redis-sentinel://".count)), original: text, tls: false)
        }
        if text.hasPrefix("rediss-sentinel://") {
            // TLS to the sentinels and to the master, with the RELAY_REDIS_TLS_* settings.
            return try parseSentinel(String(text.dropFirst("rediss-sentinel://".count)), original: text, tls: true)
        }
        return nil
    }

    /// `[user[:password]@]h1[:port][,h2[:port]…]/<master-name>[/db]`, after the scheme.
    static func parseSentinel(_ rest: String, original: String, tls: Bool) throws(ConfigError) -> RedisURL {
        var authority = Substring(rest)
        var path = Substring("")
        if let slash = authority.firstIndex(of: "/") {
            path = authority[authority.index(after: slash)...]
            authority = authority[..<slash]
        }
        if path.contains("?") {
            throw ConfigError(variable, "query parameters are not read in sentinel URLs; expected \(sentinelForms)")
        }
        var url = RedisURL(address: .tcp(host: "", port: 0))
        try takeCredentials(&authority, into: &url)
        guard !authority.isEmpty else {
            throw ConfigError(variable, "'\(redactedInput(original))' lists no sentinel; expected \(sentinelForms)")
        }
        var sentinels: [Sentinel.Endpoint] = []
        for item in authority.split(separator: ",", omittingEmptySubsequences: false) {
            sentinels.append(try sentinelEndpoint(item))
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let name = try decode(segments.first ?? "", what: "master name")
        guard !name.isEmpty else {
            throw ConfigError(variable, "'\(redactedInput(original))' names no master; expected \(sentinelForms), the name of the sentinels' `sentinel monitor <name>`")
        }
        guard segments.count <= 2 else {
            throw ConfigError(variable, "'\(redactedInput(original))': expected /<master-name>[/db] after the sentinels, found more path")
        }
        if segments.count == 2, !segments[1].isEmpty { url.db = try database(segments[1]) }
        url.sentinel = Sentinel(sentinels: sentinels, masterName: name, tls: tls)
        url.tls = tls
        return url
    }

    /// One `host[:port]` or `[v6][:port]` of the sentinel list.
    private static func sentinelEndpoint(_ item: Substring) throws(ConfigError) -> Sentinel.Endpoint {
        try listedEndpoint(item, what: "sentinel", defaultPort: defaultSentinelPort)
    }

    /// One `host[:port]` or `[v6][:port]` of a comma-separated list of `what`s (sentinels, seeds).
    static func listedEndpoint(_ item: Substring, what: String, defaultPort: Int) throws(ConfigError) -> Endpoint {
        let (host, portText) = try splitHostPort(item, errorPrefix: "\(what) '\(item)'")
        guard !host.isEmpty else {
            throw ConfigError(variable, "\(what) '\(item)' has no host; expected host:port, e.g. 10.0.0.7:\(defaultPort), separated by commas")
        }
        var port = defaultPort
        if let portText {
            guard let p = Int(portText), p > 0, p < 65536 else {
                throw ConfigError(variable, "\(what) '\(item)': '\(portText)' is not a TCP port (1-65535)")
            }
            port = p
        }
        return Endpoint(host: String(host), port: port)
    }

    /// `redis-sentinel://[user:***@]h1:26379,h2:26379/<master>/<db>`.
    func sentinelRedacted(_ sentinel: Sentinel) -> String {
        var credentials = ""
        if username != nil || password != nil {
            credentials = (username ?? "") + (password != nil ? ":***" : "") + "@"
        }
        let scheme = sentinel.tls ? "rediss-sentinel" : "redis-sentinel"
        return "\(scheme)://\(credentials)\(sentinel.sentinels.map(\.description).joined(separator: ","))/\(sentinel.masterName)/\(db)"
    }
}

extension RedisURL {
    /// The URL less the sentinels' credentials (which come from their own variables).
    var withoutSentinelCredentials: RedisURL {
        var url = self
        url.sentinel?.username = nil
        url.sentinel?.password = nil
        return url
    }
}
