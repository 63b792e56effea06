import NIOCore
import Testing
@testable import RelayCore

/// The ledger under test, with non-mutating wrappers so that results can be checked in #expect.
private final class Ledger<W> {
    var l = UpstreamSubscriptionLedger<W>()
    func sent(_ k: SubscriptionKind, _ n: String, _ subscribe: Bool = true) { l.sent(k, buffer(n), subscribe: subscribe) }
    func wait(_ k: SubscriptionKind, _ n: String, _ w: W) -> Bool { l.wait(for: k, buffer(n), w) }
    func confirmed(_ k: SubscriptionKind, _ n: String, _ subscribe: Bool = true) throws -> [W] {
        try l.confirmed(k, buffer(n), subscribe: subscribe)
    }
    func pending(_ k: SubscriptionKind, _ n: String) -> Bool { l.isPending(k, buffer(n)) }
    func reset() -> [W] { l.reset() }
}

@Suite struct UpstreamSubscriptionLedgerTests {
    @Test func waitersAreReleasedByTheirConfirmation() throws {
        let l = Ledger<String>()
        l.sent(.channel, "a")
        l.sent(.pattern, "n*")
        #expect(l.wait(.channel, "a", "client1"))
        #expect(l.wait(.channel, "a", "client2"))
        #expect(l.wait(.pattern, "n*", "client3"))
        // Not in flight: the client is confirmed at once.
        #expect(!l.wait(.channel, "b", "client4"))
        // A channel and a pattern of the same name are different subscriptions.
        #expect(!l.wait(.pattern, "a", "client5"))
        #expect(try l.confirmed(.channel, "a") == ["client1", "client2"])
        #expect(!l.pending(.channel, "a"))
        #expect(try l.confirmed(.pattern, "n*") == ["client3"])
        #expect(l.l.isEmpty)
    }

    /// SUBSCRIBE a, UNSUBSCRIBE a, SUBSCRIBE a in flight: a new waiter belongs to the last one.
    @Test func waitersJoinTheLatestSubscribe() throws {
        let l = Ledger<Int>()
        l.sent(.channel, "a")
        #expect(l.wait(.channel, "a", 1))
        l.sent(.channel, "a", false)
        #expect(!l.pending(.channel, "a"))
        l.sent(.channel, "a")
        #expect(l.wait(.channel, "a", 2))
        #expect(try l.confirmed(.channel, "a") == [1])
        #expect(l.pending(.channel, "a"))
        #expect(try l.confirmed(.channel, "a", false) == [])
        #expect(try l.confirmed(.channel, "a") == [2])
        #expect(!l.pending(.channel, "a"))
    }

    @Test func outOfStepConfirmationsAreReported() {
        let l = Ledger<Int>()
        #expect(throws: UpstreamSubscriptionLedger<Int>.Mismatch.self) { try l.confirmed(.channel, "a") }
        l.sent(.channel, "a")
        #expect(throws: UpstreamSubscriptionLedger<Int>.Mismatch.self) { try l.confirmed(.channel, "b") }
        #expect(throws: UpstreamSubscriptionLedger<Int>.Mismatch.self) { try l.confirmed(.pattern, "a") }
        #expect(throws: UpstreamSubscriptionLedger<Int>.Mismatch.self) { try l.confirmed(.channel, "a", false) }
    }

    /// The link drops: every waiter is handed back (confirmed locally), nothing stays pending.
    @Test func resetHandsBackEveryWaiter() throws {
        let l = Ledger<Int>()
        for (i, name) in ["a", "b", "c"].enumerated() {
            l.sent(.channel, name)
            #expect(l.wait(.channel, name, i))
        }
        #expect(try l.confirmed(.channel, "a") == [0])
        #expect(l.reset().sorted() == [1, 2])
        #expect(l.l.isEmpty && !l.pending(.channel, "b"))
        // Sequence numbers keep working after a reset.
        l.sent(.channel, "d")
        #expect(l.wait(.channel, "d", 9))
        #expect(try l.confirmed(.channel, "d") == [9])
    }

    /// Redis refused the oldest command as a whole: its names come back in order, with their
    /// waiters, and are no longer pending; later commands are untouched.
    @Test func aRefusedCommandHandsBackItsNames() throws {
        let l = Ledger<String>()
        l.sent(.channel, "ok")
        l.sent(.channel, "secret")
        l.sent(.pattern, "later*")
        #expect(l.wait(.channel, "secret", "client1"))
        #expect(l.wait(.pattern, "later*", "client2"))
        let refused = try l.l.refuseOldest(2)
        #expect(refused.map { String(buffer: $0.name) } == ["ok", "secret"])
        #expect(refused.map(\.waiters) == [[], ["client1"]])
        #expect(refused.allSatisfy { $0.subscribe && $0.kind == .channel })
        #expect(!l.pending(.channel, "secret") && l.pending(.pattern, "later*"))
        #expect(try l.confirmed(.pattern, "later*") == ["client2"])
        #expect(throws: UpstreamSubscriptionLedger<String>.Mismatch.self) { try l.l.refuseOldest(1) }
    }
}

@Suite struct UpstreamReplyConfirmationKindTests {
    @Test func shardConfirmationsAreTyped() {
        #expect(UpstreamReply.confirmationKind(Array("ssubscribe".utf8))! == (.shard, true))
        #expect(UpstreamReply.confirmationKind(Array("sunsubscribe".utf8))! == (.shard, false))
        #expect(UpstreamReply.confirmationKind(Array("psubscribe".utf8))! == (.pattern, true))
        #expect(UpstreamReply.confirmationKind(Array("unsubscribe".utf8))! == (.channel, false))
        #expect(UpstreamReply.confirmationKind(Array("smessage".utf8)) == nil)
        #expect(UpstreamReply.confirmation(.shard, subscribe: false, name: buffer("x")).text == "sunsubscribe x")
    }

    @Test func aShardSubscriptionInFlightAffectsOnlyAnSpublishOfItsName() {
        var ledger = UpstreamSubscriptionLedger<Int>()
        ledger.sent(.shard, buffer("s"), subscribe: true)
        ledger.sent(.pattern, buffer("*"), subscribe: true)
        #expect(ledger.affects(channel: buffer("s"), sharded: true))
        #expect(!ledger.affects(channel: buffer("t"), sharded: true))
        #expect(ledger.affects(channel: buffer("t")))  // the pattern, for a PUBLISH
        #expect(ledger.isNext(.shard, buffer("s"), subscribe: true) && !ledger.isNext(.shard, buffer("s"), subscribe: false))
    }
}
