import NIOCore

/// Local fan-out: the subscription registry plus publish, which encodes each frame kind once and
/// hands the same buffer to every matching subscriber — exact subscribers first, then pattern
/// subscribers pattern by pattern, as Redis's `pubsubPublishMessage` does.
///
/// Confined to one event loop by its owner; it does no I/O itself.
public final class PubSubHub<Subscriber: MessageSink> {
    public let registry = SubscriptionRegistry<Subscriber>()
    public let stats: RelayStats

    public init(stats: RelayStats) {
        self.stats = stats
    }

    /// Delivers `payload` on `channel` to every local subscriber; returns the number of
    /// deliveries (Redis's PUBLISH reply in local mode).
    @discardableResult
    public func publish(channel: ByteBuffer, payload: ByteBuffer) -> Int {
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
        stats.messagesPublished += 1
        stats.deliveries += receivers
        return receivers
    }

    /// Hands one frame per protocol version, each encoded on first need, to every subscriber.
    @inline(__always)
    private static func fanOut(_ subscribers: ContiguousArray<Subscriber>, encode: (RESPVersion) -> ByteBuffer) -> Int {
        var resp2 = ByteBuffer()
        var resp3 = ByteBuffer()
        var encoded2 = false
        var encoded3 = false
        subscribers.withUnsafeBufferPointer { subs in
            for i in subs.indices {
                // The registry holds every subscriber strongly for the whole loop: borrowing
                // without retain/release halves the per-delivery cost (profiled).
                Unmanaged.passUnretained(subs[i])._withUnsafeGuaranteedRef { s in
                    if s.respVersion == .resp2 {
                        if !encoded2 { resp2 = encode(.resp2); encoded2 = true }
                        s.deliver(resp2)
                    } else {
                        if !encoded3 { resp3 = encode(.resp3); encoded3 = true }
                        s.deliver(resp3)
                    }
                }
            }
        }
        return subscribers.count
    }
}
