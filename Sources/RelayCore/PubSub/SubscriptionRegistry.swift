import NIOCore
import OrderedCollections

/// Who is subscribed to what, indexed both ways (channel → subscribers, subscriber → channels),
/// with exact channels, patterns and shard channels (SSUBSCRIBE) kept apart, as Redis's
/// `pubsub.c` does: a shard channel is a namespace of its own. An entry is removed
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
        var shardChannels: OrderedSet<ByteBuffer> = []

        var isEmpty: Bool { channels.isEmpty && patterns.isEmpty && shardChannels.isEmpty }
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
    private var shardChannels: [ByteBuffer: Entry] = [:]
    /// Patterns in the order they were first subscribed; publish walks them in this order.
    public private(set) var patterns: OrderedDictionary<ByteBuffer, Entry> = [:]
    /// Patterns held by two clients or more: the fleet PUBLISH's count walks the patterns only
    /// when there is one (`BackplaneStateMachine`).
    public private(set) var sharedPatternCount = 0
    private var holdings: [ObjectIdentifier: Holdings] = [:]

    public init() {}

    // MARK: Changes

    public func subscribe(_ s: Subscriber, channel: ByteBuffer) -> Change {
        Self.attach(s, channel, \.channels, holdings: &holdings, in: &channels)
    }

    public func unsubscribe(_ s: Subscriber, channel: ByteBuffer) -> Change {
        Self.release(s, channel, \.channels, holdings: &holdings, in: &channels)
    }

    /// SSUBSCRIBE: a shard channel, apart from the classic channel of the same name.
    public func ssubscribe(_ s: Subscriber, shardChannel: ByteBuffer) -> Change {
        Self.attach(s, shardChannel, \.shardChannels, holdings: &holdings, in: &shardChannels)
    }

    public func sunsubscribe(_ s: Subscriber, shardChannel: ByteBuffer) -> Change {
        Self.release(s, shardChannel, \.shardChannels, holdings: &holdings, in: &shardChannels)
    }

    /// One exact name (a channel or a shard channel) in the table and the holdings it belongs to.
    private static func attach(_ s: Subscriber, _ name: ByteBuffer, _ held: WritableKeyPath<Holdings, OrderedSet<ByteBuffer>>,
                               holdings: inout [ObjectIdentifier: Holdings], in table: inout [ByteBuffer: Entry]) -> Change {
        let key = ObjectIdentifier(s)
        if holdings[key]?[keyPath: held].contains(name) == true { return .unchanged }
        let name = name.compacted()
        holdings[key, default: Holdings()][keyPath: held].append(name)
        if let entry = table[name] {
            entry.add(s)
            return .added(first: false)
        }
        let entry = Entry(name: name)
        entry.add(s)
        table[name] = entry
        return .added(first: true)
    }

    private static func release(_ s: Subscriber, _ name: ByteBuffer, _ held: WritableKeyPath<Holdings, OrderedSet<ByteBuffer>>,
                                holdings: inout [ObjectIdentifier: Holdings], in table: inout [ByteBuffer: Entry]) -> Change {
        let key = ObjectIdentifier(s)
        guard holdings[key]?[keyPath: held].remove(name) != nil else { return .unchanged }
        if holdings[key]?.isEmpty == true { holdings[key] = nil }
        return .removed(last: detach(s, from: name, in: &table))
    }

    /// Every name `s` holds in one exact table, in the order it subscribed, each with whether
    /// it was the last holder.
    private static func releaseAll(_ s: Subscriber, _ held: WritableKeyPath<Holdings, OrderedSet<ByteBuffer>>,
                                   holdings: inout [ObjectIdentifier: Holdings],
                                   in table: inout [ByteBuffer: Entry]) -> [(name: ByteBuffer, last: Bool)] {
        let key = ObjectIdentifier(s)
        guard let names = holdings[key]?[keyPath: held], !names.isEmpty else { return [] }
        holdings[key]![keyPath: held] = []
        if holdings[key]?.isEmpty == true { holdings[key] = nil }
        return names.map { name in (name, detach(s, from: name, in: &table)) }
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
        Self.releaseAll(s, \.channels, holdings: &holdings, in: &channels)
    }

    /// Removes every shard-channel subscription of `s`, in the order it subscribed.
    public func sunsubscribeAllShardChannels(_ s: Subscriber) -> [(name: ByteBuffer, last: Bool)] {
        Self.releaseAll(s, \.shardChannels, holdings: &holdings, in: &shardChannels)
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
            preconditionFailure("registry out of sync: no entry for \(String(buffer: name))")
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

    /// The subscribers of one shard channel (the SPUBLISH hot path).
    @inline(__always)
    public func entry(forShardChannel channel: ByteBuffer) -> Entry? {
        shardChannels[channel]
    }

    public func channels(of s: Subscriber) -> [ByteBuffer] {
        holdings[ObjectIdentifier(s)].map { Array($0.channels) } ?? []
    }

    public func patterns(of s: Subscriber) -> [ByteBuffer] {
        holdings[ObjectIdentifier(s)].map { Array($0.patterns) } ?? []
    }

    public func shardChannels(of s: Subscriber) -> [ByteBuffer] {
        holdings[ObjectIdentifier(s)].map { Array($0.shardChannels) } ?? []
    }

    /// Whether `s` holds the shard channel (it then receives its own SPUBLISH).
    public func holds(_ s: Subscriber, shardChannel: ByteBuffer) -> Bool {
        holdings[ObjectIdentifier(s)]?.shardChannels.contains(shardChannel) ?? false
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

    public func shardChannelCount(of s: Subscriber) -> Int {
        holdings[ObjectIdentifier(s)]?.shardChannels.count ?? 0
    }

    /// Channels plus patterns: the count Redis puts in (p)(un)subscribe replies.
    public func subscriptionCount(of s: Subscriber) -> Int {
        guard let h = holdings[ObjectIdentifier(s)] else { return 0 }
        return h.channels.count + h.patterns.count
    }

    /// Channels, patterns and shard channels: while it is above 0, a RESP2 client stays in the
    /// subscribed context (Redis's `clientTotalPubSubSubscriptionCount`).
    public func totalSubscriptionCount(of s: Subscriber) -> Int {
        guard let h = holdings[ObjectIdentifier(s)] else { return 0 }
        return h.channels.count + h.patterns.count + h.shardChannels.count
    }

    public func numberOfSubscribers(channel: ByteBuffer) -> Int {
        channels[channel]?.subscribers.count ?? 0
    }

    public func numberOfShardSubscribers(shardChannel: ByteBuffer) -> Int {
        shardChannels[shardChannel]?.subscribers.count ?? 0
    }

    /// Client subscriptions (not distinct names) to channels, to patterns and to shard channels.
    public var subscriptionTotals: (channels: Int, patterns: Int, shardChannels: Int) {
        holdings.values.reduce(into: (0, 0, 0)) { total, h in
            total.0 += h.channels.count
            total.1 += h.patterns.count
            total.2 += h.shardChannels.count
        }
    }

    /// Channels with at least one subscriber (`PUBSUB CHANNELS`).
    public var activeChannels: Dictionary<ByteBuffer, Entry>.Keys { channels.keys }
    /// Shard channels with at least one subscriber (`PUBSUB SHARDCHANNELS`).
    public var activeShardChannels: Dictionary<ByteBuffer, Entry>.Keys { shardChannels.keys }
    public var channelCount: Int { channels.count }
    public var patternCount: Int { patterns.count }
    public var shardChannelCount: Int { shardChannels.count }
    /// Subscribers that hold at least one subscription.
    public var subscriberCount: Int { holdings.count }

    // MARK: Private

    private func dropHoldingsIfEmpty(_ key: ObjectIdentifier) {
        if holdings[key]?.isEmpty == true { holdings[key] = nil }
    }
}

extension SubscriptionRegistry {
    /// The (P|S)SUBSCRIBE of one name, by kind.
    public func add(_ kind: SubscriptionKind, _ s: Subscriber, _ name: ByteBuffer) -> Change {
        switch kind {
        case .channel: return subscribe(s, channel: name)
        case .pattern: return psubscribe(s, pattern: name)
        case .shard: return ssubscribe(s, shardChannel: name)
        }
    }

    /// The (P|S)UNSUBSCRIBE of one name, by kind.
    public func remove(_ kind: SubscriptionKind, _ s: Subscriber, _ name: ByteBuffer) -> Change {
        switch kind {
        case .channel: return unsubscribe(s, channel: name)
        case .pattern: return punsubscribe(s, pattern: name)
        case .shard: return sunsubscribe(s, shardChannel: name)
        }
    }

    /// Every name of one kind that `s` holds, removed in the order it subscribed.
    public func removeAll(_ kind: SubscriptionKind, _ s: Subscriber) -> [(name: ByteBuffer, last: Bool)] {
        switch kind {
        case .channel: return unsubscribeAllChannels(s)
        case .pattern: return punsubscribeAllPatterns(s)
        case .shard: return sunsubscribeAllShardChannels(s)
        }
    }

    /// The count in a confirmation of this kind: channels plus patterns for (p)(un)subscribe,
    /// shard channels alone for s(un)subscribe, as Redis counts them.
    public func confirmationCount(_ kind: SubscriptionKind, of s: Subscriber) -> Int {
        kind == .shard ? shardChannelCount(of: s) : subscriptionCount(of: s)
    }

    /// Whether any local client holds `name` of this kind.
    public func isHeld(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        switch kind {
        case .channel: return entry(forChannel: name) != nil
        case .pattern: return patterns[name] != nil
        case .shard: return entry(forShardChannel: name) != nil
        }
    }
}
