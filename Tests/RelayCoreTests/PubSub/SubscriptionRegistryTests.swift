import NIOCore
import Testing
@testable import RelayCore

private final class Sub {
    let name: String
    init(_ name: String) { self.name = name }
}

private func names(_ buffers: [ByteBuffer]) -> [String] {
    buffers.map { String(buffer: $0) }
}

private func subscriberNames(_ entry: SubscriptionRegistry<Sub>.Entry?) -> Set<String> {
    Set(entry?.subscribers.map(\.name) ?? [])
}

@Suite struct SubscriptionRegistryTests {
    // MARK: Reference counting

    @Test func channelSubscribeTransitions() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        #expect(registry.subscribe(a, channel: buffer("news")) == .added(first: true))
        #expect(registry.subscribe(b, channel: buffer("news")) == .added(first: false))
        #expect(registry.subscribe(a, channel: buffer("news")) == .unchanged)
        #expect(registry.numberOfSubscribers(channel: buffer("news")) == 2)
        #expect(registry.channelCount == 1)
    }

    @Test func channelUnsubscribeTransitions() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        #expect(registry.unsubscribe(a, channel: buffer("news")) == .unchanged)
        _ = registry.subscribe(a, channel: buffer("news"))
        _ = registry.subscribe(b, channel: buffer("news"))
        #expect(registry.unsubscribe(a, channel: buffer("other")) == .unchanged)
        #expect(registry.unsubscribe(a, channel: buffer("news")) == .removed(last: false))
        #expect(registry.unsubscribe(a, channel: buffer("news")) == .unchanged)
        #expect(registry.numberOfSubscribers(channel: buffer("news")) == 1)
        #expect(registry.unsubscribe(b, channel: buffer("news")) == .removed(last: true))
        // The entry is gone with its last subscriber, and so are the subscribers' holdings.
        #expect(registry.channelCount == 0)
        #expect(registry.entry(forChannel: buffer("news")) == nil)
        #expect(registry.subscriberCount == 0)
        #expect(registry.numberOfSubscribers(channel: buffer("news")) == 0)
        // A later subscriber is the first again.
        #expect(registry.subscribe(b, channel: buffer("news")) == .added(first: true))
    }

    @Test func patternTransitions() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        #expect(registry.psubscribe(a, pattern: buffer("n*")) == .added(first: true))
        #expect(registry.psubscribe(b, pattern: buffer("n*")) == .added(first: false))
        #expect(registry.psubscribe(b, pattern: buffer("n*")) == .unchanged)
        #expect(registry.patternCount == 1 && registry.sharedPatternCount == 1)
        #expect(registry.punsubscribe(a, pattern: buffer("x*")) == .unchanged)
        #expect(registry.punsubscribe(a, pattern: buffer("n*")) == .removed(last: false))
        #expect(registry.sharedPatternCount == 0)
        _ = registry.psubscribe(a, pattern: buffer("n*"))
        #expect(registry.punsubscribeAllPatterns(a).map(\.last) == [false] && registry.sharedPatternCount == 0)
        #expect(registry.punsubscribe(a, pattern: buffer("n*")) == .unchanged)
        #expect(registry.punsubscribe(b, pattern: buffer("n*")) == .removed(last: true))
        #expect(registry.patternCount == 0)
        #expect(registry.patterns.isEmpty)
        #expect(registry.subscriberCount == 0)
    }

    /// A channel and a pattern with the same bytes are different subscriptions (Redis keeps
    /// `pubsub_channels` and `pubsub_patterns` apart).
    @Test func channelsAndPatternsAreSeparate() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a")
        #expect(registry.subscribe(a, channel: buffer("n*")) == .added(first: true))
        #expect(registry.psubscribe(a, pattern: buffer("n*")) == .added(first: true))
        #expect(registry.subscriptionCount(of: a) == 2)
        #expect(registry.channelCount(of: a) == 1)
        #expect(registry.patternCount(of: a) == 1)
        #expect(registry.unsubscribe(a, channel: buffer("n*")) == .removed(last: true))
        #expect(registry.patternCount == 1)
        #expect(registry.subscriptionCount(of: a) == 1)
        #expect(registry.subscriberCount == 1)
    }

    // MARK: Both directions of the index

    @Test func indexedBothWays() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b"), c = Sub("c")
        _ = registry.subscribe(a, channel: buffer("x"))
        _ = registry.subscribe(a, channel: buffer("y"))
        _ = registry.subscribe(b, channel: buffer("y"))
        _ = registry.psubscribe(c, pattern: buffer("*"))
        #expect(names(registry.channels(of: a)) == ["x", "y"])
        #expect(names(registry.channels(of: b)) == ["y"])
        #expect(registry.channels(of: c).isEmpty)
        #expect(names(registry.patterns(of: c)) == ["*"])
        #expect(subscriberNames(registry.entry(forChannel: buffer("x"))) == ["a"])
        #expect(subscriberNames(registry.entry(forChannel: buffer("y"))) == ["a", "b"])
        #expect(subscriberNames(registry.patterns[buffer("*")]) == ["c"])
        #expect(Set(registry.activeChannels.map { String(buffer: $0) }) == ["x", "y"])
        #expect(registry.subscriberCount == 3)
    }

    /// Names are binary: channels differing only after a NUL, or by a high byte, are distinct.
    @Test func binaryChannelNames() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a")
        #expect(registry.subscribe(a, channel: buffer([0x61, 0x00, 0x62])) == .added(first: true))
        #expect(registry.subscribe(a, channel: buffer([0x61, 0x00, 0x63])) == .added(first: true))
        #expect(registry.subscribe(a, channel: buffer([0x61])) == .added(first: true))
        #expect(registry.subscribe(a, channel: buffer([0xE9])) == .added(first: true))
        #expect(registry.channelCount == 4)
        #expect(registry.entry(forChannel: buffer([0x61, 0x00, 0x62])) != nil)
    }

    /// A channel subscribed through a slice of a larger read buffer is found by its bytes, and
    /// the registry's key does not change when the read buffer is reused.
    @Test func channelSubscribedThroughASliceIsFoundByItsBytes() throws {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a")
        var read = buffer("*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
        let slice = try #require(read.getSlice(at: 23, length: 4))
        #expect(String(buffer: slice) == "news")
        _ = registry.subscribe(a, channel: slice)
        read.setString("XXXX", at: 23)
        let entry = try #require(registry.entry(forChannel: buffer("news")))
        #expect(String(buffer: entry.name) == "news")
        #expect(names(registry.channels(of: a)) == ["news"])
    }

    // MARK: Order

    @Test func channelsAndPatternsKeepSubscriptionOrder() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a")
        for ch in ["zeta", "alpha", "mid", "beta"] { _ = registry.subscribe(a, channel: buffer(ch)) }
        for p in ["z*", "a*", "m?"] { _ = registry.psubscribe(a, pattern: buffer(p)) }
        #expect(names(registry.channels(of: a)) == ["zeta", "alpha", "mid", "beta"])
        #expect(names(registry.patterns(of: a)) == ["z*", "a*", "m?"])
        _ = registry.unsubscribe(a, channel: buffer("alpha"))
        _ = registry.subscribe(a, channel: buffer("alpha"))
        #expect(names(registry.channels(of: a)) == ["zeta", "mid", "beta", "alpha"])
        _ = registry.punsubscribe(a, pattern: buffer("z*"))
        _ = registry.psubscribe(a, pattern: buffer("z*"))
        #expect(names(registry.patterns(of: a)) == ["a*", "m?", "z*"])
    }

    /// The server-wide pattern table keeps first-subscribed order (publish walks it).
    @Test func patternTableOrder() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        _ = registry.psubscribe(a, pattern: buffer("p1"))
        _ = registry.psubscribe(b, pattern: buffer("p2"))
        _ = registry.psubscribe(b, pattern: buffer("p1"))
        _ = registry.psubscribe(a, pattern: buffer("p3"))
        #expect(names(Array(registry.patterns.keys)) == ["p1", "p2", "p3"])
        _ = registry.punsubscribe(a, pattern: buffer("p1"))
        #expect(names(Array(registry.patterns.keys)) == ["p1", "p2", "p3"])
        _ = registry.punsubscribe(b, pattern: buffer("p1"))
        #expect(names(Array(registry.patterns.keys)) == ["p2", "p3"])
    }

    // MARK: Removing everything

    @Test func unsubscribeAllChannels() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        _ = registry.subscribe(a, channel: buffer("c1"))
        _ = registry.subscribe(a, channel: buffer("c2"))
        _ = registry.subscribe(a, channel: buffer("c3"))
        _ = registry.subscribe(b, channel: buffer("c2"))
        _ = registry.psubscribe(a, pattern: buffer("p*"))
        let removed = registry.unsubscribeAllChannels(a)
        #expect(removed.map { String(buffer: $0.name) } == ["c1", "c2", "c3"])
        #expect(removed.map(\.last) == [true, false, true])
        #expect(registry.channelCount(of: a) == 0)
        #expect(registry.patternCount(of: a) == 1)
        #expect(registry.channelCount == 1)
        #expect(subscriberNames(registry.entry(forChannel: buffer("c2"))) == ["b"])
        #expect(registry.unsubscribeAllChannels(a).isEmpty)
        #expect(registry.subscriberCount == 2)
    }

    @Test func punsubscribeAllPatterns() {
        let registry = SubscriptionRegistry<Sub>()
        let a = Sub("a"), b = Sub("b")
        _ = registry.psubscribe(a, pattern: buffer("p1"))
        _ = registry.psubscribe(a, pattern: buffer("p2"))
        _ = registry.psubscribe(b, pattern: buffer("p1"))
        _ = registry.subscribe(a, channel: buffer("c"))
        let removed = registry.punsubscribeAllPatterns(a)
        #expect(removed.map { String(buffer: $0.name) } == ["p1", "p2"])
        #expect(removed.map(\.last) == [false, true])
        #expect(registry.patternCount == 1)
        #expect(subscriberNames(registry.patterns[buffer("p1")]) == ["b"])
        #expect(registry.channelCount(of: a) == 1)
        #expect(registry.punsubscribeAllPatterns(a).isEmpty)
    }

    @Test func removingEverythingCleansUp() {
        let registry = SubscriptionRegistry<Sub>()
        let subs = (0..<5).map { Sub("s\($0)") }
        for s in subs {
            _ = registry.subscribe(s, channel: buffer("shared"))
            _ = registry.subscribe(s, channel: buffer("own-\(s.name)"))
            _ = registry.psubscribe(s, pattern: buffer("*"))
        }
        #expect(registry.channelCount == 6)
        for s in subs {
            _ = registry.unsubscribeAllChannels(s)
            _ = registry.punsubscribeAllPatterns(s)
        }
        #expect(registry.channelCount == 0)
        #expect(registry.patternCount == 0)
        #expect(registry.subscriberCount == 0)
        #expect(registry.activeChannels.isEmpty)
        for s in subs { #expect(registry.subscriptionCount(of: s) == 0) }
    }

    /// Removal from the middle of an entry keeps every other subscriber reachable (the entry
    /// swaps the last subscriber into the hole and must track its new position).
    @Test func removalFromTheMiddleKeepsTheOthers() {
        let registry = SubscriptionRegistry<Sub>()
        let subs = (0..<50).map { Sub("s\($0)") }
        for s in subs { _ = registry.subscribe(s, channel: buffer("ch")) }
        for (i, s) in subs.enumerated() where i % 3 == 1 {
            #expect(registry.unsubscribe(s, channel: buffer("ch")) == .removed(last: false))
        }
        let remaining = subs.enumerated().filter { $0.offset % 3 != 1 }.map(\.element)
        #expect(subscriberNames(registry.entry(forChannel: buffer("ch"))) == Set(remaining.map(\.name)))
        #expect(registry.entry(forChannel: buffer("ch"))?.subscribers.count == remaining.count)
        // Every remaining subscriber can still be removed, and the last one reports it.
        for (i, s) in remaining.enumerated() {
            let expected: SubscriptionRegistry<Sub>.Change = .removed(last: i == remaining.count - 1)
            #expect(registry.unsubscribe(s, channel: buffer("ch")) == expected)
        }
        #expect(registry.channelCount == 0)
    }
}

/// Shard channels: a third table, apart from channels of the same name.
@Suite struct ShardChannelRegistryTests {
    final class Sub {}

    @Test func shardChannelsAreANamespaceApart() {
        let r = SubscriptionRegistry<Sub>()
        let a = Sub(), b = Sub()
        #expect(r.ssubscribe(a, shardChannel: buffer("x")) == .added(first: true))
        #expect(r.ssubscribe(a, shardChannel: buffer("x")) == .unchanged)
        #expect(r.subscribe(a, channel: buffer("x")) == .added(first: true))
        #expect(r.ssubscribe(b, shardChannel: buffer("x")) == .added(first: false))
        #expect(r.numberOfShardSubscribers(shardChannel: buffer("x")) == 2)
        #expect(r.numberOfSubscribers(channel: buffer("x")) == 1)
        #expect(r.entry(forShardChannel: buffer("x"))?.subscribers.count == 2)
        #expect(r.shardChannelCount(of: a) == 1 && r.subscriptionCount(of: a) == 1 && r.totalSubscriptionCount(of: a) == 2)
        #expect(r.holds(a, shardChannel: buffer("x")) && !r.holds(a, shardChannel: buffer("y")))
        #expect(r.unsubscribe(a, channel: buffer("x")) == .removed(last: true))
        #expect(r.shardChannelCount == 1 && r.channelCount == 0)
        #expect(r.sunsubscribe(a, shardChannel: buffer("x")) == .removed(last: false))
        #expect(r.sunsubscribe(a, shardChannel: buffer("x")) == .unchanged)
        #expect(r.subscriberCount == 1)
        #expect(r.sunsubscribe(b, shardChannel: buffer("x")) == .removed(last: true))
        #expect(r.subscriberCount == 0 && r.shardChannelCount == 0 && r.entry(forShardChannel: buffer("x")) == nil)
    }

    @Test func removeAllKeepsSubscriptionOrderAndReportsLast() {
        let r = SubscriptionRegistry<Sub>()
        let a = Sub(), b = Sub()
        for name in ["c", "a", "b"] { _ = r.ssubscribe(a, shardChannel: buffer(name)) }
        _ = r.ssubscribe(b, shardChannel: buffer("a"))
        _ = r.psubscribe(a, pattern: buffer("p*"))
        let removed = r.sunsubscribeAllShardChannels(a)
        #expect(removed.map { String(buffer: $0.name) } == ["c", "a", "b"])
        #expect(removed.map(\.last) == [true, false, true])
        #expect(r.sunsubscribeAllShardChannels(a).isEmpty)
        #expect(r.patternCount(of: a) == 1 && Array(r.activeShardChannels) == [buffer("a")])
        #expect(r.subscriptionTotals == (0, 1, 1))
        #expect(r.isHeld(.shard, buffer("a")) && !r.isHeld(.channel, buffer("a")))
        #expect(r.confirmationCount(.shard, of: b) == 1 && r.confirmationCount(.channel, of: b) == 0)
    }
}
