import NIOCore

/// Local fan-out: the subscription registry plus publish, which encodes each frame kind once and
/// hands the same buffer to every matching subscriber — exact subscribers first, then pattern
/// subscribers pattern by pattern, as Redis's `pubsubPublishMessage` does.
///
/// A subscriber that closes during a fan-out (its output limit reached) is not removed while the
/// registry is being iterated: as Redis's `freeClientAsync`, it is marked closing (it drops what
/// it is still offered) and its removal runs once the fan-out is over (`whenNotFanningOut`).
///
/// Confined to one event loop by its owner; it does no I/O itself.
public final class PubSubHub<Subscriber: MessageSink> {
    public let registry = SubscriptionRegistry<Subscriber>()
    public let stats: RelayStats
    /// True while a publish or an upstream delivery walks the registry's subscriber lists.
    public private(set) var isFanningOut = false
    /// Work that must not mutate the registry mid-fan-out, run when the fan-out ends.
    private var afterFanOut: [() -> Void] = []

    public init(stats: RelayStats) {
        self.stats = stats
    }

    /// Runs `work` now, or — when called from inside a fan-out (a subscriber closing as it is
    /// delivered to) — right after that fan-out, before the next one starts.
    public func whenNotFanningOut(_ work: @escaping () -> Void) {
        if isFanningOut {
            afterFanOut.append(work)
        } else {
            work()
        }
    }

    @inline(__always)
    private func endFanOut() {
        isFanningOut = false
        if !afterFanOut.isEmpty { runAfterFanOut() }
    }

    @inline(never)
    private func runAfterFanOut() {
        let work = afterFanOut
        afterFanOut.removeAll()
        for w in work { w() }
    }

    /// Delivers `payload` on `channel` to every local subscriber; returns the number of
    /// deliveries (Redis's PUBLISH reply in local mode).
    @discardableResult
    public func publish(channel: ByteBuffer, payload: ByteBuffer) -> Int {
        isFanningOut = true
        defer { endFanOut() }
        var receivers = 0
        if let entry = registry.entry(forChannel: channel) {
            receivers += Self.fanOut(entry.subscribers) { PubSubFrames.message(channel: channel, payload: payload, $0) }
        }
        if registry.patternCount > 0 {
            receivers += channel.withUnsafeReadableBytes { channelBytes in
                var n = 0
                for entry in registry.patterns.values {
                    let matched = entry.nameBytes.withUnsafeBytes {
                        GlobMatcher.matches(pattern: $0, string: channelBytes)
                    }
                    guard matched else { continue }
                    n += Self.fanOut(entry.subscribers) {
                        PubSubFrames.pmessage(pattern: entry.name, channel: channel, payload: payload, $0)
                    }
                }
                return n
            }
        }
        stats.counts.deliveries += receivers
        return receivers
    }

    /// Delivers `payload` on a shard channel (SPUBLISH) to its local subscribers only — no
    /// classic channel, no pattern; returns their number (Redis's SPUBLISH reply in local mode).
    @discardableResult
    public func publish(shardChannel channel: ByteBuffer, payload: ByteBuffer) -> Int {
        deliver(to: registry.entry(forShardChannel: channel)) { PubSubFrames.smessage(channel: channel, payload: payload, $0) }
    }

    /// An `smessage` from the backplane (not the fleet channel's): to the local subscribers of
    /// that shard channel. `counted`: the message was counted already (delivered to the channel's
    /// subscribers as well, on a Redis Cluster in sharded mode).
    @discardableResult
    public func deliverUpstream(shardChannel channel: ByteBuffer, payload: UnsafeRawBufferPointer, counted: Bool = false) -> Int {
        if !counted { stats.counts.messagesFromRedis += 1 }
        return deliver(to: registry.entry(forShardChannel: channel)) {
            PubSubFrames.smessage(channel: channel.readableBytesView, payload: payload, $0)
        }
    }

    /// A `message` Redis delivered on the backplane's subscriber link: to the local subscribers
    /// of the exact channel only — Redis sends a separate `pmessage` for each matching pattern
    /// the relay holds, in its own order, which `deliverUpstream(pattern:…)` handles.
    @discardableResult
    public func deliverUpstream(channel: ByteBuffer, payload: UnsafeRawBufferPointer) -> Int {
        stats.counts.messagesFromRedis += 1
        return deliver(to: registry.entry(forChannel: channel)) {
            PubSubFrames.message(channel: channel.readableBytesView, payload: payload, $0)
        }
    }

    /// A `pmessage` from the backplane: to the local subscribers of that pattern.
    @discardableResult
    public func deliverUpstream(pattern: ByteBuffer, channel: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Int {
        stats.counts.messagesFromRedis += 1
        guard let entry = registry.patterns[pattern] else { return 0 }
        return deliver(to: entry) { PubSubFrames.pmessage(pattern: entry.name, channel: channel, payload: payload, $0) }
    }

    /// One name's subscribers get one frame (encoded once per protocol version), counted.
    @inline(__always)
    private func deliver(to entry: SubscriptionRegistry<Subscriber>.Entry?, encode: (RESPVersion) -> ByteBuffer) -> Int {
        guard let entry else { return 0 }
        isFanningOut = true
        defer { endFanOut() }
        let n = Self.fanOut(entry.subscribers, encode: encode)
        stats.counts.deliveries += n
        return n
    }

    /// Hands one frame per protocol version, each encoded once, to every subscriber. The frames'
    /// bytes are borrowed once for the whole loop and subscribers are borrowed without
    /// retain/release: reference counting was a third of fan-out CPU before (profiled).
    @inline(__always)
    private static func fanOut(_ subscribers: ContiguousArray<Subscriber>, encode: (RESPVersion) -> ByteBuffer) -> Int {
        subscribers.withUnsafeBufferPointer { subs in
            var needs2 = false
            var needs3 = false
            for s in subs {
                if s.respVersion == .resp2 { needs2 = true } else { needs3 = true }
                if needs2 && needs3 { break }
            }
            let resp2 = needs2 ? encode(.resp2) : ByteBuffer()
            let resp3 = needs3 ? encode(.resp3) : ByteBuffer()
            resp2.withUnsafeReadableBytes { bytes2 in
                resp3.withUnsafeReadableBytes { bytes3 in
                    for i in subs.indices {
                        Unmanaged.passUnretained(subs[i])._withUnsafeGuaranteedRef { s in
                            if s.respVersion == .resp2 {
                                s.deliver(resp2, bytes: bytes2)
                            } else {
                                s.deliver(resp3, bytes: bytes3)
                            }
                        }
                    }
                }
            }
        }
        return subscribers.count
    }
}
