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
            var resp2: ByteBuffer?
            var resp3: ByteBuffer?
            for s in entry.subscribers {
                switch s.respVersion {
                case .resp2:
                    if resp2 == nil { resp2 = PubSubFrames.message(channel: channel, payload: payload, .resp2) }
                    s.deliver(resp2!)
                case .resp3:
                    if resp3 == nil { resp3 = PubSubFrames.message(channel: channel, payload: payload, .resp3) }
                    s.deliver(resp3!)
                }
            }
            receivers += entry.subscribers.count
        }
        if registry.patternCount > 0 {
            receivers += channel.withUnsafeReadableBytes { channelBytes in
                var n = 0
                for entry in registry.patterns.values {
                    let matched = entry.nameBytes.withUnsafeBytes {
                        GlobMatcher.matches(pattern: $0, string: channelBytes)
                    }
                    guard matched else { continue }
                    var resp2: ByteBuffer?
                    var resp3: ByteBuffer?
                    for s in entry.subscribers {
                        switch s.respVersion {
                        case .resp2:
                            if resp2 == nil {
                                resp2 = PubSubFrames.pmessage(pattern: entry.name, channel: channel, payload: payload, .resp2)
                            }
                            s.deliver(resp2!)
                        case .resp3:
                            if resp3 == nil {
                                resp3 = PubSubFrames.pmessage(pattern: entry.name, channel: channel, payload: payload, .resp3)
                            }
                            s.deliver(resp3!)
                        }
                    }
                    n += entry.subscribers.count
                }
                return n
            }
        }
        stats.messagesPublished += 1
        stats.deliveries += receivers
        return receivers
    }
}
