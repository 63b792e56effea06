/// Where the Redis backplane is and how to log in: `REDIS_URL` parsed.
///
/// Accepted forms (README, "Configuration", `REDIS_URL`):
/// * `redis://[user[:password]@]host[:port][/db]` (IPv6 hosts in brackets; port 6379 by default)
/// * `rediss://…`, the same over TLS (the relay does its own I/O through swift-nio-ssl; hiredis
///   only parses replies, so its lack of TLS does not matter)
/// * `unix:///path/to/redis.sock[?db=n&password=…&user=…]`
/// * `redis-sentinel://[user[:password]@]h1[:26379][,h2[:26379]…]/<master-name>[/db]` (README,
///   "Redis Sentinel"): the master is discovered from the sentinels; `sentinel` is set and
///   `address` is only a placeholder until discovery answers.
/// * `redis-cluster://[user[:password]@]h1[:6379][,h2[:6379]…][/0]` (README, "Redis Cluster"):
///   `cluster` is set with the seed nodes, and `address` is only a placeholder; the masters come
///   from the cluster's topology.
/// User and password are percent-decoded.
public struct RedisURL: Sendable, Equatable {
    public enum Address: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    public var username: String?
    public var password: String?
    public var db = 0
    /// `rediss://`: the TCP connection carries TLS (the `RedisTLSOptions` say how it is checked).
    public var tls = false
    /// Set for `redis-sentinel://` URLs: where the sentinels are and which master to follow.
    public var sentinel: Sentinel?
    /// Set for `redis-cluster://` URLs: the nodes to learn the cluster's topology from.
    public var cluster: Cluster?

    /// A TCP `host:port`: a sentinel, or a seed node of a cluster.
    public struct Endpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, IPv6 hosts in brackets.
        public var description: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }
    }

    public init(address: Address, username: String? = nil, password: String? = nil, db: Int = 0, tls: Bool = false) {
        self.address = address
        self.username = username
        self.password = password
        self.db = db
        self.tls = tls
    }

    /// The TCP host, for TLS name checks; nil for a Unix socket.
    public var host: String? {
        if case .tcp(let host, _) = address { return host }
        return nil
    }

    /// The URL with the password replaced by `***`, for logs and INFO.
    public var redacted: String {
        if let sentinel { return sentinelRedacted(sentinel) }
        if let cluster { return clusterRedacted(cluster) }
        switch address {
        case .tcp(let host, let port):
            var credentials = ""
            if username != nil || password != nil {
                credentials = (username ?? "") + (password != nil ? ":***" : "") + "@"
            }
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return (tls ? "rediss://" : "redis://") + "\(credentials)\(shownHost):\(port)/\(db)"
        case .unix(let path):
            var query: [String] = []
            if db != 0 { query.append("db=\(db)") }
            if let username { query.append("user=\(username)") }
            if password != nil { query.append("password=***") }
            return "unix://\(path)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        }
    }

    static let variable = "REDIS_URL"
    static let forms = "redis://[user[:password]@]host[:port][/db], rediss://… (TLS) or unix:///path[?db=n&password=…]"

    public static func parse(_ text: String) throws(ConfigError) -> RedisURL {
        if let url = try parseSentinelForms(text) { return url }
        if let url = try parseClusterForms(text) { return url }
        if text.hasPrefix("rediss://") {
            var url = try parseTCP(String(text.dropFirst("rediss://".count)), original: text)
            url.tls = true
            return url
        }
        if text.hasPrefix("redis://") { return try parseTCP(String(text.dropFirst("redis://".count)), original: text) }
        if text.hasPrefix("unix://") { return try parseUnix(String(text.dropFirst("unix://".count)), original: text) }
        throw ConfigError(variable, "'\(redactedInput(text))' is not a Redis URL; expected \(forms), or redis-sentinel://… (Redis Sentinel) or redis-cluster://… (Redis Cluster)")
    }

    /// `user:password@`, `:password@` or `password@` (a password alone, as redis-cli and most
    /// clients read it) at the front of `authority`: removed from it, percent-decoded into `url`.
    static func takeCredentials(_ authority: inout Substring, into url: inout RedisURL) throws(ConfigError) {
        guard let at = authority.lastIndex(of: "@") else { return }
        let credentials = authority[..<at]
        authority = authority[authority.index(after: at)...]
        if let colon = credentials.firstIndex(of: ":") {
            let user = try decode(credentials[..<colon], what: "user name")
            url.username = user.isEmpty ? nil : user
            url.password = try decode(credentials[credentials.index(after: colon)...], what: "password")
        } else {
            url.password = try decode(credentials, what: "password")
        }
    }

    /// `host[:port]` or `[v6][:port]`: the host and the port's text, if any (errors begin with
    /// `errorPrefix`, naming what was being read).
    static func splitHostPort(_ item: Substring, errorPrefix: String) throws(ConfigError) -> (host: Substring, port: Substring?) {
        if item.hasPrefix("[") {
            guard let close = item.firstIndex(of: "]") else {
                throw ConfigError(variable, "\(errorPrefix): unterminated [IPv6] host")
            }
            let host = item[item.index(after: item.startIndex)..<close]
            let after = item[item.index(after: close)...]
            if after.hasPrefix(":") { return (host, after.dropFirst()) }
            if !after.isEmpty { throw ConfigError(variable, "\(errorPrefix): expected :port after the [IPv6] host") }
            return (host, nil)
        }
        if let colon = item.lastIndex(of: ":") {
            return (item[..<colon], item[item.index(after: colon)...])
        }
        return (item, nil)
    }

    private static func parseTCP(_ rest: String, original: String) throws(ConfigError) -> RedisURL {
        var hostPart = Substring(rest)
        var path = Substring("")
        if let slash = hostPart.firstIndex(of: "/") {
            path = hostPart[hostPart.index(after: slash)...]
            hostPart = hostPart[..<slash]
        }
        if path.contains("?") {
            throw ConfigError(variable, "query parameters are only read in unix:// URLs; put the db in the path (redis://host:6379/2)")
        }
        var url = RedisURL(address: .tcp(host: "", port: 6379))
        try takeCredentials(&hostPart, into: &url)
        let (host, portText) = try splitHostPort(hostPart, errorPrefix: "'\(redactedInput(original))'")
        guard !host.isEmpty else {
            throw ConfigError(variable, "'\(redactedInput(original))' has no host; expected \(forms)")
        }
        var port = 6379
        if let portText {
            guard let p = Int(portText), p > 0, p < 65536 else {
                throw ConfigError(variable, "'\(portText)' is not a TCP port (1-65535)")
            }
            port = p
        }
        url.address = .tcp(host: String(host), port: port)
        if !path.isEmpty { url.db = try database(path) }
        return url
    }

    private static func parseUnix(_ rest: String, original: String) throws(ConfigError) -> RedisURL {
        var pathPart = Substring(rest)
        var query = Substring("")
        if let q = pathPart.firstIndex(of: "?") {
            query = pathPart[pathPart.index(after: q)...]
            pathPart = pathPart[..<q]
        }
        let path = try decode(pathPart, what: "socket path")
        guard path.hasPrefix("/") else {
            throw ConfigError(variable, "'\(redactedInput(original))': a unix URL needs an absolute path, e.g. unix:///run/redis/redis.sock")
        }
        guard path.utf8.count <= 107 else {
            throw ConfigError(variable, "socket path is \(path.utf8.count) bytes; a Unix socket path must be at most 107 bytes")
        }
        var url = RedisURL(address: .unix(path: path))
        for item in query.split(separator: "&") where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = kv[0]
            let value = kv.count > 1 ? kv[1] : ""
            switch key {
            case "db": url.db = try database(value)
            case "password": url.password = try decode(value, what: "password")
            case "user", "username":
                let user = try decode(value, what: "user name")
                url.username = user.isEmpty ? nil : user
            default:
                throw ConfigError(variable, "unknown parameter '\(key)' in the unix URL; accepted: db, password, user")
            }
        }
        return url
    }

    static func database(_ text: Substring) throws(ConfigError) -> Int {
        guard let n = Int(text), n >= 0, n <= Int(Int32.max) else {
            throw ConfigError(variable, "'\(text)' is not a database number (0, 1, 2…)")
        }
        return n
    }

    /// Percent-decoding (`%40` → `@`), so that passwords may hold any byte.
    static func decode(_ text: Substring, what: String) throws(ConfigError) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let b = utf8.popFirst() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard utf8.count >= 2, let hi = hexValue(utf8.removeFirst()), let lo = hexValue(utf8.removeFirst()) else {
                throw ConfigError(variable, "bad percent-escape in the \(what); write a literal % as %25")
            }
            bytes.append(hi << 4 | lo)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The input with its password masked, so that an error message never prints it.
    static func redactedInput(_ text: String) -> String {
        ConnectionSecrets.masking(ConnectionSecrets.password(in: text, bareCredentialIsPassword: true), in: text)
    }
}
