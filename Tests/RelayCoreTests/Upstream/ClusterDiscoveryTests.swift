import NIOCore
import Testing
@testable import RelayCore

/// `ClusterDiscovery`: which node it asks, what it asks, when it asks again, and how it moves on.
@Suite struct ClusterDiscoveryTests {
    typealias T = ClusterTopologyTests
    typealias Endpoint = ClusterDiscovery.Endpoint

    static let ms: UInt64 = 1_000_000
    let seeds = [Endpoint(host: "10.0.0.1", port: 7000), Endpoint(host: "10.0.0.2", port: 7001)]

    func discovery(password: String? = nil) -> ClusterDiscovery {
        ClusterDiscovery(seeds: seeds, username: nil, password: password, tls: false, timeoutMilliseconds: 1000,
                         refreshIntervalMilliseconds: 2000, minimumSpacingMilliseconds: 100,
                         backoff: ReconnectBackoff(capMilliseconds: 1000), jitter: { 0.5 })
    }

    /// Three masters at 10.0.1.x:6379 serving the three thirds of the slots.
    static let threeMasters: UpstreamReply = .array([
        T.shard([0, 5460], [T.node("a", ip: "10.0.1.1")]),
        T.shard([5461, 10922], [T.node("b", ip: "10.0.1.2"), T.node("r", ip: "10.0.1.4", role: "replica")]),
        T.shard([10923, 16383], [T.node("c", ip: "10.0.1.3")]),
    ])

    static func described(_ actions: [ClusterDiscovery.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .connect(let e): return "connect \(e)"
            case .close: return "close"
            case .send(let args): return "send " + args.map { String(buffer: $0) }.joined(separator: " ")
            case .topology(let t, let from): return "topology \(t.masters.count) masters from \(from)"
            case .log(_, let text): return "log \(text)"
            }
        }
    }

    @Test func asksTheFirstSeedAndHandsOverTheMap() {
        var d = discovery(password: "pw")
        #expect(Self.described(d.handle(.start(now: 0))) == ["connect 10.0.0.1:7000"])
        #expect(Self.described(d.handle(.connected(now: 1 * Self.ms))) == ["send AUTH pw", "send CLUSTER SHARDS"])
        #expect(d.handle(.reply(.status(ByteBuffer(string: "OK")), now: 2 * Self.ms)).isEmpty)
        #expect(Self.described(d.handle(.reply(Self.threeMasters, now: 3 * Self.ms))) == ["topology 3 masters from 10.0.0.1:7000"])
        #expect(d.answers == 1)
        #expect(d.controlNode == seeds[0])
        // The masters of the map come first among the candidates now.
        #expect(d.candidates.prefix(3).map(\.description) == ["10.0.1.1:6379", "10.0.1.2:6379", "10.0.1.3:6379"])
    }

    @Test func asksAgainPeriodicallyAndOnRequestButSpacesTheAsks() {
        var d = discovery()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.connected(now: 0))
        _ = d.handle(.reply(Self.threeMasters, now: 1 * Self.ms))
        // A request 50 ms after the last ask waits for the spacing, then goes out on a tick.
        #expect(d.handle(.refresh(reason: "moved", now: 50 * Self.ms)).isEmpty)
        #expect(d.handle(.tick(now: 80 * Self.ms)).isEmpty)
        #expect(Self.described(d.handle(.tick(now: 101 * Self.ms))) == ["send CLUSTER SHARDS"])
        // One outstanding ask at a time: a request meanwhile is kept for after the answer.
        #expect(d.handle(.refresh(reason: "again", now: 300 * Self.ms)).isEmpty)
        #expect(Self.described(d.handle(.reply(Self.threeMasters, now: 302 * Self.ms))) == [
            "topology 3 masters from 10.0.0.1:7000", "send CLUSTER SHARDS",
        ])
        _ = d.handle(.reply(Self.threeMasters, now: 303 * Self.ms))
        #expect(d.requestedRefreshes == 2)
        // Nothing wanted: quiet until the periodic refresh (2 s after the last ask).
        #expect(d.handle(.tick(now: 2000 * Self.ms)).isEmpty)
        #expect(Self.described(d.handle(.tick(now: 2303 * Self.ms))) == ["send CLUSTER SHARDS"])
    }

    @Test func fallsBackToClusterSlotsBeforeRedis7() {
        var d = discovery()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.connected(now: 0))
        let old = UpstreamReply.error(ByteBuffer(string: "ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP."))
        let actions = Self.described(d.handle(.reply(old, now: 1 * Self.ms)))
        #expect(actions.last == "send CLUSTER SLOTS")
        let slots = UpstreamReply.array([
            .array([.integer(0), .integer(16383), .array([T.bulk("10.0.1.1"), .integer(6379), T.bulk("a")])]),
        ])
        #expect(Self.described(d.handle(.reply(slots, now: 2 * Self.ms))) == ["topology 1 masters from 10.0.0.1:7000"])
    }

    @Test func aNodeThatFailsOrHangsIsLeftForTheNext() {
        var d = discovery()
        _ = d.handle(.start(now: 0))
        let refused = Self.described(d.handle(.failed(reason: "cannot connect: Connection refused", now: 1 * Self.ms)))
        #expect(refused.first == "close")
        #expect(refused.last == "connect 10.0.0.2:7001")
        _ = d.handle(.connected(now: 2 * Self.ms))
        // No answer within the timeout: the round is over (both seeds failed), the backoff applies.
        let hung = Self.described(d.handle(.tick(now: 1100 * Self.ms)))
        #expect(hung.contains("close"))
        #expect(!hung.contains { $0.hasPrefix("connect") })
        #expect(Self.described(d.handle(.tick(now: 1110 * Self.ms))).isEmpty)
        // Backoff base 50 ms, jitter 0.5 → 37 ms: then the first seed again.
        #expect(Self.described(d.handle(.tick(now: 1200 * Self.ms))) == ["connect 10.0.0.1:7000"])
    }

    @Test func aMapItCannotReadIsAFailureNotACrash() {
        var d = discovery()
        _ = d.handle(.start(now: 0))
        _ = d.handle(.connected(now: 0))
        let garbage = UpstreamReply.array([.integer(1), T.bulk("x")])
        let actions = Self.described(d.handle(.reply(garbage, now: 1 * Self.ms)))
        #expect(actions.contains { $0.contains("was not understood") })
        #expect(actions.last == "connect 10.0.0.2:7001")
        #expect(d.answers == 0)
    }
}
