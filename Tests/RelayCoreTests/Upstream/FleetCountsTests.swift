import NIOCore
import Testing
@testable import RelayCore

@Suite struct FleetCountsTests {
    private func strings(_ commands: [[ByteBuffer]]) -> [[String]] {
        commands.map { $0.map { String(buffer: $0) } }
    }

    @Test func updateWritesChangedCountsAndRefreshes() {
        var f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        #expect(!f.hasChanges)
        f.changed(buffer("a"))
        f.changed(buffer("gone"))
        f.changed(buffer("a"))
        let counts = ["a": 3]
        let commands = strings(f.takeUpdate { counts[String(buffer: $0)] ?? 0 })
        #expect(commands == [
            ["HSET", "ns:numsub:r1", "a", "3"],
            ["HDEL", "ns:numsub:r1", "gone"],
            ["PEXPIRE", "ns:numsub:r1", "5000"],
            ["SADD", "ns:relays", "r1"],
        ])
        #expect(!f.hasChanges)
    }

    @Test func fullRewriteIsOneTransaction() {
        var f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        f.changed(buffer("stale"))
        let commands = strings(f.takeFullRewrite([(buffer("a"), 1), (buffer("b"), 0)]))
        #expect(commands.first == ["MULTI"] && commands.last == ["EXEC"])
        #expect(commands.contains(["DEL", "ns:numsub:r1"]))
        #expect(commands.contains(["HSET", "ns:numsub:r1", "a", "1"]))
        #expect(!commands.joined().contains("b"))
        #expect(!f.hasChanges)
        // Thousands of channels are written in bounded commands.
        let many = (0..<2000).map { (buffer("c\($0)"), 1) }
        let big = f.takeFullRewrite(many).filter { String(buffer: $0[0]) == "HSET" }
        #expect(big.count == 4 && big.allSatisfy { $0.count <= 2 + 1024 })
    }

    @Test func numsubIsOneEval() {
        let f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        let command = strings([f.numsubCommand([buffer("x"), buffer("y")])])[0]
        #expect(command[0] == "EVAL" && command[1] == FleetCounts.numsubScript)
        #expect(Array(command[2...]) == ["0", "ns", "x", "y"])
        #expect(strings(f.removal()) == [["DEL", "ns:numsub:r1"], ["SREM", "ns:relays", "r1"]])
    }
}
