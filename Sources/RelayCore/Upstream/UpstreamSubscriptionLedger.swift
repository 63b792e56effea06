import DequeModule
import NIOCore

/// Whether a subscription is to a channel, to a pattern, or to a shard channel (SSUBSCRIBE: a
/// namespace apart from channels, without patterns).
public enum SubscriptionKind: Sendable, Hashable, CaseIterable {
    case channel
    case pattern
    case shard

    /// The confirmation push of a subscription of this kind.
    public var subscribeWord: StaticString {
        switch self {
        case .channel: return "subscribe"
        case .pattern: return "psubscribe"
        case .shard: return "ssubscribe"
        }
    }

    public var unsubscribeWord: StaticString {
        switch self {
        case .channel: return "unsubscribe"
        case .pattern: return "punsubscribe"
        case .shard: return "sunsubscribe"
        }
    }

    /// The command's name, upper case, as the backplane sends it.
    public func command(subscribe: Bool) -> String {
        let word = subscribe ? subscribeWord : unsubscribeWord
        return word.description.uppercased()
    }
}

/// The upstream subscriber link's commands that Redis has not confirmed yet, in the order they
/// were sent — Redis confirms (P|S)(UN)SUBSCRIBE one name at a time, in order — and the local
/// clients waiting for each subscription to be confirmed before their own confirmation may be
/// sent (subscribe-then-publish safety: README, "The Redis backplane").
///
/// Pure bookkeeping, like postgres-nio's `ListenStateMachine`: the link does the I/O.
public struct UpstreamSubscriptionLedger<Waiter> {
    struct Key: Hashable {
        var kind: SubscriptionKind
        var name: ByteBuffer
    }

    struct Pending {
        var key: Key
        var subscribe: Bool
        var waiters: [Waiter] = []
    }

    /// A confirmation that does not match what was sent: the link is out of step and must be
    /// dropped (it is resynchronised on reconnect).
    public struct Mismatch: Error, CustomStringConvertible {
        public let description: String
    }

    private var inFlight: Deque<Pending> = []
    /// Sequence number of `inFlight.first`.
    private var headSequence: UInt64 = 0
    /// The latest in-flight SUBSCRIBE/PSUBSCRIBE per name, by sequence number.
    private var latestSubscribe: [Key: UInt64] = [:]
    /// How many (un)subscriptions of each name are in flight, and the patterns among them (as
    /// bytes for the glob matcher): what a PUBLISH must wait for (`affects`).
    private var inFlightNames: [Key: Int] = [:]
    private var inFlightPatterns: [ByteBuffer: [UInt8]] = [:]

    public init() {}

    public var count: Int { inFlight.count }
    public var isEmpty: Bool { inFlight.isEmpty }

    /// One name of a (P)(UN)SUBSCRIBE command was written to the link.
    public mutating func sent(_ kind: SubscriptionKind, _ name: ByteBuffer, subscribe: Bool) {
        let key = Key(kind: kind, name: name)
        let sequence = headSequence + UInt64(inFlight.count)
        inFlight.append(Pending(key: key, subscribe: subscribe))
        inFlightNames[key, default: 0] += 1
        if kind == .pattern, inFlightPatterns[name] == nil { inFlightPatterns[name] = Array(name.readableBytesView) }
        if subscribe {
            latestSubscribe[key] = sequence
        } else {
            latestSubscribe[key] = nil
        }
    }

    /// Attaches `waiter` to the in-flight subscription of `name`, if there is one; returns
    /// whether it did (false: upstream already holds it, confirm at once).
    public mutating func wait(for kind: SubscriptionKind, _ name: ByteBuffer, _ waiter: Waiter) -> Bool {
        guard let sequence = latestSubscribe[Key(kind: kind, name: name)] else { return false }
        inFlight[Int(sequence - headSequence)].waiters.append(waiter)
        return true
    }

    /// Whether a subscription of `name` is sent and not yet confirmed.
    public func isPending(_ kind: SubscriptionKind, _ name: ByteBuffer) -> Bool {
        latestSubscribe[Key(kind: kind, name: name)] != nil
    }

    /// Whether an (un)subscription in flight could change who receives a PUBLISH to `channel`:
    /// one of the channel itself, or of a pattern matching it. Such a PUBLISH waits, so that
    /// Redis runs it after the subscription, as one Redis runs commands in the order sent.
    /// For an SPUBLISH (`sharded`), only an S(UN)SUBSCRIBE of the same name does: patterns never
    /// receive shard messages.
    public func affects(channel: ByteBuffer, sharded: Bool = false) -> Bool {
        guard !inFlight.isEmpty else { return false }
        if sharded { return inFlightNames[Key(kind: .shard, name: channel)] != nil }
        if inFlightNames[Key(kind: .channel, name: channel)] != nil { return true }
        guard !inFlightPatterns.isEmpty else { return false }
        return channel.withUnsafeReadableBytes { ch in
            inFlightPatterns.values.contains { p in p.withUnsafeBytes { GlobMatcher.matches(pattern: $0, string: ch) } }
        }
    }

    private mutating func left(_ key: Key) {
        let n = inFlightNames[key, default: 1] - 1
        inFlightNames[key] = n > 0 ? n : nil
        if n <= 0, key.kind == .pattern { inFlightPatterns[key.name] = nil }
    }

    /// Whether the oldest in-flight name is this one: a confirmation that is not was not asked for.
    public func isNext(_ kind: SubscriptionKind, _ name: ByteBuffer, subscribe: Bool) -> Bool {
        guard let first = inFlight.first else { return false }
        return first.key.kind == kind && first.subscribe == subscribe && first.key.name == name
    }

    /// Redis confirmed the oldest in-flight name; returns the clients that waited for it.
    public mutating func confirmed(_ kind: SubscriptionKind, _ name: ByteBuffer, subscribe: Bool) throws(Mismatch) -> [Waiter] {
        guard let first = inFlight.first else {
            throw Mismatch(description: "unexpected \(Self.verb(kind, subscribe)) confirmation for '\(String(buffer: name))': nothing in flight")
        }
        guard first.key.kind == kind, first.subscribe == subscribe, first.key.name == name else {
            throw Mismatch(description: "expected \(Self.verb(first.key.kind, first.subscribe)) '\(String(buffer: first.key.name))', got \(Self.verb(kind, subscribe)) '\(String(buffer: name))'")
        }
        inFlight.removeFirst()
        left(first.key)
        if first.subscribe, latestSubscribe[first.key] == headSequence {
            latestSubscribe[first.key] = nil
        }
        headSequence += 1
        return first.waiters
    }

    /// One name of the oldest in-flight command that Redis refused as a whole (an error reply,
    /// e.g. `-NOPERM` for a channel the ACL user may not use).
    public struct Refused {
        public let kind: SubscriptionKind
        public let name: ByteBuffer
        public let subscribe: Bool
        public let waiters: [Waiter]
    }

    /// Redis answered the oldest in-flight command, of `count` names, with an error: none of its
    /// names is confirmed. Returns them, with their waiters, in order.
    public mutating func refuseOldest(_ count: Int) throws(Mismatch) -> [Refused] {
        guard count <= inFlight.count else {
            throw Mismatch(description: "error reply for a command of \(count) names with \(inFlight.count) in flight")
        }
        var refused: [Refused] = []
        refused.reserveCapacity(count)
        for _ in 0..<count {
            let first = inFlight.removeFirst()
            left(first.key)
            if first.subscribe, latestSubscribe[first.key] == headSequence {
                latestSubscribe[first.key] = nil
            }
            headSequence += 1
            refused.append(Refused(kind: first.key.kind, name: first.key.name, subscribe: first.subscribe, waiters: first.waiters))
        }
        return refused
    }

    /// The link is gone: forgets everything in flight and returns every waiter (they are
    /// confirmed locally, the relay being degraded).
    public mutating func reset() -> [Waiter] {
        let waiters = inFlight.flatMap(\.waiters)
        headSequence += UInt64(inFlight.count)
        inFlight.removeAll()
        latestSubscribe.removeAll()
        inFlightNames.removeAll()
        inFlightPatterns.removeAll()
        return waiters
    }

    static func verb(_ kind: SubscriptionKind, _ subscribe: Bool) -> String {
        (subscribe ? kind.subscribeWord : kind.unsubscribeWord).description
    }
}
