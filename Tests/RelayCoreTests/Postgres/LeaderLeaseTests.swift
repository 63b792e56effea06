import NIOCore
import Testing
@testable import RelayCore

@Suite struct LeaderLeaseTests {
    private let ms: UInt64 = 1_000_000

    @Test func followerAcquiresThenRenewsEveryThirdOfTheTTL() {
        var l = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        #expect(l.periodNanoseconds == 1000 * ms)
        #expect(l.tick(now: 0) == .acquire)
        // One request at a time.
        #expect(l.tick(now: 10 * ms) == .none)
        let took = l.acquired(true)
        #expect(took)
        #expect(l.isLeader && l.changes == 1)
        #expect(l.tick(now: 500 * ms) == .none)
        #expect(l.tick(now: 1001 * ms) == .renew)
        #expect(l.renewed(true) == .none)
        #expect(l.isLeader)
    }

    @Test func followerRetriesWhileTheLeaseIsTaken() {
        var l = LeaderLease(namespace: "ns", holder: "r2", ttlMilliseconds: 600)
        #expect(l.periodNanoseconds == 200 * ms)
        #expect(l.tick(now: 0) == .acquire)
        let took = l.acquired(false)
        #expect(!took)
        #expect(l.tick(now: 100 * ms) == .none)
        #expect(l.tick(now: 201 * ms) == .acquire)
        #expect(!l.isLeader && l.changes == 0)
    }

    /// A leader stops listening as soon as it cannot renew: refused, unanswered, or Redis gone.
    @Test func leaderStepsDownWhenItCannotRenew() {
        var refused = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        _ = refused.tick(now: 0)
        _ = refused.acquired(true)
        #expect(refused.tick(now: 1001 * ms) == .renew)
        #expect(refused.renewed(false) == .stepDown(reason: "lease taken by another relay or expired"))
        #expect(!refused.isLeader && refused.changes == 2)
        // Back to trying at once.
        #expect(refused.tick(now: 1002 * ms) == .acquire)

        var unanswered = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        _ = unanswered.tick(now: 0)
        _ = unanswered.acquired(true)
        #expect(unanswered.tick(now: 1001 * ms) == .renew)
        #expect(unanswered.tick(now: 1900 * ms) == .none)
        // Still well inside the TTL (3 s from the last renewal sent at 1.0 s) when it gives up.
        if case .stepDown = unanswered.tick(now: 2002 * ms) {} else { Issue.record("did not step down") }
        #expect(!unanswered.isLeader)

        var lost = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        _ = lost.tick(now: 0)
        _ = lost.acquired(true)
        #expect(lost.backplaneLost() == .stepDown(reason: "redis backplane lost"))
        var follower = LeaderLease(namespace: "ns", holder: "r2", ttlMilliseconds: 3000)
        #expect(follower.backplaneLost() == .none)
    }

    @Test func commands() {
        let l = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 5000)
        #expect(l.acquireCommand.map { String(buffer: $0) } == ["SET", "ns:pg-leader", "r1", "NX", "PX", "5000"])
        let renew = l.renewCommand.map { String(buffer: $0) }
        #expect(renew[0] == "EVAL" && Array(renew[2...]) == ["1", "ns:pg-leader", "r1", "5000"])
        #expect(renew[1].contains("PEXPIRE"))
        let release = l.releaseCommand.map { String(buffer: $0) }
        #expect(release[0] == "EVAL" && Array(release[2...]) == ["1", "ns:pg-leader", "r1"])
        #expect(release[1].contains("DEL"))
    }
}

@Suite struct PostgresConfigTests {
    @Test func bridgeVariables() throws {
        let c = try RelayConfig.parse(environment: [
            "DATABASE_URL": "host=/tmp port=5432", "RELAY_PG_CHANNELS": "orders, users", "RELAY_LEADER_TTL": "2s",
        ], isRoot: false)
        #expect(c.databaseURL == "host=/tmp port=5432")
        #expect(c.pgChannels == ["orders", "users"])
        #expect(c.leaderTTLMilliseconds == 2000)
        #expect(try RelayConfig.parse(environment: [:], isRoot: false).leaderTTLMilliseconds == 5000)
    }

    @Test func bridgeNeedsChannels() {
        do {
            _ = try RelayConfig.parse(environment: ["DATABASE_URL": "host=/tmp"], isRoot: false)
            Issue.record("accepted DATABASE_URL without channels")
        } catch {
            #expect(error.variable == "RELAY_PG_CHANNELS")
        }
        #expect(throws: ConfigError.self) {
            try RelayConfig.parse(environment: ["RELAY_LEADER_TTL": "100ms"], isRoot: false)
        }
    }
}

@Suite struct LeaderLeaseExpiryTests {
    private let ms: UInt64 = 1_000_000

    /// A leader paused past its lease (SIGSTOP) must not act on resume, before any renewal.
    @Test func aPausedLeaderNoLongerHolds() {
        var l = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        #expect(l.tick(now: 1000 * ms) == .acquire)
        _ = l.acquired(true)
        // Valid until sent time + TTL, trusted until one period before that.
        #expect(l.holds(now: 2999 * ms))
        #expect(!l.holds(now: 3000 * ms))
        #expect(l.checkExpiry(now: 2000 * ms) == .none)
        if case .stepDown = l.checkExpiry(now: 5000 * ms) {} else { Issue.record("kept a lapsed lease") }
        #expect(!l.isLeader)
    }

    /// Each confirmed renewal extends from the time it was sent.
    @Test func renewalsExtendFromTheirSendTime() {
        var l = LeaderLease(namespace: "ns", holder: "r1", ttlMilliseconds: 3000)
        _ = l.tick(now: 0)
        _ = l.acquired(true)
        #expect(l.tick(now: 1000 * ms) == .renew)
        #expect(l.renewed(true) == .none)
        // Without the renewal the lease would be trusted until 2 s only.
        #expect(l.holds(now: 2500 * ms))
        #expect(!l.holds(now: 3000 * ms))
        // A tick after a long stall steps down instead of renewing.
        if case .stepDown = l.tick(now: 10_000 * ms) {} else { Issue.record("renewed a lapsed lease") }
    }
}
