import Testing
@testable import RelayCore

/// The sentinel-client protocol of `SentinelDiscovery` (README, "Redis Sentinel"), event by event.
@Suite struct SentinelDiscoveryTests {
    typealias D = SentinelDiscovery
    typealias Endpoint = RedisURL.Sentinel.Endpoint
    static let ms: UInt64 = 1_000_000

    static let ask: D.Action = .send(0, ["SENTINEL", "get-master-addr-by-name", "m"])

    private func machine(sentinels: Int = 3, password: String? = nil, username: String? = nil) -> D {
        let endpoints = (0..<sentinels).map { Endpoint(host: "10.0.0.\($0 + 1)", port: 26379) }
        return D(sentinel: RedisURL.Sentinel(sentinels: endpoints, masterName: "m", username: username, password: password),
                 timeoutMilliseconds: 1000, pingIntervalMilliseconds: 500,
                 backoff: ReconnectBackoff(baseMilliseconds: 50, capMilliseconds: 1000), jitter: { 1 })
    }

    private func address(_ host: String, _ port: Int) -> D.Reply { .array([.bulk(host), .bulk(String(port))]) }
    private static let subscribed: D.Reply = .array([.bulk("subscribe"), .bulk("+switch-master"), .integer(1)])
    private func switchMessage(_ payload: String) -> D.Reply { .array([.bulk("message"), .bulk("+switch-master"), .bulk(payload)]) }

    private func nonLog(_ actions: [D.Action]) -> [D.Action] {
        actions.filter { if case .log = $0 { return false } else { return true } }
    }

    /// Runs discovery on sentinel `i` up to the subscription: the machine follows `+switch-master`.
    private func settle(_ d: inout D, on i: Int, master: (String, Int), now: UInt64) -> [D.Action] {
        var out = nonLog(d.handle(.sentinelConnected(i, now: now)))
        out += nonLog(d.handle(.reply(i, address(master.0, master.1), now: now)))
        out += nonLog(d.handle(.reply(i, Self.subscribed, now: now)))
        return out
    }

    @Test func asksTheFirstSentinelPipelinesTheSubscriptionAndUsesItsAnswer() {
        var d = machine()
        #expect(d.handle(.start(now: 0)) == [.connectSentinel(0)])
        #expect(d.handle(.sentinelConnected(0, now: 1)) == [
            Self.ask, .send(0, ["SUBSCRIBE", "+switch-master"]),
        ])
        #expect(nonLog(d.handle(.reply(0, address("10.0.1.1", 6379), now: 2))) == [.useMaster(host: "10.0.1.1", port: 6379)])
        #expect(d.master == Endpoint(host: "10.0.1.1", port: 6379))
        #expect(d.subscribedSentinel == nil, "not yet confirmed")
        #expect(nonLog(d.handle(.reply(0, Self.subscribed, now: 3))) == [])
        #expect(d.subscribedSentinel == Endpoint(host: "10.0.0.1", port: 26379))
        #expect(d.switches == 0)
    }

    @Test func authenticatesWithTheSentinelsOwnCredentials() {
        var d = machine(password: "pw", username: "watcher")
        _ = d.handle(.start(now: 0))
        let sent = d.handle(.sentinelConnected(0, now: 1))
        #expect(sent.first == .send(0, ["AUTH", "watcher", "pw"]))
        #expect(nonLog(d.handle(.reply(0, .status("OK"), now: 2))) == [])
        #expect(nonLog(d.handle(.reply(0, address("h", 1), now: 2))) == [.useMaster(host: "h", port: 1)])

        var refused = machine(password: "bad")
        _ = refused.handle(.start(now: 0))
        #expect(refused.handle(.sentinelConnected(0, now: 1)).first == .send(0, ["AUTH", "bad"]))
        let after = refused.handle(.reply(0, .error("WRONGPASS invalid username-password pair"), now: 2))
        #expect(nonLog(after) == [.closeSentinel(0), .connectSentinel(1)])
        #expect(after.contains(.log(.warning, "redis sentinel 10.0.0.1:26379: the sentinel refused AUTH: WRONGPASS invalid username-password pair")))
    }

    @Test func aNullAnswerAnErrorOrAFailureMovesToTheNextSentinel() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.sentinelConnected(0, now: 0))
        let null = d.handle(.reply(0, .null, now: 1))
        #expect(nonLog(null) == [.closeSentinel(0), .connectSentinel(1)])
        #expect(null.contains { if case .log(.warning, let text) = $0 { text.contains("does not know master 'm'") } else { false } })
        _ = d.handle(.sentinelConnected(1, now: 2))
        #expect(nonLog(d.handle(.reply(1, .error("ERR unknown"), now: 3))) == [.closeSentinel(1), .connectSentinel(2)])
        #expect(nonLog(d.handle(.sentinelFailed(2, reason: "connection refused", now: 4))) == [.closeSentinel(2)],
                "a whole round failed: wait")
        #expect(d.master == nil)
    }

    @Test func aFullRoundOfFailuresWaitsForTheBackoffThenStartsOver() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.sentinelFailed(0, reason: "refused", now: 0))
        _ = d.handle(.sentinelFailed(1, reason: "refused", now: 0))
        let waiting = d.handle(.sentinelFailed(2, reason: "refused", now: 0))
        #expect(waiting.contains(.log(.warning, "redis sentinel: no sentinel gave master 'm' (tried 3); asking again in 50 ms")))
        #expect(d.handle(.tick(now: 49 * Self.ms)) == [])
        #expect(d.handle(.tick(now: 50 * Self.ms)) == [.connectSentinel(0)])
        // The second round waits twice as long (jitter at the top of its range).
        for i in 0..<3 { _ = d.handle(.sentinelFailed(i, reason: "refused", now: 50 * Self.ms)) }
        #expect(d.handle(.tick(now: 149 * Self.ms)) == [])
        #expect(d.handle(.tick(now: 150 * Self.ms)) == [.connectSentinel(0)])
        // An answer resets the round: the next failure moves on without waiting.
        _ = settle(&d, on: 0, master: ("h", 1), now: 151 * Self.ms)
        #expect(d.master == Endpoint(host: "h", port: 1))
    }

    @Test func aSilentSentinelTimesOut() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        #expect(d.handle(.tick(now: 999 * Self.ms)) == [])
        let timedOut = d.handle(.tick(now: 1000 * Self.ms))
        #expect(nonLog(timedOut) == [.closeSentinel(0), .connectSentinel(1)], "the connect itself has the deadline")
        _ = d.handle(.sentinelConnected(1, now: 1000 * Self.ms))
        #expect(nonLog(d.handle(.tick(now: 2000 * Self.ms))) == [.closeSentinel(1), .connectSentinel(2)], "an unanswered question too")
    }

    @Test func switchMasterForOurMasterIsFollowedOthersAreIgnored() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("10.0.1.1", 6379), now: 0)
        #expect(d.handle(.reply(0, switchMessage("other 10.0.9.1 6379 10.0.9.2 6379"), now: 1)) == [])
        #expect(nonLog(d.handle(.reply(0, switchMessage("m 10.0.1.1 6379 10.0.1.2 6380"), now: 2)))
                == [.useMaster(host: "10.0.1.2", port: 6380)])
        #expect(d.master == Endpoint(host: "10.0.1.2", port: 6380))
        #expect(d.switches == 1)
        // A repeat of the same switch (another sentinel's view reaching us) changes nothing.
        #expect(d.handle(.reply(0, switchMessage("m 10.0.1.1 6379 10.0.1.2 6380"), now: 3)) == [])
        #expect(d.switches == 1)
        let malformed = d.handle(.reply(0, switchMessage("m 10.0.1.2"), now: 4))
        #expect(nonLog(malformed) == [])
        #expect(malformed.count == 1, "logged")
        #expect(d.subscribedSentinel != nil, "still following")
    }

    @Test func losingTheFollowedSentinelAsksTheNextAtOnceAndCatchesASwitchMissedMeanwhile() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("10.0.1.1", 6379), now: 0)
        let lost = d.handle(.sentinelFailed(0, reason: "connection closed", now: 10))
        #expect(nonLog(lost) == [.closeSentinel(0), .connectSentinel(1)])
        #expect(d.subscribedSentinel == nil)
        // Sentinel 1 knows the master moved while nothing was followed.
        #expect(settle(&d, on: 1, master: ("10.0.1.2", 6379), now: 11) == [
            .send(1, ["SENTINEL", "get-master-addr-by-name", "m"]), .send(1, ["SUBSCRIBE", "+switch-master"]),
            .useMaster(host: "10.0.1.2", port: 6379),
        ])
        #expect(d.switches == 1)
        #expect(d.subscribedSentinel == Endpoint(host: "10.0.0.2", port: 26379))
        // The same answer after another loss is no change: the backplane is not disturbed.
        _ = d.handle(.sentinelFailed(1, reason: "closed", now: 20))
        #expect(!settle(&d, on: 2, master: ("10.0.1.2", 6379), now: 21).contains(.useMaster(host: "10.0.1.2", port: 6379)))
        // After the last sentinel comes the first again.
        #expect(nonLog(d.handle(.sentinelFailed(2, reason: "closed", now: 30))) == [.closeSentinel(2), .connectSentinel(0)])
    }

    @Test func theFollowedConnectionIsPingedAndDeclaredDeadWhenSilent() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("h", 1), now: 0)
        #expect(d.handle(.tick(now: 499 * Self.ms)) == [])
        #expect(d.handle(.tick(now: 500 * Self.ms)) == [.send(0, ["PING"])])
        #expect(d.handle(.tick(now: 600 * Self.ms)) == [], "one PING outstanding at a time")
        #expect(d.handle(.reply(0, .array([.bulk("pong"), .bulk("")]), now: 700 * Self.ms)) == [])
        // The interval runs from the last PING sent.
        #expect(d.handle(.tick(now: 999 * Self.ms)) == [])
        #expect(d.handle(.tick(now: 1000 * Self.ms)) == [.send(0, ["PING"])])
        #expect(d.handle(.tick(now: 1999 * Self.ms)) == [])
        // No pong within the timeout: a hung sentinel is dropped and the next one asked.
        #expect(nonLog(d.handle(.tick(now: 2000 * Self.ms))) == [.closeSentinel(0), .connectSentinel(1)])
    }

    @Test func aRefusingMasterSendsDiscoveryBackToTheSentinels() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("10.0.1.1", 6379), now: 0)
        let refused = d.handle(.masterRefused(reason: "ROLE says slave", now: 5))
        #expect(nonLog(refused) == [.closeSentinel(0), .connectSentinel(1)])
        #expect(refused.contains(.log(.warning, "redis sentinel: master 'm' at 10.0.1.1:6379 is not a master (ROLE says slave); asking the sentinels again")))
        // While asking, a second refusal (the other backplane connection) starts nothing more.
        #expect(d.handle(.masterRefused(reason: "READONLY", now: 6)) == [])
        #expect(settle(&d, on: 1, master: ("10.0.1.2", 6379), now: 7).last == .useMaster(host: "10.0.1.2", port: 6379))
    }

    @Test func refusalsCountTowardsTheRoundSoTheyBackOff() {
        var d = machine(sentinels: 1)
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("h", 1), now: 0)
        #expect(nonLog(d.handle(.masterRefused(reason: "ROLE says slave", now: 0))) == [.closeSentinel(0)])
        #expect(d.handle(.tick(now: 49 * Self.ms)) == [])
        #expect(d.handle(.tick(now: 50 * Self.ms)) == [.connectSentinel(0)])
    }

    @Test func staleEventsAreIgnored() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        #expect(d.handle(.sentinelConnected(2, now: 0)) == [])
        #expect(d.handle(.reply(2, .null, now: 0)) == [])
        #expect(d.handle(.sentinelFailed(1, reason: "x", now: 0)) == [])
        #expect(d.handle(.reply(0, .null, now: 0)) == [], "no reply before the connection is up")
        #expect(d.handle(.start(now: 0)) == [], "started once")
    }

    @Test func stopClosesTheOpenConnectionAndEndsEverything() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = settle(&d, on: 0, master: ("h", 1), now: 0)
        #expect(d.handle(.stop) == [.closeSentinel(0)])
        #expect(d.handle(.tick(now: 10_000 * Self.ms)) == [])
        #expect(d.handle(.reply(0, switchMessage("m h 1 h2 2"), now: 1)) == [])
    }

    @Test func anUnexpectedOrMalformedAnswerIsAFailure() {
        var d = machine()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.sentinelConnected(0, now: 0))
        #expect(nonLog(d.handle(.reply(0, .array([.bulk("h"), .bulk("notaport")]), now: 0))) == [.closeSentinel(0), .connectSentinel(1)])
        _ = d.handle(.sentinelConnected(1, now: 0))
        _ = d.handle(.reply(1, address("h", 1), now: 0))
        #expect(nonLog(d.handle(.reply(1, .status("OK"), now: 0))) == [.closeSentinel(1), .connectSentinel(2)],
                "SUBSCRIBE answered with something else")
    }
}
