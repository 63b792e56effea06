import ArgumentParser
import Dispatch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Metrics
import Prometheus
import Relay
import RelayCore

@main
struct PubSubRelayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub-relay",
        abstract: "A Redis-protocol pub/sub hub on a Unix socket, bridged to a Redis backplane and to Postgres LISTEN/NOTIFY.",
        subcommands: [Run.self, CheckConfig.self, SQL.self],
        defaultSubcommand: Run.self
    )
}

/// Exit status for a configuration the relay cannot start with (sysexits EX_CONFIG); the
/// systemd unit's RestartPreventExitStatus=78 keeps a bad config from restart-looping.
let exitConfig: Int32 = 78

struct EnvironmentOptions: ParsableArguments {
    @Option(name: .customLong("env-file"), help: "Read variables from this file (systemd EnvironmentFile syntax); they override the process environment.")
    var envFile: String?

    /// The process environment merged with the env file, or exits 78 with one line. Also
    /// returns the variables the file set, for `reloadConfig`.
    func loadConfig() -> Loaded {
        switch readConfig(dropping: []) {
        case .success(let loaded): return loaded
        case .failure(let error): fail(error.description)
        }
    }

    /// SIGHUP: the same reading, but a bad file is reported, not fatal. Under systemd the
    /// start-time file is also in the process environment (`EnvironmentFile=`): its variables
    /// are dropped first, so that a line deleted from the file really goes back to its default.
    func reloadConfig(startFileKeys: Set<String>) -> Result<Loaded, ConfigError> {
        readConfig(dropping: startFileKeys)
    }

    /// A configuration, the variables its env file set, and the Redis TLS files it names, read.
    struct Loaded {
        var config: RelayConfig
        var fileKeys: Set<String>
        var redisTLS: RedisTLS?
    }

    private func readConfig(dropping: Set<String>) -> Result<Loaded, ConfigError> {
        var env = ProcessInfo.processInfo.environment
        for key in dropping { env[key] = nil }
        var fileKeys: Set<String> = []
        if let path = envFile {
            switch Self.readFile(path) {
            case .failure(let error): return .failure(error)
            case .success(let text):
                do {
                    for (key, value) in try EnvFile.parse(text, path: path) {
                        env[key] = value
                        fileKeys.insert(key)
                    }
                } catch {
                    return .failure(error)
                }
            }
        }
        var config: RelayConfig
        do {
            config = try RelayConfig.parse(environment: env, isRoot: geteuid() == 0)
            // Read here, like the TLS files: an unreadable file is a configuration error.
            try config.loadPassword { path in Self.readBytes(path) }
        } catch {
            return .failure(error)
        }
        if let url = config.databaseURL, let error = postgresConninfoError(url) {
            return .failure(ConfigError("DATABASE_URL", "libpq cannot read it: \(error); expected a conninfo string (host=… dbname=…) or a postgresql:// URI"))
        }
        // The one check that needs the system: the socket's group must exist.
        if let group = config.socketGroup, getgrnam(group) == nil, gid_t(group) == nil {
            return .failure(ConfigError("RELAY_SOCKET_GROUP", "no group named '\(group)' on this system; give an existing group name or numeric id"))
        }
        // The TLS files are read here too, so that a bad one is a configuration error (exit 78,
        // or a reload that changes nothing), named with its variable.
        let redisTLS: RedisTLS?
        do {
            redisTLS = try RedisTLS.load(config)
        } catch {
            return .failure(error)
        }
        return .success(Loaded(config: config, fileKeys: fileKeys, redisTLS: redisTLS))
    }

    /// A whole file's bytes, or strerror's text.
    static func readBytes(_ path: String) -> Result<[UInt8], RelayConfig.FileReadFailure> {
        let fd = open(path, O_RDONLY)
        if fd < 0 { return .failure(.init(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(.init(String(cString: strerror(errno)))) }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return .success(bytes)
    }

    private static func readFile(_ path: String) -> Result<String, ConfigError> {
        let bytes: [UInt8]
        switch readBytes(path) {
        case .failure(let failure):
            return .failure(ConfigError("--env-file \(path)", "cannot read it (\(failure.reason)); give a readable env file"))
        case .success(let read):
            bytes = read
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(ConfigError("--env-file \(path)", "not UTF-8 text"))
        }
        return .success(text)
    }

    private func fail(_ line: String) -> Never {
        printError("pubsub-relay: invalid configuration: \(line)")
        Glibc.exit(exitConfig)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the relay (the default).")

    @OptionGroup var options: EnvironmentOptions

    func run() throws {
        let loaded = options.loadConfig()
        let (config, startFileKeys) = (loaded.config, loaded.fileKeys)
        RelayLogHandler.setLevel(Logger.Level(rawValue: config.logLevel) ?? .info)
        let format: RelayLogHandler.Format = config.logFormat == .json ? .json : .text
        LoggingSystem.bootstrap { label in RelayLogHandler(label: label, format: format) }
        let logger = Logger(label: "pubsub-relay")

        // One registry backs the relay's metrics and swift-metrics (for libraries' metrics).
        let metrics = RelayMetrics()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))

        // glibc keeps a burst's freed memory while busy and returns it once quiet (HeapPolicy).
        HeapPolicy.apply()

        // Signals are handled on a queue, never in async-signal context.
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { signal(sig, SIG_IGN) }
        let server: RelayServer
        do {
            server = try RelayServer.start(config: config, environment: ProcessInfo.processInfo.environment,
                                           logger: logger, metrics: config.metricsAddress == nil ? nil : metrics,
                                           redisTLS: loaded.redisTLS)
        } catch {
            printError("pubsub-relay: cannot start: \(error)")
            Glibc.exit(1)
        }

        let stop = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "pubsub-relay.signals")
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                logger.info("signal received, stopping", metadata: ["signal": "\(sig == SIGTERM ? "SIGTERM" : "SIGINT")"])
                stop.signal()
            }
            source.resume()
            sources.append(source)
        }
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        hup.setEventHandler {
            logger.notice("SIGHUP: reloading", metadata: ["env_file": "\(options.envFile ?? "none (environment only)")"])
            switch options.reloadConfig(startFileKeys: startFileKeys) {
            case .success(let new): server.reload(new.config, redisTLS: new.redisTLS)
            case .failure(let error): server.reloadFailed(error.description)
            }
        }
        hup.resume()
        sources.append(hup)

        stop.wait()
        server.shutdown()
        withExtendedLifetime(sources) {}
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration (environment and --env-file) without starting; exit 0 or 78.")

    @OptionGroup var options: EnvironmentOptions

    func run() throws {
        let loaded = options.loadConfig()
        print(Self.summary(loaded.config, tls: loaded.redisTLS))
    }

    /// What the relay would run with `config`, in one line; connection strings with their
    /// passwords masked, as the relay logs them.
    static func summary(_ config: RelayConfig, tls: RedisTLS? = nil) -> String {
        var parts = ["configuration OK: socket \(config.socketPath) mode \(String(config.socketMode, radix: 8))"]
        if let tcp = config.tcpAddress {
            let reach = tcp.isLoopback ? "loopback" : "reachable from other hosts (RELAY_TCP_ALLOW_REMOTE=yes), plaintext"
            let warning = config.requiresPassword ? "" : ", no password: any local user can connect"
            parts.append("tcp \(tcp) (\(reach)\(warning))")
        } else {
            parts.append("tcp off")
        }
        if config.requiresPassword {
            let source = config.passwordFile.map { "from RELAY_PASSWORD_FILE \($0)" } ?? "from RELAY_PASSWORD"
            parts.append("password *** \(source) required on every listener (AUTH, as Redis's requirepass)")
        } else {
            parts.append("no password")
        }
        if let redis = config.redisURL {
            parts.append("redis backplane \(redis.redacted)" + (tls.map { " over TLS (\($0.summary))" } ?? "") + " (namespace '\(config.namespace)')")
            if let sentinel = redis.sentinel {
                let auth = sentinel.password == nil ? "no auth" : "auth as '\(sentinel.username ?? "default")' with a password"
                parts.append("master '\(sentinel.masterName)' found through Redis Sentinel: asks \(sentinel.sentinels.count) sentinel(s) \(sentinel.sentinels.map(\.description).joined(separator: ", ")) in turn (\(auth)), follows +switch-master")
            }
            if let cluster = redis.cluster {
                let pubsub = cluster.pubsub == .sharded
                    ? "sharded pub/sub (SSUBSCRIBE/SPUBLISH on the master of each channel's slot)"
                    : "classic pub/sub (SUBSCRIBE/PUBLISH, broadcast to every node)"
                parts.append("Redis Cluster: topology from CLUSTER SHARDS (CLUSTER SLOTS on servers before 7) of \(cluster.seeds.count) seed node(s) \(cluster.seeds.map(\.description).joined(separator: ", ")) asked in turn, \(pubsub)")
            }
        } else {
            parts.append("local mode (no REDIS_URL)")
        }
        if let database = config.databaseURL {
            let shown = ConnectionSecrets.masking(ConnectionSecrets.password(in: database, bareCredentialIsPassword: false), in: database)
            let how = config.redisURL == nil
                ? "without a backplane: every relay LISTENs and delivers to its own subscribers"
                : "one leader per fleet LISTENs and publishes to Redis (lease '\(config.namespace):pg-leader', ttl \(config.leaderTTLMilliseconds) ms)"
            parts.append("postgres bridge \(shown) on channels \(config.pgChannels.joined(separator: ",")) (prefix '\(config.pgPrefix)'), \(how)")
        }
        return parts.joined(separator: "; ")
    }
}

/// One line to stderr.
func printError(_ line: String) {
    let text = line + "\n"
    _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
}
