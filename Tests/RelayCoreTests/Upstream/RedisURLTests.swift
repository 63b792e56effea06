import Testing
@testable import RelayCore

@Suite struct RedisURLTests {
    @Test func tcpForms() throws {
        #expect(try RedisURL.parse("redis://localhost") == RedisURL(address: .tcp(host: "localhost", port: 6379)))
        #expect(try RedisURL.parse("redis://10.0.0.5:6380/2") == RedisURL(address: .tcp(host: "10.0.0.5", port: 6380), db: 2))
        #expect(try RedisURL.parse("redis://[::1]:7000") == RedisURL(address: .tcp(host: "::1", port: 7000)))
        #expect(try RedisURL.parse("redis://[::1]") == RedisURL(address: .tcp(host: "::1", port: 6379)))
    }

    @Test func credentials() throws {
        let acl = try RedisURL.parse("redis://relay:s%40cr%3At@redis.internal:6379/0")
        #expect(acl.username == "relay")
        #expect(acl.password == "s@cr:t")
        // A password alone, with and without the leading colon.
        #expect(try RedisURL.parse("redis://:pw@h").password == "pw")
        #expect(try RedisURL.parse("redis://:pw@h").username == nil)
        #expect(try RedisURL.parse("redis://pw@h").password == "pw")
        // The last @ separates credentials from the host (a password may hold a raw @).
        #expect(try RedisURL.parse("redis://u:p@ss@h").password == "p@ss")
    }

    /// `rediss://` is the TCP form with TLS; the redacted URL keeps the scheme, so logs say TLS.
    @Test func tlsForm() throws {
        let url = try RedisURL.parse("rediss://relay:s%40cret@redis.internal:6380/1")
        #expect(url == RedisURL(address: .tcp(host: "redis.internal", port: 6380), username: "relay", password: "s@cret", db: 1, tls: true))
        #expect(url.redacted == "rediss://relay:***@redis.internal:6380/1")
        #expect(try RedisURL.parse("rediss://[::1]").address == .tcp(host: "::1", port: 6379))
        #expect(try !RedisURL.parse("redis://h").tls)
        #expect(try RedisURL.parse("rediss://h") != RedisURL.parse("redis://h"), "a scheme change is a REDIS_URL change (restart)")
    }

    @Test func unixForms() throws {
        #expect(try RedisURL.parse("unix:///run/redis/redis.sock") == RedisURL(address: .unix(path: "/run/redis/redis.sock")))
        let u = try RedisURL.parse("unix:///tmp/r.sock?db=3&password=p%26w&user=relay")
        #expect(u == RedisURL(address: .unix(path: "/tmp/r.sock"), username: "relay", password: "p&w", db: 3))
    }

    @Test func rejectsWithReasons() {
        func reason(_ url: String) -> String {
            do {
                _ = try RedisURL.parse(url)
                return "accepted"
            } catch {
                #expect(error.variable == "REDIS_URL")
                return error.description
            }
        }
        #expect(reason("http://localhost").contains("not a Redis URL"))
        #expect(reason("rediss://:6379").contains("no host"))
        #expect(reason("redis://h:0").contains("not a TCP port"))
        #expect(reason("redis://h:70000").contains("not a TCP port"))
        #expect(reason("redis://h/x").contains("not a database number"))
        #expect(reason("redis://:6379").contains("no host"))
        #expect(reason("redis://[::1").contains("unterminated"))
        #expect(reason("unix://relative.sock").contains("absolute path"))
        #expect(reason("unix:///tmp/r.sock?timeout=3").contains("unknown parameter"))
        #expect(reason("redis://u:p%zz@h").contains("percent-escape"))
        #expect(reason("unix:///" + String(repeating: "a", count: 120)).contains("at most 107 bytes"))
    }

    /// No error text or log line may carry the password.
    @Test func passwordsNeverShown() {
        #expect(RedisURL(address: .tcp(host: "h", port: 1), username: "u", password: "secret").redacted == "redis://u:***@h:1/0")
        #expect(RedisURL(address: .tcp(host: "::1", port: 1), password: "secret").redacted == "redis://:***@[::1]:1/0")
        #expect(RedisURL(address: .unix(path: "/r.sock"), password: "secret", db: 1).redacted == "unix:///r.sock?db=1&password=***")
        #expect(RedisURL.redactedInput("ftp://user:secret@host") == "ftp://user:***@host")
        #expect(RedisURL.redactedInput("bad://secret@host") == "bad://***@host")
        do {
            _ = try RedisURL.parse("redis://user:secret@host:notaport")
            Issue.record("accepted a bad port")
        } catch {
            #expect(!error.description.contains("secret"))
        }
    }

    @Test func configReadsRedisVariables() throws {
        let c = try RelayConfig.parse(environment: [
            "REDIS_URL": "unix:///tmp/r.sock", "RELAY_REDIS_TIMEOUT": "500ms", "RELAY_REDIS_BACKOFF_MAX": "1.5s",
        ], isRoot: false)
        #expect(c.redisURL == RedisURL(address: .unix(path: "/tmp/r.sock")))
        #expect(c.redisTimeoutMilliseconds == 500)
        #expect(c.redisBackoffMaxMilliseconds == 1500)
        let d = try RelayConfig.parse(environment: [:], isRoot: false)
        #expect(d.redisTimeoutMilliseconds == 3000)
        #expect(d.redisBackoffMaxMilliseconds == 5000)
        #expect(throws: ConfigError.self) { try RelayConfig.parse(environment: ["RELAY_REDIS_TIMEOUT": "abc"], isRoot: false) }
        #expect(throws: ConfigError.self) { try RelayConfig.parse(environment: ["RELAY_REDIS_TIMEOUT": "50ms"], isRoot: false) }
        // The backoff cap may not exceed 30 s (README: `RELAY_REDIS_BACKOFF_MAX`, 100ms–30s).
        #expect(throws: ConfigError.self) { try RelayConfig.parse(environment: ["RELAY_REDIS_BACKOFF_MAX": "31s"], isRoot: false) }
    }

    @Test func durations() {
        #expect(RelayConfig.parseDuration("3") == 3000)
        #expect(RelayConfig.parseDuration("3s") == 3000)
        #expect(RelayConfig.parseDuration("250ms") == 250)
        #expect(RelayConfig.parseDuration("1.5S") == 1500)
        #expect(RelayConfig.parseDuration("") == nil)
        #expect(RelayConfig.parseDuration("-1s") == nil)
        #expect(RelayConfig.parseDuration("1m") == nil)
    }
}
