import NIOCore
import OrderedCollections

/// Who is subscribed to what, indexed both ways (channel → subscribers, subscriber → channels),
/// with exact channels and patterns kept apart, as Redis's `pubsub.c` does. An entry is removed
/// when its last subscriber leaves, and the first/last transitions are reported so that an
/// upstream subscription can be reference-counted.
///
/// Keys are compact copies: a slice of a read buffer is never retained.
public final class SubscriptionRegistry<Subscriber: AnyObject> {
    /// The subscribers of one channel or pattern. Removal swaps with the last element (O(1));
    /// the order among subscribers is not observable by a client.
    public final class Entry {
        public let name: ByteBuffer
        /// The name as bytes, for the glob matcher (patterns only).
        public let nameBytes: [UInt8]
        public private(set) var subscribers: ContiguousArray<Subscriber> = []
        private var positions: [ObjectIdentifier: Int] = [:]

        init(name: ByteBuffer) {
            self.name = name
            self.nameBytes = Array(name.readableBytesView)
        }

        func add(_ s: Subscriber) {
            positions[ObjectIdentifier(s)] = subscribers.count
            subscribers.append(s)
        }

        func remove(_ s: Subscriber) {
            guard let i = positions.removeValue(forKey: ObjectIdentifier(s)) else {
                preconditionFailure("registry out of sync: subscriber not in entry \(String(buffer: name))")
            }
            let last = subscribers.count - 1
            if i != last {
                let moved = subscribers[last]
                subscribers[i] = moved
                positions[ObjectIdentifier(moved)] = i
            }
            subscribers.removeLast()
        }
    }

    /// What a subscriber holds, in the order it subscribed.
    struct Holdings {
        var channels: OrderedSet<ByteBuffer> = []
        var patterns: OrderedSet<ByteBuffer> = []
    }

    /// The outcome of one subscribe/unsubscribe, for the reply and the upstream reference count.
    public enum Change: Equatable, Sendable {
        /// Newly subscribed; `first` when no one held this channel/pattern before.
        case added(first: Bool)
        /// Was already subscribed: nothing changed.
        case unchanged
        /// Removed; `last` when no one holds this channel/pattern any more.
        case removed(last: Bool)
    }

    private var channels: [ByteBuffer: Entry] = [:]
    /// Patterns in the order they were first subscribed; publish walks them in this order.
    public private(set) var patterns: OrderedDictionary<ByteBuffer, Entry> = [:]
    /// Patterns held by two clients or more: the fleet PUBLISH's count walks the patterns only
    /// when there is one (`BackplaneStateMachine`).
    public private(set) var sharedPatternCount = 0
    private var holdings: [ObjectIdentifier: Holdings] = [:]

    public init() {}

    // MARK: Changes

    public func subscribe(_ s: Subscriber, channel: ByteBuffer) -> Change {
        let key = ObjectIdentifier(s)
        if holdings[key]?.channels.contains(channel) == true { return .unchanged }
        let name = channel.compacted()
        holdings[key, default: Holdings()].channels.append(name)
        if let entry = channels[name] {
            entry.add(s)
            return .added(first: false)
        }
        let entry = Entry(name: name)
        entry.add(s)
        channels[name] = entry
        return .added(first: true)
    }

    public func unsubscribe(_ s: Subscriber, channel: ByteBuffer) -> Change {
        let key = ObjectIdentifier(s)
        guard holdings[key]?.channels.remove(channel) != nil else { return .unchanged }
        dropHoldingsIfEmpty(key)
        return .removed(last: Self.detach(s, from: channel, in: &channels))
    }

    public func psubscribe(_ s: Subscriber, pattern: ByteBuffer) -> Change {
        let key = ObjectIdentifier(s)
        if holdings[key]?.patterns.contains(pattern) == true { return .unchanged }
        let name = pattern.compacted()
        holdings[key, default: Holdings()].patterns.append(name)
        if let entry = patterns[name] {
            entry.add(s)
            if entry.subscribers.count == 2 { sharedPatternCount += 1 }
            return .added(first: false)
        }
        let entry = Entry(name: name)
        entry.add(s)
        patterns[name] = entry
        return .added(first: true)
    }

    public func punsubscribe(_ s: Subscriber, pattern: ByteBuffer) -> Change {
        let key = ObjectIdentifier(s)
        guard holdings[key]?.patterns.remove(pattern) != nil else { return .unchanged }
        dropHoldingsIfEmpty(key)
        return .removed(last: detachPattern(s, from: pattern))
    }

    /// Removes every channel subscription of `s`, in the order it subscribed; returns each
    /// channel with whether it was the last holder.
    public func unsubscribeAllChannels(_ s: Subscriber) -> [(name: ByteBuffer, last: Bool)] {
        let key = ObjectIdentifier(s)
        guard let held = holdings[key]?.channels, !held.isEmpty else { return [] }
        holdings[key]!.channels = []
        dropHoldingsIfEmpty(key)
        return held.map { name in (name, Self.detach(s, from: name, in: &channels)) }
    }

    /// Removes every pattern subscription of `s`, in the order it subscribed.
    public func punsubscribeAllPatterns(_ s: Subscriber) -> [(name: ByteBuffer, last: Bool)] {
        let key = ObjectIdentifier(s)
        guard let held = holdings[key]?.patterns, !held.isEmpty else { return [] }
        holdings[key]!.patterns = []
        dropHoldingsIfEmpty(key)
        return held.map { name in (name, detachPattern(s, from: name)) }
    }

    private func detachPattern(_ s: Subscriber, from name: ByteBuffer) -> Bool {
        guard let entry = patterns[name] else {
            preconditionFailure("registry out of sync: no entry for pattern \(String(buffer: name))")
        }
        if entry.subscribers.count == 2 { sharedPatternCount -= 1 }
        entry.remove(s)
        if entry.subscribers.isEmpty {
            patterns[name] = nil
            return true
        }
        return false
    }

    private static func detach(_ s: Subscriber, from name: ByteBuffer, in table: inout [ByteBuffer: Entry]) -> Bool {
        guard let entry = table[name] else {
            preconditionFailure("registry out of sync: no entry for channel \(String(buffer: name))")
        }
        entry.remove(s)
        if entry.subscribers.isEmpty {
            table[name] = nil
            return true
        }
        return false
    }

    // MARK: Queries

    /// The subscribers of one exact channel (the publish hot path).
    @inline(__always)
    public func entry(forChannel channel: ByteBuffer) -> Entry? {
        channels[channel]
    }

    public func channels(of s: Subscriber) -> [ByteBuffer] {
        holdings[ObjectIdentifier(s)].map { Array($0.channels) } ?? []
    }

    public func patterns(of s: Subscriber) -> [ByteBuffer] {
        holdings[ObjectIdentifier(s)].map { Array($0.patterns) } ?? []
    }

    /// What `s` receives of a message published on `channel`: whether it holds the channel, and
    /// the patterns of its that match (nil: nothing; the common case costs one lookup).
    public func receipts(of s: Subscriber, channel: ByteBuffer) -> (channel: Bool, patterns: [ByteBuffer])? {
        guard let h = holdings[ObjectIdentifier(s)] else { return nil }
        let patterns = h.patterns.isEmpty ? [] : channel.withUnsafeReadableBytes { ch in
            h.patterns.filter { p in p.withUnsafeReadableBytes { GlobMatcher.matches(pattern: $0, string: ch) } }
        }
        let holds = h.channels.contains(channel)
        return holds || !patterns.isEmpty ? (holds, patterns) : nil
    }

    public func channelCount(of s: Subscriber) -> Int {
        holdings[ObjectIdentifier(s)]?.channels.count ?? 0
    }

    public func patternCount(of s: Subscriber) -> Int {
        holdings[ObjectIdentifier(s)]?.patterns.count ?? 0
    }

    /// Channels plus patterns: the count Redis puts in (un)subscribe replies.
    public func subscriptionCount(of s: Subscriber) -> Int {
        guard let h = holdings[ObjectIdentifier(s)] else { return 0 }
        return h.channels.count + h.patterns.count
    }

    public func numberOfSubscribers(channel: ByteBuffer) -> Int {
        channels[channel]?.subscribers.count ?? 0
    }

    /// Client subscriptions (not distinct names) to channels and to patterns.
    public var subscriptionTotals: (channels: Int, patterns: Int) {
        holdings.values.reduce(into: (0, 0)) { total, h in
            total.0 += h.channels.count
            total.1 += h.patterns.count
        }
    }

    /// Channels with at least one subscriber (`PUBSUB CHANNELS`).
    public var activeChannels: Dictionary<ByteBuffer, Entry>.Keys { channels.keys }
    public var channelCount: Int { channels.count }
    public var patternCount: Int { patterns.count }
    /// Subscribers that hold at least one subscription.
    public var subscriberCount: Int { holdings.count }

    // MARK: Private

    private func dropHoldingsIfEmpty(_ key: ObjectIdentifier) {
        if let h = holdings[key], h.channels.isEmpty, h.patterns.isEmpty {
            holdings[key] = nil
        }
    }
}
