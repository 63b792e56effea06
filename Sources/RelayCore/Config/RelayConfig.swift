/// The relay's configuration, read from environment variables (README, "Configuration"). Parsing is pure:
/// the caller passes the variables and whether the process runs as root.
public struct RelayConfig: Sendable, Equatable {
    public enum LogFormat: String, Sendable { case text, json }

    /// Redis's `client-output-buffer-limit pubsub` triple; 0 disables a limit.
    public struct OutputBufferLimit: Sendable, Equatable {
        public var hardBytes: Int
        public var softBytes: Int
        public var softSeconds: Int
    }

    public var socketPath: String
    public var socketMode: UInt32 = 0o660
    public var socketGroup: String?
    /// The Redis backplane; nil = local mode.
    public var redisURL: RedisURL?
    /// How a `rediss://` URL's TLS is checked; nil unless `redisURL` uses TLS.
    public var redisTLS: RedisTLSOptions?
    /// Deadline for connecting to Redis, its handshake, and each PING on the subscriber link.
    public var redisTimeoutMilliseconds = 3000
    /// Cap of the reconnect backoff (exponential from 50 ms, with jitter).
    public var redisBackoffMaxMilliseconds = 5000
    /// libpq conninfo or URI of the Postgres bridge; nil = no bridge.
    public var databaseURL: String?
    /// Lease of the Postgres leader in Redis (renewed every third of it, at most every second).
    public var leaderTTLMilliseconds = 5000
    public var pgChannels: [String] = []
    public var pgPrefix = ""
    public var namespace = "pubsub-relay"
    public var maxMessageBytes = 1 << 20
    public var maxArguments = 1 << 20
    public var queryBufferLimit = 64 << 20
    public var clientBufferLimit = OutputBufferLimit(hardBytes: 32 << 20, softBytes: 8 << 20, softSeconds: 60)
    /// `host:port` or a Unix socket path; nil when disabled.
    public var metricsAddress: String? = "127.0.0.1:9464"
    public var logLevel = "info"
    public var logFormat = LogFormat.text
    /// `DEBUG SLEEP` on the socket (a test hook that blocks the event loop); off in production.
    public var debugCommandEnabled = false
    /// `RELAY_TCP_ADDR`: the optional TCP listener; nil when off.
    public var tcpAddress: TCPListenAddress?
    /// `RELAY_TCP_ALLOW_REMOTE`: a TCP address other hosts can reach is accepted (a password is
    /// then required).
    public var tcpAllowRemote = false
    /// `RELAY_PASSWORD`, or the contents of `RELAY_PASSWORD_FILE` once the caller has read it
    /// (`passwordFile` is set and this is nil until then); nil: no password, as Redis without
    /// `requirepass`.
    public var password: RelayPassword?
    /// `RELAY_PASSWORD_FILE`: the file the caller reads into `password` (`loadPassword`).
    public var passwordFile: String?

    /// Whether a password is configured (given, or to be read from its file).
    public var requiresPassword: Bool { password != nil || passwordFile != nil }

    public static func defaultSocketPath(isRoot: Bool) -> String {
        isRoot ? "/run/pubsub-relay/relay.sock" : "./relay.sock"
    }

    /// Every variable the relay reads. Each is documented, with its default, in
    /// `systemd/pubsub-relay.env` (a test holds the file and this list, and the defaults, together).
    public static let variables = [
        "RELAY_SOCKET", "RELAY_SOCKET_MODE", "RELAY_SOCKET_GROUP", "REDIS_URL", "DATABASE_URL",
        "RELAY_PG_CHANNELS", "RELAY_PG_PREFIX", "RELAY_NAMESPACE", "RELAY_MAX_MESSAGE_BYTES",
        "RELAY_MAX_ARGUMENTS", "RELAY_QUERY_BUFFER_LIMIT", "RELAY_CLIENT_BUFFER_LIMIT",
        "RELAY_METRICS_ADDR", "RELAY_LOG_LEVEL", "RELAY_LOG_FORMAT", "RELAY_ENABLE_DEBUG_COMMAND",
        "RELAY_REDIS_TIMEOUT", "RELAY_REDIS_BACKOFF_MAX", "RELAY_LEADER_TTL",
        "RELAY_REDIS_SENTINEL_USERNAME", "RELAY_REDIS_SENTINEL_PASSWORD", "RELAY_REDIS_CLUSTER_PUBSUB",
        "RELAY_TCP_ADDR", "RELAY_TCP_ALLOW_REMOTE", "RELAY_PASSWORD", "RELAY_PASSWORD_FILE",
    ] + RedisTLSOptions.variables

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// Builds the configuration from `environment`; throws the first invalid variable.
    /// Unknown `RELAY_*` variables are rejected: a typo must not silently fall back to a default.
    public static func parse(environment env: [String: String], isRoot: Bool) throws(ConfigError) -> RelayConfig {
        let known = Set(variables)
        for name in env.keys.sorted() where name.hasPrefix("RELAY_") && !known.contains(name) {
            let hint = closest(to: name, in: known).map { " (did you mean \($0)?)" } ?? ""
            throw ConfigError(name, "unknown variable\(hint); the relay reads: \(variables.joined(separator: ", "))")
        }
        func value(_ name: String) -> String? {
            guard let v = env[name]?.trimmingCharacters(), !v.isEmpty else { return nil }
            return v
        }

        var c = RelayConfig(socketPath: defaultSocketPath(isRoot: isRoot))
        if let path = value("RELAY_SOCKET") {
            c.socketPath = try validateSocketPath(path)
        }
        if let mode = value("RELAY_SOCKET_MODE") {
            guard mode.allSatisfy({ ("0"..."7").contains($0) }), let m = UInt32(mode, radix: 8), m <= 0o777 else {
                throw ConfigError("RELAY_SOCKET_MODE", "'\(mode)' is not an octal file mode; expected e.g. 0660 (owner and group read/write)")
            }
            c.socketMode = m
        }
        c.socketGroup = value("RELAY_SOCKET_GROUP")
        if let url = value("REDIS_URL") {
            c.redisURL = try RedisURL.parse(url)
        }
        c.redisTLS = try RedisTLSOptions.parse(value, url: c.redisURL)
        try sentinelCredentials(value("RELAY_REDIS_SENTINEL_USERNAME"), value("RELAY_REDIS_SENTINEL_PASSWORD"), into: &c)
        try clusterPubSub(value("RELAY_REDIS_CLUSTER_PUBSUB"), into: &c)
        if let v = value("RELAY_REDIS_TIMEOUT") {
            c.redisTimeoutMilliseconds = try duration(v, "RELAY_REDIS_TIMEOUT", min: 100, max: 60_000)
        }
        if let v = value("RELAY_REDIS_BACKOFF_MAX") {
            c.redisBackoffMaxMilliseconds = try duration(v, "RELAY_REDIS_BACKOFF_MAX", min: 100, max: 30_000)
        }
        c.databaseURL = value("DATABASE_URL")
        if let v = value("RELAY_LEADER_TTL") {
            c.leaderTTLMilliseconds = try duration(v, "RELAY_LEADER_TTL", min: 300, max: 60_000)
        }
        if let channels = value("RELAY_PG_CHANNELS") {
            c.pgChannels = channels.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
            for ch in c.pgChannels where ch.utf8.count >= 64 {
                throw ConfigError("RELAY_PG_CHANNELS", "channel '\(ch)' is \(ch.utf8.count) bytes; PostgreSQL channel names must be under 64 bytes")
            }
        }
        if c.databaseURL != nil && c.pgChannels.isEmpty {
            throw ConfigError("RELAY_PG_CHANNELS", "DATABASE_URL is set but no channel is; list the Postgres channels to LISTEN, comma-separated (e.g. orders,users)")
        }
        c.pgPrefix = env["RELAY_PG_PREFIX"] ?? ""
        if let ns = value("RELAY_NAMESPACE") { c.namespace = ns }
        if let v = value("RELAY_MAX_MESSAGE_BYTES") {
            c.maxMessageBytes = try size(v, "RELAY_MAX_MESSAGE_BYTES", min: 1, max: 512 << 20)
        }
        if let v = value("RELAY_MAX_ARGUMENTS") {
            guard let n = Int(v), n >= 3, n <= Int(Int32.max) else {
                throw ConfigError("RELAY_MAX_ARGUMENTS", "'\(v)' is not a whole number from 3 to 2147483647")
            }
            c.maxArguments = n
        }
        if let v = value("RELAY_QUERY_BUFFER_LIMIT") {
            c.queryBufferLimit = try size(v, "RELAY_QUERY_BUFFER_LIMIT", min: 1 << 20, max: 1 << 40)
        }
        if c.queryBufferLimit < c.maxMessageBytes {
            throw ConfigError("RELAY_QUERY_BUFFER_LIMIT", "\(c.queryBufferLimit) bytes is below RELAY_MAX_MESSAGE_BYTES (\(c.maxMessageBytes)); a largest message could never be read")
        }
        if let v = value("RELAY_CLIENT_BUFFER_LIMIT") {
            let parts = v.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 3 else {
                throw ConfigError("RELAY_CLIENT_BUFFER_LIMIT", "'\(v)' must be three values 'hard soft seconds', e.g. '32mb 8mb 60' (0 disables a limit)")
            }
            let hard = try size(String(parts[0]), "RELAY_CLIENT_BUFFER_LIMIT", min: 0, max: 1 << 40)
            let soft = try size(String(parts[1]), "RELAY_CLIENT_BUFFER_LIMIT", min: 0, max: 1 << 40)
            guard let seconds = Int(parts[2]), seconds >= 0 else {
                throw ConfigError("RELAY_CLIENT_BUFFER_LIMIT", "'\(parts[2])' is not a whole number of seconds")
            }
            c.clientBufferLimit = OutputBufferLimit(hardBytes: hard, softBytes: soft, softSeconds: seconds)
        }
        if let addr = env["RELAY_METRICS_ADDR"] {
            let a = addr.trimmingCharacters()
            if a.isEmpty {
                c.metricsAddress = nil
            } else if a.hasPrefix("/") {
                c.metricsAddress = try validateSocketPath(a, variable: "RELAY_METRICS_ADDR")
            } else {
                guard let colon = a.lastIndex(of: ":"), let port = UInt16(a[a.index(after: colon)...]), port > 0,
                      !a[..<colon].isEmpty else {
                    throw ConfigError("RELAY_METRICS_ADDR", "'\(a)' is not host:port (e.g. 127.0.0.1:9464), a socket path, or empty to disable")
                }
                c.metricsAddress = a
            }
        }
        if let level = value("RELAY_LOG_LEVEL") {
            guard logLevels.contains(level.lowercased()) else {
                throw ConfigError("RELAY_LOG_LEVEL", "'\(level)' is not a log level; expected one of \(logLevels.joined(separator: ", "))")
            }
            c.logLevel = level.lowercased()
        }
        if let format = value("RELAY_LOG_FORMAT") {
            guard let f = LogFormat(rawValue: format.lowercased()) else {
                throw ConfigError("RELAY_LOG_FORMAT", "'\(format)' is not a log format; expected text or json")
            }
            c.logFormat = f
        }
        if let debug = value("RELAY_ENABLE_DEBUG_COMMAND") {
            c.debugCommandEnabled = try yesNo(debug, "RELAY_ENABLE_DEBUG_COMMAND")
        }
        try listenerAndPassword(env, value, into: &c)
        return c
    }

    private static func yesNo(_ text: String, _ variable: String) throws(ConfigError) -> Bool {
        switch text.lowercased() {
        case "yes", "true", "1": return true
        case "no", "false", "0": return false
        default: throw ConfigError(variable, "'\(text)' is not yes or no")
        }
    }

    /// The TCP listener and the password, which depend on each other: an address other hosts can
    /// reach needs `RELAY_TCP_ALLOW_REMOTE=yes`, and that needs a password.
    private static func listenerAndPassword(_ env: [String: String], _ value: (String) -> String?, into c: inout RelayConfig) throws(ConfigError) {
        // The password is taken as given: leading or trailing spaces may be part of it.
        let password = env["RELAY_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        c.passwordFile = value("RELAY_PASSWORD_FILE")
        if password != nil && c.passwordFile != nil {
            throw ConfigError("RELAY_PASSWORD_FILE", "is set together with RELAY_PASSWORD; give the password one way, the variable or the file")
        }
        if let password { c.password = try RelayPassword.fromVariable(password) }
        if let allow = value("RELAY_TCP_ALLOW_REMOTE") {
            c.tcpAllowRemote = try yesNo(allow, "RELAY_TCP_ALLOW_REMOTE")
        }
        if let address = value("RELAY_TCP_ADDR") {
            let a = try TCPListenAddress.parse(address)
            if !a.isLoopback && !c.tcpAllowRemote {
                throw ConfigError("RELAY_TCP_ADDR", "\(a) is not a loopback address; the TCP listener takes 127.0.0.0/8 or [::1] (e.g. 127.0.0.1:6380), or set RELAY_TCP_ALLOW_REMOTE=yes with RELAY_PASSWORD to listen where other hosts can connect")
            }
            c.tcpAddress = a
        }
        if c.tcpAllowRemote && !c.requiresPassword {
            throw ConfigError("RELAY_TCP_ALLOW_REMOTE", "is yes but no password is set; other hosts may connect only with one: set RELAY_PASSWORD or RELAY_PASSWORD_FILE")
        }
    }

    /// Reads `RELAY_PASSWORD_FILE` into `password` with `readFile` (the file's bytes, or the
    /// reason it cannot be read, e.g. strerror's text). Nothing to do without the variable.
    public mutating func loadPassword(readFile: (String) -> Result<[UInt8], FileReadFailure>) throws(ConfigError) {
        guard let path = passwordFile else { return }
        switch readFile(path) {
        case .failure(let failure):
            throw ConfigError("RELAY_PASSWORD_FILE", "cannot read \(path) (\(failure.reason)); give a readable file whose first line is the password")
        case .success(let contents):
            password = try RelayPassword.fromFile(contents: contents, path: path)
        }
    }

    /// What a reload (SIGHUP) can apply without reconnecting, and what needs a restart.
    public struct ReloadPlan: Equatable, Sendable {
        /// `VARIABLE: old -> new` for each change that is applied.
        public var applied: [String] = []
        /// Variables whose change only takes effect after a restart.
        public var needsRestart: [String] = []
    }

    /// Compares the running configuration with a newly read one.
    public func reloadPlan(to new: RelayConfig) -> ReloadPlan {
        var plan = ReloadPlan()
        func applied<T: Equatable>(_ name: String, _ a: T, _ b: T, _ show: (T) -> String = { "\($0)" }) {
            if a != b { plan.applied.append("\(name): \(show(a)) -> \(show(b))") }
        }
        func restart<T: Equatable>(_ name: String, _ a: T, _ b: T) {
            if a != b { plan.needsRestart.append(name) }
        }
        applied("RELAY_LOG_LEVEL", logLevel, new.logLevel)
        applied("RELAY_MAX_MESSAGE_BYTES", maxMessageBytes, new.maxMessageBytes)
        applied("RELAY_MAX_ARGUMENTS", maxArguments, new.maxArguments)
        applied("RELAY_QUERY_BUFFER_LIMIT", queryBufferLimit, new.queryBufferLimit)
        applied("RELAY_CLIENT_BUFFER_LIMIT", clientBufferLimit, new.clientBufferLimit) {
            "\($0.hardBytes) \($0.softBytes) \($0.softSeconds)"
        }
        applied("RELAY_ENABLE_DEBUG_COMMAND", debugCommandEnabled, new.debugCommandEnabled)
        // The TLS settings are read for each new upstream connection, so they apply without a
        // restart — unless REDIS_URL changed too: the running link keeps its URL, and the TLS
        // settings that go with it.
        let tlsSettings: [(String, (RedisTLSOptions?) -> String?)] = [
            (RedisTLSOptions.caFileVariable, { $0?.caFile }), (RedisTLSOptions.certFileVariable, { $0?.certFile }),
            (RedisTLSOptions.keyFileVariable, { $0?.keyFile }), (RedisTLSOptions.serverNameVariable, { $0?.serverName }),
        ]
        for (name, setting) in tlsSettings {
            if redisURL == new.redisURL {
                applied(name, setting(redisTLS), setting(new.redisTLS)) { $0 ?? "(unset)" }
            } else {
                restart(name, setting(redisTLS), setting(new.redisTLS))
            }
        }
        restart("RELAY_SOCKET", socketPath, new.socketPath)
        restart("RELAY_SOCKET_MODE", socketMode, new.socketMode)
        restart("RELAY_SOCKET_GROUP", socketGroup, new.socketGroup)
        restart("REDIS_URL", redisURL?.withoutSentinelCredentials.withoutClusterPubSub,
                new.redisURL?.withoutSentinelCredentials.withoutClusterPubSub)
        restart("RELAY_REDIS_SENTINEL_USERNAME", redisURL?.sentinel?.username, new.redisURL?.sentinel?.username)
        restart("RELAY_REDIS_SENTINEL_PASSWORD", redisURL?.sentinel?.password, new.redisURL?.sentinel?.password)
        restart("RELAY_REDIS_CLUSTER_PUBSUB", redisURL?.cluster?.pubsub, new.redisURL?.cluster?.pubsub)
        restart("RELAY_REDIS_TIMEOUT", redisTimeoutMilliseconds, new.redisTimeoutMilliseconds)
        restart("RELAY_REDIS_BACKOFF_MAX", redisBackoffMaxMilliseconds, new.redisBackoffMaxMilliseconds)
        restart("RELAY_LEADER_TTL", leaderTTLMilliseconds, new.leaderTTLMilliseconds)
        restart("DATABASE_URL", databaseURL, new.databaseURL)
        restart("RELAY_PG_CHANNELS", pgChannels, new.pgChannels)
        restart("RELAY_PG_PREFIX", pgPrefix, new.pgPrefix)
        restart("RELAY_NAMESPACE", namespace, new.namespace)
        restart("RELAY_METRICS_ADDR", metricsAddress, new.metricsAddress)
        restart("RELAY_LOG_FORMAT", logFormat, new.logFormat)
        restart("RELAY_TCP_ADDR", tcpAddress, new.tcpAddress)
        restart("RELAY_TCP_ALLOW_REMOTE", tcpAllowRemote, new.tcpAllowRemote)
        // Named by the variable only: the log line must never show a password.
        restart(passwordFile != nil || new.passwordFile != nil ? "RELAY_PASSWORD_FILE" : "RELAY_PASSWORD",
                PasswordSetting(password, passwordFile), PasswordSetting(new.password, new.passwordFile))
        return plan
    }

    /// The running configuration with the reloadable settings of `new` applied.
    public func applyingReloadable(from new: RelayConfig) -> RelayConfig {
        var c = self
        c.logLevel = new.logLevel
        c.maxMessageBytes = new.maxMessageBytes
        c.maxArguments = new.maxArguments
        c.queryBufferLimit = new.queryBufferLimit
        c.clientBufferLimit = new.clientBufferLimit
        c.debugCommandEnabled = new.debugCommandEnabled
        if redisURL == new.redisURL { c.redisTLS = new.redisTLS }
        return c
    }

    /// Why a file could not be read (strerror's text).
    public struct FileReadFailure: Error, Sendable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    /// What a reload compares of the password settings.
    private struct PasswordSetting: Equatable {
        var password: RelayPassword?
        var file: String?
        init(_ password: RelayPassword?, _ file: String?) {
            self.password = password
            self.file = file
        }
    }

    /// The sentinels' own credentials, kept in the sentinel part of `REDIS_URL` (README,
    /// "Redis Sentinel"); meaningless, and refused, with any other form of the URL.
    static func sentinelCredentials(_ username: String?, _ password: String?, into c: inout RelayConfig) throws(ConfigError) {
        guard username != nil || password != nil else { return }
        let name = password != nil ? "RELAY_REDIS_SENTINEL_PASSWORD" : "RELAY_REDIS_SENTINEL_USERNAME"
        guard c.redisURL?.sentinel != nil else {
            throw ConfigError(name, "is set but REDIS_URL is not a redis-sentinel:// URL; unset it, or list the sentinels in REDIS_URL")
        }
        guard password != nil else {
            throw ConfigError("RELAY_REDIS_SENTINEL_USERNAME", "is set without RELAY_REDIS_SENTINEL_PASSWORD; a sentinel user logs in with both (AUTH user password)")
        }
        c.redisURL!.sentinel!.username = username
        c.redisURL!.sentinel!.password = password
    }

    /// `RELAY_REDIS_CLUSTER_PUBSUB`, kept in the cluster part of `REDIS_URL` (README, "Redis
    /// Cluster"); meaningless, and refused, with any other form of the URL.
    static func clusterPubSub(_ text: String?, into c: inout RelayConfig) throws(ConfigError) {
        guard let text else { return }
        let name = "RELAY_REDIS_CLUSTER_PUBSUB"
        guard let mode = RedisURL.Cluster.PubSubMode(rawValue: text.lowercased()) else {
            throw ConfigError(name, "'\(text)' is not a cluster pub/sub mode; expected sharded (SPUBLISH/SSUBSCRIBE, Redis 7, each channel on the master of its slot) or classic (PUBLISH/SUBSCRIBE, broadcast to every node)")
        }
        guard c.redisURL?.cluster != nil else {
            throw ConfigError(name, "is set but REDIS_URL is not a redis-cluster:// URL; unset it, or list the cluster's nodes in REDIS_URL")
        }
        c.redisURL!.cluster!.pubsub = mode
    }

    /// A Unix socket path the kernel accepts: not abstract, at most 107 bytes (sun_path less NUL).
    public static func validateSocketPath(_ path: String, variable: String = "RELAY_SOCKET") throws(ConfigError) -> String {
        if path.hasPrefix("@") || path.utf8.first == 0 {
            throw ConfigError(variable, "abstract socket names ('\(path)') are not supported; use a filesystem path so that its mode and group protect it")
        }
        if path.utf8.count > 107 {
            throw ConfigError(variable, "path is \(path.utf8.count) bytes; a Unix socket path must be at most 107 bytes")
        }
        if path.hasSuffix("/") {
            throw ConfigError(variable, "'\(path)' names a directory; give the socket file's path, e.g. /run/pubsub-relay/relay.sock")
        }
        return path
    }

    /// Redis's `memtoull` units: b, k/kb, m/mb, g/gb (k = 1000, kb = 1024), case-insensitive.
    public static func parseSize(_ text: String) -> Int? {
        let t = text.lowercased()
        let units: [(String, Int)] = [("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 1_000_000_000), ("m", 1_000_000), ("k", 1000), ("b", 1)]
        var multiplier = 1
        var digits = Substring(t)
        for (suffix, m) in units where t.hasSuffix(suffix) {
            multiplier = m
            digits = t.dropLast(suffix.count)
            break
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let n = Int(digits) else { return nil }
        let (r, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : r
    }

    /// A duration: `250ms`, `3s`, `1.5s`, or a plain number of seconds. Returns milliseconds.
    public static func parseDuration(_ text: String) -> Int? {
        let t = text.lowercased()
        var scale = 1000.0
        var number = Substring(t)
        if t.hasSuffix("ms") { scale = 1; number = t.dropLast(2) } else if t.hasSuffix("s") { number = t.dropLast() }
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let n = Double(number), n.isFinite else { return nil }
        let ms = (n * scale).rounded()
        return ms <= Double(Int32.max) ? Int(ms) : nil
    }

    private static func duration(_ text: String, _ variable: String, min: Int, max: Int) throws(ConfigError) -> Int {
        guard let ms = parseDuration(text) else {
            throw ConfigError(variable, "'\(text)' is not a duration; expected e.g. 500ms, 3s or 1.5s")
        }
        guard ms >= min, ms <= max else {
            throw ConfigError(variable, "\(text) is out of range; expected \(min)ms to \(max / 1000)s")
        }
        return ms
    }

    private static func size(_ text: String, _ variable: String, min: Int, max: Int) throws(ConfigError) -> Int {
        guard let n = parseSize(text) else {
            throw ConfigError(variable, "'\(text)' is not a size; expected a number with an optional unit b, kb, mb, gb (e.g. 1mb)")
        }
        guard n >= min, n <= max else {
            throw ConfigError(variable, "\(text) is out of range; expected \(min) to \(max) bytes")
        }
        return n
    }

    private static func closest(to name: String, in candidates: Set<String>) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var cur = [i] + Array(repeating: 0, count: b.count)
                for j in 1...max(b.count, 1) where !b.isEmpty {
                    cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                prev = cur
            }
            return prev[b.count]
        }
        let best = candidates.map { ($0, distance(Array(name), Array($0))) }.min { $0.1 < $1.1 }
        return best.flatMap { $0.1 <= 3 ? $0.0 : nil }
    }
}
