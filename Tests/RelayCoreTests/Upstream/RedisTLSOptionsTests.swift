import Testing
@testable import RelayCore

/// The consistency rules of the `RELAY_REDIS_TLS_*` variables (the files are read by the Relay
/// module and tested against a real redis-server in Tests/integration/test_tls.py).
@Suite struct RedisTLSOptionsTests {
    private func parse(_ env: [String: String]) throws(ConfigError) -> RelayConfig {
        try RelayConfig.parse(environment: env, isRoot: false)
    }

    private func error(_ env: [String: String]) -> ConfigError? {
        do {
            _ = try parse(env)
            return nil
        } catch {
            return error
        }
    }

    @Test func rediss_withoutVariablesTrustsTheSystemStore() throws {
        let c = try parse(["REDIS_URL": "rediss://redis.internal:6380"])
        #expect(c.redisTLS == RedisTLSOptions())
        #expect(try parse(["REDIS_URL": "redis://h"]).redisTLS == nil)
        #expect(try parse([:]).redisTLS == nil)
    }

    @Test func everyVariableIsRead() throws {
        let c = try parse([
            "REDIS_URL": "rediss://10.0.0.5:6380", "RELAY_REDIS_TLS_CA_FILE": "/etc/ca.pem",
            "RELAY_REDIS_TLS_CERT_FILE": "/c.pem", "RELAY_REDIS_TLS_KEY_FILE": "/k.pem",
            "RELAY_REDIS_TLS_SERVER_NAME": "redis.internal",
        ])
        #expect(c.redisTLS == RedisTLSOptions(caFile: "/etc/ca.pem", certFile: "/c.pem", keyFile: "/k.pem", serverName: "redis.internal"))
        // Blank values are unset, as for every variable.
        #expect(try parse(["REDIS_URL": "rediss://h", "RELAY_REDIS_TLS_CA_FILE": "  "]).redisTLS == RedisTLSOptions())
    }

    /// A typo'd scheme must not send the password in plaintext with the TLS settings ignored.
    @Test(arguments: RedisTLSOptions.variables)
    func tlsVariableWithoutTLSURLIsRefused(variable: String) {
        let e = error(["REDIS_URL": "redis://:secret@h:6380", variable: variable.hasSuffix("NAME") ? "redis.internal" : "/x.pem"])
        #expect(e?.variable == variable)
        #expect(e?.message.contains("rediss://") == true)
        #expect(e?.message.contains("secret") == false, "the password is masked")
        #expect(error(["REDIS_URL": "unix:///r.sock", variable: "x"])?.variable == variable)
        #expect(error([variable: "x"])?.message.contains("REDIS_URL is not set") == true)
    }

    @Test func certificateAndKeyGoTogether() {
        #expect(error(["REDIS_URL": "rediss://h", "RELAY_REDIS_TLS_CERT_FILE": "/c.pem"])?.variable == "RELAY_REDIS_TLS_KEY_FILE")
        #expect(error(["REDIS_URL": "rediss://h", "RELAY_REDIS_TLS_KEY_FILE": "/k.pem"])?.variable == "RELAY_REDIS_TLS_CERT_FILE")
    }

    @Test(arguments: ["redis.internal", "redis", "r-1.example.com", "redis_a.internal"])
    func serverNamesAccepted(name: String) throws {
        #expect(try parse(["REDIS_URL": "rediss://10.0.0.5", "RELAY_REDIS_TLS_SERVER_NAME": name]).redisTLS?.serverName == name)
    }

    @Test(arguments: [("10.0.0.5", "IP address"), ("::1", "not a host name"), ("redis internal", "not a host name"),
                      ("a..b", "not a host name"), ("-a.b", "not a host name"), ("https://redis", "not a host name"),
                      (String(repeating: "a", count: 64) + ".b", "not a host name")])
    func serverNamesRefused(name: String, words: String) {
        let e = error(["REDIS_URL": "rediss://10.0.0.5", "RELAY_REDIS_TLS_SERVER_NAME": name])
        #expect(e?.variable == "RELAY_REDIS_TLS_SERVER_NAME")
        #expect(e?.message.contains(words) == true, "\(e?.description ?? "accepted")")
    }

    /// The TLS settings are read at each new connection, so a reload applies them, unless
    /// REDIS_URL changed too (then they stay with the running URL until the restart).
    @Test func reloadAppliesTLSSettingsForTheSameURL() throws {
        let old = try parse(["REDIS_URL": "rediss://h", "RELAY_REDIS_TLS_SERVER_NAME": "a.internal"])
        let new = try parse(["REDIS_URL": "rediss://h", "RELAY_REDIS_TLS_SERVER_NAME": "b.internal",
                             "RELAY_REDIS_TLS_CA_FILE": "/ca.pem"])
        let plan = old.reloadPlan(to: new)
        #expect(plan.applied == ["RELAY_REDIS_TLS_CA_FILE: (unset) -> /ca.pem", "RELAY_REDIS_TLS_SERVER_NAME: a.internal -> b.internal"])
        #expect(plan.needsRestart.isEmpty)
        #expect(old.applyingReloadable(from: new).redisTLS == new.redisTLS)

        let otherURL = try parse(["REDIS_URL": "rediss://other", "RELAY_REDIS_TLS_CA_FILE": "/ca.pem"])
        let restart = old.reloadPlan(to: otherURL)
        #expect(restart.applied.isEmpty)
        #expect(restart.needsRestart == ["RELAY_REDIS_TLS_CA_FILE", "RELAY_REDIS_TLS_SERVER_NAME", "REDIS_URL"])
        #expect(old.applyingReloadable(from: otherURL).redisTLS == old.redisTLS)
    }
}
