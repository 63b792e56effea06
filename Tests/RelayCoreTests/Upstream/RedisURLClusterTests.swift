import Testing
@testable import RelayCore

/// `redis-cluster://` URLs and `RELAY_REDIS_CLUSTER_PUBSUB` (README, "Redis Cluster").
@Suite struct RedisURLClusterTests {
    typealias Endpoint = RedisURL.Endpoint

    private func reason(_ url: String) -> String {
        do {
            _ = try RedisURL.parse(url)
            return "accepted"
        } catch {
            #expect(error.variable == "REDIS_URL")
            return error.description
        }
    }

    @Test func seedsCredentialsAndDefaultPort() throws {
        let u = try RedisURL.parse("redis-cluster://relay:s%40cret@10.0.0.21:7000,node-b,[::1]:7002")
        #expect(u.cluster == RedisURL.Cluster(seeds: [
            Endpoint(host: "10.0.0.21", port: 7000), Endpoint(host: "node-b", port: 6379), Endpoint(host: "::1", port: 7002),
        ]))
        #expect(u.username == "relay")
        #expect(u.password == "s@cret")
        #expect(u.db == 0)
        #expect(!u.tls)
        #expect(u.sentinel == nil)
        #expect(u.cluster?.pubsub == .sharded)
        #expect(u.redacted == "redis-cluster://relay:***@10.0.0.21:7000,node-b:6379,[::1]:7002")
    }

    @Test func passwordAloneAndNoCredentials() throws {
        let p = try RedisURL.parse("redis-cluster://:pw@h1")
        #expect(p.username == nil)
        #expect(p.password == "pw")
        #expect(p.redacted == "redis-cluster://:***@h1:6379")
        let none = try RedisURL.parse("redis-cluster://h1:7000/")
        #expect(none.redacted == "redis-cluster://h1:7000")
        #expect(none.cluster?.seeds == [Endpoint(host: "h1", port: 7000)])
    }

    @Test func overTLS() throws {
        let u = try RedisURL.parse("rediss-cluster://relay:pw@h1:6380,h2:6380")
        #expect(u.tls)
        #expect(u.cluster?.tls == true)
        #expect(u.redacted == "rediss-cluster://relay:***@h1:6380,h2:6380")
        let c = try RelayConfig.parse(environment: ["REDIS_URL": "rediss-cluster://h1:6380", "RELAY_REDIS_TLS_SERVER_NAME": "redis.internal"], isRoot: false)
        #expect(c.redisTLS?.serverName == "redis.internal")
        do {
            _ = try RelayConfig.parse(environment: ["REDIS_URL": "redis-cluster://:secret@h1:6380", "RELAY_REDIS_TLS_CA_FILE": "/ca.pem"],
                                      isRoot: false)
            Issue.record("a TLS setting with redis-cluster:// was accepted")
        } catch {
            #expect(error.variable == "RELAY_REDIS_TLS_CA_FILE")
            #expect(error.message.contains("without TLS") && error.message.contains("(use rediss-cluster://host1:port,host2:port…"))
            #expect(!error.message.contains("secret"))
        }
    }

    @Test func onlyDatabaseZero() throws {
        #expect(try RedisURL.parse("redis-cluster://h1/0").db == 0)
        #expect(reason("redis-cluster://h1/3") == "REDIS_URL: database 3 was asked for, but Redis Cluster has only database 0; drop the /3 from redis-cluster://[user:password@]host1:6379[,host2:6379…]")
        #expect(reason("redis-cluster://h1/x").contains("expected nothing or /0 after the cluster's nodes"))
        #expect(reason("redis-cluster://h1/0/1").contains("expected nothing or /0"))
    }

    @Test func badNodeLists() {
        #expect(reason("redis-cluster://") == "REDIS_URL: 'redis-cluster://' lists no node; expected redis-cluster://[user:password@]host1:6379[,host2:6379…]")
        #expect(reason("redis-cluster://u:secret@") .contains("u:***@"), "the password is never shown")
        #expect(reason("redis-cluster://h1,,h2") == "REDIS_URL: cluster node '' has no host; expected host:port, e.g. 10.0.0.7:6379, separated by commas")
        #expect(reason("redis-cluster://h1:99999") == "REDIS_URL: cluster node 'h1:99999': '99999' is not a TCP port (1-65535)")
        #expect(reason("redis-cluster://[::1:7000").contains("unterminated [IPv6] host"))
        #expect(reason("redis-cluster://h1?db=1").contains("query parameters are not read in cluster URLs"))
        #expect(reason("redis-clusters://h1").contains("is not a Redis URL"))
    }

    @Test func sentinelMessagesUnchanged() {
        #expect(reason("redis-sentinel://h1:0/m") == "REDIS_URL: sentinel 'h1:0': '0' is not a TCP port (1-65535)")
        #expect(reason("redis-sentinel://,h2/m") == "REDIS_URL: sentinel '' has no host; expected host:port, e.g. 10.0.0.7:26379, separated by commas")
    }

    // MARK: RELAY_REDIS_CLUSTER_PUBSUB

    private func config(_ env: [String: String]) throws(ConfigError) -> RelayConfig {
        try RelayConfig.parse(environment: env, isRoot: false)
    }

    private func error(_ env: [String: String]) -> ConfigError? {
        do {
            _ = try config(env)
            return nil
        } catch {
            return error
        }
    }

    @Test func pubsubModes() throws {
        #expect(try config(["REDIS_URL": "redis-cluster://h1"]).redisURL?.cluster?.pubsub == .sharded)
        #expect(try config(["REDIS_URL": "redis-cluster://h1", "RELAY_REDIS_CLUSTER_PUBSUB": "classic"]).redisURL?.cluster?.pubsub == .classic)
        #expect(try config(["REDIS_URL": "redis-cluster://h1", "RELAY_REDIS_CLUSTER_PUBSUB": "Sharded"]).redisURL?.cluster?.pubsub == .sharded)
        #expect(try config(["REDIS_URL": "redis-cluster://h1", "RELAY_REDIS_CLUSTER_PUBSUB": ""]).redisURL?.cluster?.pubsub == .sharded, "empty is unset")
    }

    @Test func pubsubModeErrors() {
        let bad = error(["REDIS_URL": "redis-cluster://h1", "RELAY_REDIS_CLUSTER_PUBSUB": "shard"])
        #expect(bad?.variable == "RELAY_REDIS_CLUSTER_PUBSUB")
        #expect(bad?.message == "'shard' is not a cluster pub/sub mode; expected sharded (SPUBLISH/SSUBSCRIBE, Redis 7, each channel on the master of its slot) or classic (PUBLISH/SUBSCRIBE, broadcast to every node)")
        for url in ["redis://h", "redis-sentinel://h/m", nil] {
            var env = ["RELAY_REDIS_CLUSTER_PUBSUB": "classic"]
            env["REDIS_URL"] = url
            let e = error(env)
            #expect(e?.variable == "RELAY_REDIS_CLUSTER_PUBSUB")
            #expect(e?.message == "is set but REDIS_URL is not a redis-cluster:// URL; unset it, or list the cluster's nodes in REDIS_URL")
        }
    }

    @Test func changingThePubsubModeNeedsARestartOfItsOwn() throws {
        let old = try config(["REDIS_URL": "redis-cluster://h1"])
        let new = try config(["REDIS_URL": "redis-cluster://h1", "RELAY_REDIS_CLUSTER_PUBSUB": "classic"])
        #expect(old.reloadPlan(to: new).needsRestart == ["RELAY_REDIS_CLUSTER_PUBSUB"])
        let moved = try config(["REDIS_URL": "redis-cluster://h2"])
        #expect(old.reloadPlan(to: moved).needsRestart == ["REDIS_URL"])
    }
}
