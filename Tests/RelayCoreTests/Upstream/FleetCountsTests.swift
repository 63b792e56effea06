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
        let commands = strings(f.takeUpdate { counts[String(buffer: $0.name)] ?? 0 })
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

    @Test func changesAreWrittenInBoundedCommands() {
        var f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        for i in 0..<1500 { f.changed(buffer("up\(i)")) }
        for i in 0..<1100 { f.changed(buffer("gone\(i)")) }
        let commands = strings(f.takeUpdate { String(buffer: $0.name).hasPrefix("up") ? 2 : 0 })
        let sets = commands.filter { $0[0] == "HSET" }
        let dels = commands.filter { $0[0] == "HDEL" }
        #expect(sets.count == 3 && sets.allSatisfy { $0.count <= 2 + 2 * FleetCounts.fieldsPerCommand })
        #expect(dels.count == 3 && dels.allSatisfy { $0.count <= 2 + FleetCounts.fieldsPerCommand })
        #expect(sets.map { ($0.count - 2) / 2 }.reduce(0, +) == 1500)
        #expect(dels.map { $0.count - 2 }.reduce(0, +) == 1100)
        #expect(!f.hasChanges)
    }

    @Test func numsubIsBoundedEvals() {
        let f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        let command = strings(f.numsubCommands([buffer("x"), buffer("y")]))
        #expect(command.count == 1)
        #expect(command[0][0] == "EVAL" && command[0][1] == FleetCounts.numsubScript)
        #expect(Array(command[0][2...]) == ["0", "ns", "NUMSUB", "", "x", "y"])
        let channels = (0..<2500).map { buffer("c\($0)") }
        let evals = strings(f.numsubCommands(channels))
        #expect(evals.count == 3 && evals.allSatisfy { $0.count <= 6 + FleetCounts.channelsPerNumsubScript })
        #expect(evals.flatMap { $0.dropFirst(6) } == (0..<2500).map { "c\($0)" })
        #expect(strings(f.removal()) == [["DEL", "ns:numsub:r1"], ["SREM", "ns:relays", "r1"]])
    }

    /// Shard channels share the hash, in fields after a prefix no UTF-8 channel name starts with.
    @Test func shardChannelsAreCountedInPrefixedFields() {
        var f = FleetCounts(namespace: "ns", relayID: "r1", ttlMilliseconds: 5000)
        f.changed(buffer("x"), sharded: true)
        f.changed(buffer("x"))
        let commands = f.takeUpdate { $0.sharded ? 3 : 1 }
        let set = commands.first { String(buffer: $0[0]) == "HSET" }!
        var fields: [[UInt8]: String] = [:]
        for i in stride(from: 2, to: set.count, by: 2) { fields[Array(set[i].readableBytesView)] = String(buffer: set[i + 1]) }
        #expect(fields == [Array("x".utf8): "1", FleetCounts.shardFieldPrefix + Array("x".utf8): "3"])
        let rewrite = f.takeFullRewrite([(buffer("a"), 1)], shardCounts: [(buffer("a"), 2), (buffer("z"), 0)])
        let hset = rewrite.first { String(buffer: $0[0]) == "HSET" }!.map { Array($0.readableBytesView) }
        #expect(hset.dropFirst(2).elementsEqual([Array("a".utf8), Array("1".utf8), FleetCounts.shardFieldPrefix + Array("a".utf8), Array("2".utf8)]))
        let eval = f.numsubCommands([buffer("s")], sharded: true)[0]
        #expect(String(buffer: eval[4]) == "SHARDNUMSUB" && Array(eval[5].readableBytesView) == FleetCounts.shardFieldPrefix)
    }
}
