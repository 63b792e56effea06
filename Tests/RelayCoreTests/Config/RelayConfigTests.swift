import Foundation
import Testing
@testable import RelayCore

/// The error `parse` throws for `env`, or nil when it accepts it.
private func configError(_ env: [String: String], isRoot: Bool = false) -> ConfigError? {
    do {
        _ = try RelayConfig.parse(environment: env, isRoot: isRoot)
        return nil
    } catch {
        return error
    }
}

@Suite struct RelayConfigTests {
    // MARK: Defaults (README, "Configuration")

    @Test func defaultsWhenNothingIsSet() throws {
        let c = try RelayConfig.parse(environment: [:], isRoot: false)
        #expect(c.socketPath == "./relay.sock")
        #expect(c.socketMode == 0o660)
        #expect(c.socketGroup == nil)
        #expect(c.redisURL == nil)
        #expect(c.databaseURL == nil)
        #expect(c.pgChannels == [])
        #expect(c.pgPrefix == "")
        #expect(c.namespace == "pubsub-relay")
        #expect(c.maxMessageBytes == 1 << 20)
        #expect(c.clientBufferLimit == .init(hardBytes: 32 << 20, softBytes: 8 << 20, softSeconds: 60))
        #expect(c.metricsAddress == "127.0.0.1:9464")
        #expect(c.logLevel == "info")
        #expect(c.logFormat == .text)
    }

    @Test func rootDefaultSocketIsUnderRun() throws {
        let c = try RelayConfig.parse(environment: [:], isRoot: true)
        #expect(c.socketPath == "/run/pubsub-relay/relay.sock")
    }

    /// Variables outside the relay's namespace (the rest of the process environment) are ignored.
    @Test func unrelatedVariablesAreIgnored() throws {
        let c = try RelayConfig.parse(environment: ["PATH": "/bin", "HOME": "/root", "RELAYX": "1"], isRoot: false)
        #expect(c == RelayConfig(socketPath: "./relay.sock"))
    }

    /// An empty or blank value means "use the default".
    @Test func blankValuesMeanDefault() throws {
        let c = try RelayConfig.parse(environment: [
            "RELAY_SOCKET": "", "RELAY_SOCKET_MODE": "  ", "RELAY_MAX_MESSAGE_BYTES": "", "RELAY_LOG_LEVEL": "\t",
        ], isRoot: false)
        #expect(c.socketPath == "./relay.sock")
        #expect(c.socketMode == 0o660)
        #expect(c.maxMessageBytes == 1 << 20)
        #expect(c.logLevel == "info")
    }

    // MARK: Valid values

    @Test func validValues() throws {
        let c = try RelayConfig.parse(environment: [
            "RELAY_SOCKET": "/run/app/relay.sock",
            "RELAY_SOCKET_MODE": "0600",
            "RELAY_SOCKET_GROUP": "www-data",
            "RELAY_PG_CHANNELS": " orders, users ,,audit ",
            "RELAY_PG_PREFIX": "pg:",
            "RELAY_NAMESPACE": "prod-relay",
            "RELAY_MAX_MESSAGE_BYTES": "1mb",
            "RELAY_MAX_ARGUMENTS": "1024",
            "RELAY_QUERY_BUFFER_LIMIT": "128mb",
            "RELAY_CLIENT_BUFFER_LIMIT": "32mb 8mb 60",
            "RELAY_METRICS_ADDR": "0.0.0.0:9100",
            "RELAY_LOG_LEVEL": " DEBUG ",
            "RELAY_LOG_FORMAT": "JSON",
        ], isRoot: false)
        #expect(c.socketPath == "/run/app/relay.sock")
        #expect(c.socketMode == 0o600)
        #expect(c.socketGroup == "www-data")
        #expect(c.pgChannels == ["orders", "users", "audit"])
        #expect(c.pgPrefix == "pg:")
        #expect(c.namespace == "prod-relay")
        #expect(c.maxMessageBytes == 1_048_576)
        #expect(c.maxArguments == 1024)
        #expect(c.queryBufferLimit == 128 << 20)
        #expect(c.clientBufferLimit == .init(hardBytes: 33_554_432, softBytes: 8_388_608, softSeconds: 60))
        #expect(c.metricsAddress == "0.0.0.0:9100")
        #expect(c.logLevel == "debug")
        #expect(c.logFormat == .json)
    }

    @Test(arguments: [
        ("0 0 0", RelayConfig.OutputBufferLimit(hardBytes: 0, softBytes: 0, softSeconds: 0)),
        ("64MB\t16mb  120", .init(hardBytes: 64 << 20, softBytes: 16 << 20, softSeconds: 120)),
        ("1gb 256kb 5", .init(hardBytes: 1 << 30, softBytes: 256 << 10, softSeconds: 5)),
        ("1000000 1k 1", .init(hardBytes: 1_000_000, softBytes: 1000, softSeconds: 1)),
    ])
    func clientBufferLimitForms(_ c: (String, RelayConfig.OutputBufferLimit)) throws {
        let config = try RelayConfig.parse(environment: ["RELAY_CLIENT_BUFFER_LIMIT": c.0], isRoot: false)
        #expect(config.clientBufferLimit == c.1)
    }

    @Test func metricsAddressForms() throws {
        #expect(try RelayConfig.parse(environment: ["RELAY_METRICS_ADDR": ""], isRoot: false).metricsAddress == nil)
        #expect(try RelayConfig.parse(environment: ["RELAY_METRICS_ADDR": "/run/relay/metrics.sock"], isRoot: false)
            .metricsAddress == "/run/relay/metrics.sock")
        #expect(try RelayConfig.parse(environment: ["RELAY_METRICS_ADDR": "[::1]:9464"], isRoot: false)
            .metricsAddress == "[::1]:9464")
    }

    @Test func largestMessageSizeNeedsAQueryBufferAsLarge() throws {
        let c = try RelayConfig.parse(environment: [
            "RELAY_MAX_MESSAGE_BYTES": "512mb", "RELAY_QUERY_BUFFER_LIMIT": "1gb",
        ], isRoot: false)
        #expect(c.maxMessageBytes == 512 << 20)
        #expect(configError(["RELAY_MAX_MESSAGE_BYTES": "2mb", "RELAY_QUERY_BUFFER_LIMIT": "1mb"])?.variable
            == "RELAY_QUERY_BUFFER_LIMIT")
    }

    // MARK: Invalid values name their variable

    @Test(arguments: [
        ("RELAY_SOCKET_MODE", "0866"), ("RELAY_SOCKET_MODE", "rw-rw----"), ("RELAY_SOCKET_MODE", "01000"),
        ("RELAY_SOCKET_MODE", "-1"), ("RELAY_SOCKET_MODE", "0x1ff"),
        ("RELAY_MAX_MESSAGE_BYTES", "0"), ("RELAY_MAX_MESSAGE_BYTES", "abc"), ("RELAY_MAX_MESSAGE_BYTES", "1tb"),
        ("RELAY_MAX_MESSAGE_BYTES", "-5"), ("RELAY_MAX_MESSAGE_BYTES", "1.5mb"), ("RELAY_MAX_MESSAGE_BYTES", "mb"),
        ("RELAY_MAX_MESSAGE_BYTES", "513mb"), ("RELAY_MAX_MESSAGE_BYTES", "99999999999999gb"),
        ("RELAY_MAX_ARGUMENTS", "2"), ("RELAY_MAX_ARGUMENTS", "many"), ("RELAY_MAX_ARGUMENTS", "2147483648"),
        ("RELAY_QUERY_BUFFER_LIMIT", "1kb"), ("RELAY_QUERY_BUFFER_LIMIT", "lots"),
        ("RELAY_CLIENT_BUFFER_LIMIT", "32mb 8mb"), ("RELAY_CLIENT_BUFFER_LIMIT", "32mb 8mb 60 1"),
        ("RELAY_CLIENT_BUFFER_LIMIT", "x 8mb 60"), ("RELAY_CLIENT_BUFFER_LIMIT", "32mb 8mb -1"),
        ("RELAY_CLIENT_BUFFER_LIMIT", "32mb 8mb 1m"),
        ("RELAY_METRICS_ADDR", "localhost"), ("RELAY_METRICS_ADDR", "127.0.0.1:0"),
        ("RELAY_METRICS_ADDR", "127.0.0.1:70000"), ("RELAY_METRICS_ADDR", ":9464"), ("RELAY_METRICS_ADDR", "host:http"),
        ("RELAY_LOG_LEVEL", "verbose"), ("RELAY_LOG_FORMAT", "xml"),
        ("RELAY_SOCKET", "@relay"), ("RELAY_SOCKET", "/run/pubsub-relay/"),
        ("REDIS_URL", "http://localhost:6379"),
        ("RELAY_PG_CHANNELS", "ok," + String(repeating: "c", count: 64)),
    ])
    func invalidValueNamesItsVariable(_ c: (String, String)) {
        let error = configError([c.0: c.1])
        #expect(error?.variable == c.0, "\(c.0)=\(c.1)")
        #expect(error?.description.hasPrefix("\(c.0): ") == true)
        #expect((error?.message.count ?? 0) > 10)
    }

    @Test func invalidValueMessagesSayWhatIsAccepted() {
        #expect(configError(["RELAY_LOG_FORMAT": "xml"])?.message.contains("text or json") == true)
        #expect(configError(["RELAY_SOCKET_MODE": "0866"])?.message.contains("0866") == true)
        #expect(configError(["RELAY_MAX_MESSAGE_BYTES": "lots"])?.message.contains("1mb") == true)
        #expect(configError(["RELAY_CLIENT_BUFFER_LIMIT": "32mb"])?.message.contains("hard soft seconds") == true)
    }

    // MARK: Unknown variables

    @Test(arguments: [
        ("RELAY_SOCKT", "RELAY_SOCKET"), ("RELAY_LOGLEVEL", "RELAY_LOG_LEVEL"),
        ("RELAY_MAX_MESSAGE_BYTE", "RELAY_MAX_MESSAGE_BYTES"), ("RELAY_NAMESPACES", "RELAY_NAMESPACE"),
    ])
    func unknownRelayVariableSuggestsTheClosest(_ c: (String, String)) {
        let error = configError([c.0: "x"])
        #expect(error?.variable == c.0)
        #expect(error?.message.contains("did you mean \(c.1)?") == true, "\(error?.message ?? "no error")")
    }

    @Test func unknownRelayVariableWithoutCloseMatchListsTheKnownOnes() {
        let error = configError(["RELAY_COMPLETELY_DIFFERENT_THING": "1"])
        #expect(error?.variable == "RELAY_COMPLETELY_DIFFERENT_THING")
        #expect(error?.message.contains("did you mean") == false)
        #expect(error?.message.contains("RELAY_SOCKET") == true)
    }

    /// A typo is reported even when the rest of the configuration is valid.
    @Test func unknownVariableIsRejectedAmongValidOnes() {
        #expect(configError(["RELAY_LOG_LEVEL": "debug", "RELAY_LOG_LEVLE": "info"])?.variable == "RELAY_LOG_LEVLE")
    }

    // MARK: Socket paths

    @Test func socketPathLengthLimitIs107Bytes() throws {
        let dir = "/run/"
        let ok = dir + String(repeating: "s", count: 107 - dir.utf8.count)
        #expect(ok.utf8.count == 107)
        #expect(try RelayConfig.parse(environment: ["RELAY_SOCKET": ok], isRoot: false).socketPath == ok)
        let tooLong = ok + "x"
        let error = configError(["RELAY_SOCKET": tooLong])
        #expect(error?.variable == "RELAY_SOCKET")
        #expect(error?.message.contains("107") == true)
        // Bytes, not characters: 54 two-byte characters are 108 bytes.
        #expect(configError(["RELAY_SOCKET": String(repeating: "é", count: 54)])?.variable == "RELAY_SOCKET")
    }

    @Test(arguments: ["@abstract", "@", "\u{0}abstract"])
    func abstractSocketNamesAreRejected(_ path: String) {
        let error = configError(["RELAY_SOCKET": path])
        #expect(error?.variable == "RELAY_SOCKET")
        #expect(error?.message.contains("abstract") == true)
    }

    @Test func metricsSocketPathIsValidatedToo() {
        let error = configError(["RELAY_METRICS_ADDR": "/" + String(repeating: "m", count: 120)])
        #expect(error?.variable == "RELAY_METRICS_ADDR")
    }

    // MARK: Sizes (Redis's memtoull units)

    @Test(arguments: [
        ("1mb", 1_048_576), ("1MB", 1_048_576), ("1Mb", 1_048_576), ("1m", 1_000_000), ("1k", 1000), ("1kb", 1024),
        ("1gb", 1 << 30), ("1g", 1_000_000_000), ("100", 100), ("100b", 100), ("32mb", 33_554_432), ("0", 0),
    ])
    func sizes(_ c: (String, Int)) {
        #expect(RelayConfig.parseSize(c.0) == c.1, "\(c.0)")
    }

    @Test(arguments: ["", "mb", "-1mb", "1.5mb", "1 mb", "1tb", "0x10", "99999999999gb", "ten", "1mbb"])
    func invalidSizes(_ text: String) {
        #expect(RelayConfig.parseSize(text) == nil, "'\(text)'")
    }

    // MARK: Documented variables

    @Test func everyVariableIsListedOnce() {
        let names = RelayConfig.variables
        #expect(Set(names).count == names.count)
        for required in ["RELAY_SOCKET", "RELAY_SOCKET_MODE", "RELAY_SOCKET_GROUP", "REDIS_URL", "DATABASE_URL",
                         "RELAY_PG_CHANNELS", "RELAY_PG_PREFIX", "RELAY_NAMESPACE", "RELAY_MAX_MESSAGE_BYTES",
                         "RELAY_CLIENT_BUFFER_LIMIT", "RELAY_METRICS_ADDR", "RELAY_LOG_LEVEL", "RELAY_LOG_FORMAT"] {
            #expect(names.contains(required), "\(required)")
        }
    }

    /// The shipped env file documents exactly the variables the relay reads, each as a commented
    /// `#NAME=default` line, and those defaults are the code's: uncommenting every line changes
    /// nothing (as root, where the socket default is /run/pubsub-relay/relay.sock).
    @Test func shippedEnvFileDocumentsEveryVariableWithTheCodesDefault() throws {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("systemd/pubsub-relay.env")
        let text = try String(contentsOf: url, encoding: .utf8)
        let documented = text.split(separator: "\n")
            .filter { $0.hasPrefix("#") && $0.dropFirst().contains("=") && $0.dropFirst().first?.isUppercase == true }
            .map { String($0.dropFirst()) }
        let assignments = try EnvFile.parse(documented.joined(separator: "\n"))
        #expect(assignments.map(\.key).sorted() == RelayConfig.variables.sorted())
        let env = Dictionary(uniqueKeysWithValues: assignments.map { ($0.key, $0.value) })
        #expect(try RelayConfig.parse(environment: env, isRoot: true) == RelayConfig.parse(environment: [:], isRoot: true))
    }
}

/// SIGHUP: which changes apply at once and which need a restart.
@Suite struct ReloadPlanTests {
    private func config(_ env: [String: String]) throws -> RelayConfig {
        try RelayConfig.parse(environment: env, isRoot: false)
    }

    @Test func nothingChangedMeansAnEmptyPlan() throws {
        let c = try config([:])
        #expect(c.reloadPlan(to: c) == RelayConfig.ReloadPlan())
    }

    @Test func limitsAndLogLevelApplyOthersNeedARestart() throws {
        let old = try config(["RELAY_LOG_LEVEL": "info"])
        let new = try config([
            "RELAY_LOG_LEVEL": "debug", "RELAY_MAX_MESSAGE_BYTES": "2kb",
            "RELAY_CLIENT_BUFFER_LIMIT": "4mb 1mb 5", "RELAY_SOCKET_MODE": "0600",
            "RELAY_METRICS_ADDR": "127.0.0.1:9999",
        ])
        let plan = old.reloadPlan(to: new)
        #expect(plan.applied == [
            "RELAY_LOG_LEVEL: info -> debug",
            "RELAY_MAX_MESSAGE_BYTES: 1048576 -> 2048",
            "RELAY_CLIENT_BUFFER_LIMIT: 33554432 8388608 60 -> 4194304 1048576 5",
        ])
        #expect(plan.needsRestart == ["RELAY_SOCKET_MODE", "RELAY_METRICS_ADDR"])

        let applied = old.applyingReloadable(from: new)
        #expect(applied.logLevel == "debug")
        #expect(applied.maxMessageBytes == 2048)
        #expect(applied.clientBufferLimit == .init(hardBytes: 4 << 20, softBytes: 1 << 20, softSeconds: 5))
        #expect(applied.socketMode == old.socketMode, "a restart-only setting must not change on reload")
        #expect(applied.metricsAddress == old.metricsAddress)
    }

    @Test func debugCommandSwitch() throws {
        #expect(try config(["RELAY_ENABLE_DEBUG_COMMAND": "yes"]).debugCommandEnabled)
        #expect(try !config([:]).debugCommandEnabled)
        #expect(throws: ConfigError.self) { try config(["RELAY_ENABLE_DEBUG_COMMAND": "maybe"]) }
    }
}

/// RELAY_TCP_ADDR, RELAY_TCP_ALLOW_REMOTE, RELAY_PASSWORD and RELAY_PASSWORD_FILE, which depend
/// on each other.
@Suite struct ListenerAndPasswordConfigTests {
    @Test func offByDefault() throws {
        let c = try RelayConfig.parse(environment: [:], isRoot: false)
        #expect(c.tcpAddress == nil)
        #expect(!c.tcpAllowRemote)
        #expect(c.password == nil)
        #expect(c.passwordFile == nil)
        #expect(!c.requiresPassword)
    }

    @Test func loopbackWithoutPasswordIsAllowed() throws {
        let c = try RelayConfig.parse(environment: ["RELAY_TCP_ADDR": "127.0.0.1:6380"], isRoot: false)
        #expect(c.tcpAddress?.description == "127.0.0.1:6380")
        let v6 = try RelayConfig.parse(environment: ["RELAY_TCP_ADDR": "[::1]:6380", "RELAY_PASSWORD": "pw"], isRoot: false)
        #expect(v6.tcpAddress?.isLoopback == true)
        #expect(v6.password == RelayPassword(Array("pw".utf8)))
    }

    @Test func nonLoopbackNeedsAllowRemote() {
        let e = configError(["RELAY_TCP_ADDR": "0.0.0.0:6380", "RELAY_PASSWORD": "pw"])
        #expect(e?.variable == "RELAY_TCP_ADDR")
        #expect(e?.message.contains("not a loopback address") == true)
        #expect(e?.message.contains("RELAY_TCP_ALLOW_REMOTE=yes") == true)
    }

    @Test func allowRemoteNeedsAPassword() throws {
        let e = configError(["RELAY_TCP_ADDR": "0.0.0.0:6380", "RELAY_TCP_ALLOW_REMOTE": "yes"])
        #expect(e?.variable == "RELAY_TCP_ALLOW_REMOTE")
        #expect(e?.message.contains("RELAY_PASSWORD") == true)
        let c = try RelayConfig.parse(environment: ["RELAY_TCP_ADDR": "0.0.0.0:6380", "RELAY_TCP_ALLOW_REMOTE": "yes",
                                                    "RELAY_PASSWORD_FILE": "/run/pw"], isRoot: false)
        #expect(c.tcpAllowRemote && c.requiresPassword && c.password == nil)
        #expect(c.tcpAddress?.isLoopback == false)
    }

    @Test func allowRemoteTakesYesOrNo() {
        #expect(configError(["RELAY_TCP_ALLOW_REMOTE": "maybe"])?.variable == "RELAY_TCP_ALLOW_REMOTE")
        #expect(configError(["RELAY_TCP_ALLOW_REMOTE": "no"]) == nil)
    }

    @Test func badAddressIsAConfigError() {
        #expect(configError(["RELAY_TCP_ADDR": "localhost:6380"])?.variable == "RELAY_TCP_ADDR")
        #expect(configError(["RELAY_TCP_ADDR": "127.0.0.1"])?.variable == "RELAY_TCP_ADDR")
    }

    @Test func passwordAndFileTogetherAreRefused() {
        let e = configError(["RELAY_PASSWORD": "pw", "RELAY_PASSWORD_FILE": "/run/pw"])
        #expect(e?.variable == "RELAY_PASSWORD_FILE")
    }

    /// Taken byte for byte, spaces included; empty means unset.
    @Test func passwordIsNotTrimmed() throws {
        #expect(try RelayConfig.parse(environment: ["RELAY_PASSWORD": " pw "], isRoot: false).password?.bytes == Array(" pw ".utf8))
        #expect(try RelayConfig.parse(environment: ["RELAY_PASSWORD": ""], isRoot: false).password == nil)
    }

    @Test func passwordFileIsReadByTheCallersReader() throws {
        var c = try RelayConfig.parse(environment: ["RELAY_PASSWORD_FILE": "/run/pw"], isRoot: false)
        try c.loadPassword { path in
            #expect(path == "/run/pw")
            return .success(Array("from-file\n".utf8))
        }
        #expect(c.password?.bytes == Array("from-file".utf8))
        var unreadable = try RelayConfig.parse(environment: ["RELAY_PASSWORD_FILE": "/run/pw"], isRoot: false)
        do {
            try unreadable.loadPassword { _ in .failure(.init("Permission denied")) }
            Issue.record("an unreadable file was accepted")
        } catch {
            #expect(error.variable == "RELAY_PASSWORD_FILE")
            #expect(error.message.contains("/run/pw (Permission denied)"))
        }
    }

    /// A changed password takes effect at the next start; the plan names the variable, never
    /// the value.
    @Test func passwordChangeNeedsARestartAndIsNotShown() throws {
        let old = try RelayConfig.parse(environment: ["RELAY_PASSWORD": "old-secret"], isRoot: false)
        let new = try RelayConfig.parse(environment: ["RELAY_PASSWORD": "new-secret", "RELAY_TCP_ADDR": "127.0.0.1:6380"], isRoot: false)
        let plan = old.reloadPlan(to: new)
        #expect(plan.needsRestart.contains("RELAY_PASSWORD"))
        #expect(plan.needsRestart.contains("RELAY_TCP_ADDR"))
        #expect(!(plan.applied + plan.needsRestart).joined().contains("secret"))
        #expect(old.reloadPlan(to: old).needsRestart.isEmpty)
    }
}
