import Testing
@testable import RelayCore

/// `redis-sentinel://` URLs and the sentinel credentials (README, "Redis Sentinel").
@Suite struct RedisURLSentinelTests {
    typealias Endpoint = RedisURL.Sentinel.Endpoint

    private func reason(_ url: String) -> String {
        do {
            _ = try RedisURL.parse(url)
            return "accepted"
        } catch {
            #expect(error.variable == "REDIS_URL")
            return error.description
        }
    }

    @Test func listOfSentinelsMasterAndDatabase() throws {
        let u = try RedisURL.parse("redis-sentinel://relay:s%40cret@10.0.0.7:26380,sentinel-b,[::1]:26381/mymaster/2")
        #expect(u.sentinel == RedisURL.Sentinel(
            sentinels: [Endpoint(host: "10.0.0.7", port: 26380), Endpoint(host: "sentinel-b", port: 26379), Endpoint(host: "::1", port: 26381)],
            masterName: "mymaster"))
        #expect(u.username == "relay")
        #expect(u.password == "s@cret")
        #expect(u.db == 2)
        #expect(u.sentinel?.tls == false)
    }

    @Test func oneSentinelNoDatabaseNoCredentials() throws {
        let u = try RedisURL.parse("redis-sentinel://127.0.0.1:26379/m")
        #expect(u.sentinel?.sentinels == [Endpoint(host: "127.0.0.1", port: 26379)])
        #expect(u.sentinel?.masterName == "m")
        #expect(u.db == 0)
        #expect(u.username == nil && u.password == nil)
        #expect(try RedisURL.parse("redis-sentinel://h/m/").db == 0)
        #expect(try RedisURL.parse("redis-sentinel://pw@h/m").password == "pw")
    }

    @Test func theTLSFormCarriesTLSToTheSentinelsAndTheMaster() throws {
        let u = try RedisURL.parse("rediss-sentinel://relay:pw@h1:26379,h2/m/1")
        #expect(u.sentinel == RedisURL.Sentinel(
            sentinels: [Endpoint(host: "h1", port: 26379), Endpoint(host: "h2", port: 26379)], masterName: "m", tls: true))
        #expect(u.tls, "the master connection carries TLS too")
        #expect(u.db == 1 && u.username == "relay" && u.password == "pw")
        #expect(u.redacted == "rediss-sentinel://relay:***@h1:26379,h2:26379/m/1")
        // The plain form stays plain.
        let plain = try RedisURL.parse("redis-sentinel://h1/m")
        #expect(!plain.tls && plain.sentinel?.tls == false)
        // The same clear errors as the plain form.
        #expect(reason("rediss-sentinel://h1:26379").contains("names no master"))
        #expect(reason("rediss-sentinel:///m").contains("lists no sentinel"))
        #expect(reason("rediss-sentinel://h1:x/m").contains("not a TCP port"))
    }

    /// The RELAY_REDIS_TLS_* variables apply to rediss-sentinel:// as to rediss://, and stay
    /// refused with the plain sentinel form (a typo'd scheme would send the passwords in plaintext).
    @Test func tlsSettingsApplyToTheTLSFormOnly() throws {
        let c = try RelayConfig.parse(environment: [
            "REDIS_URL": "rediss-sentinel://h1,h2/m", "RELAY_REDIS_TLS_CA_FILE": "/ca.pem",
            "RELAY_REDIS_TLS_SERVER_NAME": "redis.internal", "RELAY_REDIS_SENTINEL_PASSWORD": "s",
        ], isRoot: false)
        #expect(c.redisTLS == RedisTLSOptions(caFile: "/ca.pem", serverName: "redis.internal"))
        #expect(c.redisURL?.sentinel?.password == "s" && c.redisURL?.sentinel?.tls == true)
        #expect(try RelayConfig.parse(environment: ["REDIS_URL": "rediss-sentinel://h1/m"], isRoot: false).redisTLS == RedisTLSOptions())
        do {
            _ = try RelayConfig.parse(environment: ["REDIS_URL": "redis-sentinel://:secret@h1/m", "RELAY_REDIS_TLS_CA_FILE": "/ca.pem"],
                                      isRoot: false)
            Issue.record("a TLS setting with redis-sentinel:// was accepted")
        } catch {
            #expect(error.variable == "RELAY_REDIS_TLS_CA_FILE")
            #expect(error.message.contains("without TLS") && error.message.contains("rediss-sentinel://"))
            #expect(!error.message.contains("secret"))
        }
    }

    @Test func clearErrors() {
        #expect(reason("redis-sentinel://h1:26379,h2:26379").contains("names no master"))
        #expect(reason("redis-sentinel://h1:26379/").contains("names no master"))
        #expect(reason("redis-sentinel:///m").contains("lists no sentinel"))
        #expect(reason("redis-sentinel://u:p@/m").contains("lists no sentinel"))
        #expect(reason("redis-sentinel://h1:26379,,h2/m").contains("has no host"))
        #expect(reason("redis-sentinel://h1:port/m").contains("not a TCP port"))
        #expect(reason("redis-sentinel://h1:0/m").contains("not a TCP port"))
        #expect(reason("redis-sentinel://[::1/m").contains("unterminated"))
        #expect(reason("redis-sentinel://h1/m/x").contains("not a database number"))
        #expect(reason("redis-sentinel://h1/m/1/2").contains("found more path"))
        #expect(reason("redis-sentinel://h1/m?db=1").contains("query parameters"))
        // Errors never show the password.
        #expect(!reason("redis-sentinel://u:secret@h1:x/m").contains("secret"))
        #expect(!reason("redis-sentinel://u:secret@h1").contains("secret"))
    }

    @Test func redactedShowsTheShapeNotThePassword() throws {
        #expect(try RedisURL.parse("redis-sentinel://relay:secret@a:1,b:2/m/3").redacted == "redis-sentinel://relay:***@a:1,b:2/m/3")
        #expect(try RedisURL.parse("redis-sentinel://[::1]/m").redacted == "redis-sentinel://[::1]:26379/m/0")
    }

    @Test func theOtherFormsAreUnchanged() throws {
        #expect(try RedisURL.parse("redis://h:1").sentinel == nil)
        #expect(try RedisURL.parse("unix:///r.sock").sentinel == nil)
    }

    // MARK: RELAY_REDIS_SENTINEL_USERNAME / _PASSWORD

    @Test func sentinelCredentialsGoToTheSentinelsOnly() throws {
        let c = try RelayConfig.parse(environment: [
            "REDIS_URL": "redis-sentinel://data:pw@h1/m", "RELAY_REDIS_SENTINEL_USERNAME": "watcher",
            "RELAY_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        ], isRoot: false)
        #expect(c.redisURL?.sentinel?.username == "watcher")
        #expect(c.redisURL?.sentinel?.password == "sentinel-secret")
        #expect(c.redisURL?.username == "data" && c.redisURL?.password == "pw")
        #expect(!c.redisURL!.redacted.contains("sentinel-secret"))
        let passwordOnly = try RelayConfig.parse(environment: [
            "REDIS_URL": "redis-sentinel://h1/m", "RELAY_REDIS_SENTINEL_PASSWORD": "x",
        ], isRoot: false)
        #expect(passwordOnly.redisURL?.sentinel?.password == "x")
        #expect(passwordOnly.redisURL?.sentinel?.username == nil)
    }

    @Test func sentinelCredentialsNeedASentinelURLAndAPassword() {
        func error(_ env: [String: String]) -> ConfigError? {
            do {
                _ = try RelayConfig.parse(environment: env, isRoot: false)
                return nil
            } catch { return error }
        }
        let noSentinel = error(["REDIS_URL": "redis://h", "RELAY_REDIS_SENTINEL_PASSWORD": "x"])
        #expect(noSentinel?.variable == "RELAY_REDIS_SENTINEL_PASSWORD")
        #expect(noSentinel?.message.contains("not a redis-sentinel:// URL") == true)
        #expect(error(["RELAY_REDIS_SENTINEL_USERNAME": "u"])?.variable == "RELAY_REDIS_SENTINEL_USERNAME")
        let userOnly = error(["REDIS_URL": "redis-sentinel://h/m", "RELAY_REDIS_SENTINEL_USERNAME": "u"])
        #expect(userOnly?.variable == "RELAY_REDIS_SENTINEL_USERNAME")
        #expect(userOnly?.message.contains("without RELAY_REDIS_SENTINEL_PASSWORD") == true)
    }

    @Test func changedSentinelCredentialsNeedARestartUnderTheirOwnName() throws {
        let old = try RelayConfig.parse(environment: ["REDIS_URL": "redis-sentinel://h/m", "RELAY_REDIS_SENTINEL_PASSWORD": "a"], isRoot: false)
        let new = try RelayConfig.parse(environment: ["REDIS_URL": "redis-sentinel://h/m", "RELAY_REDIS_SENTINEL_PASSWORD": "b"], isRoot: false)
        #expect(old.reloadPlan(to: new).needsRestart == ["RELAY_REDIS_SENTINEL_PASSWORD"])
        let moved = try RelayConfig.parse(environment: ["REDIS_URL": "redis-sentinel://h2/m", "RELAY_REDIS_SENTINEL_PASSWORD": "a"], isRoot: false)
        #expect(old.reloadPlan(to: moved).needsRestart == ["REDIS_URL"])
    }
}
