import NIOCore

/// What makes a fleet relay's `PUBLISH` reply count receivers, not relays (README, "PUBLISH's
/// count in fleet mode").
///
/// Redis answers a PUBLISH with the number of its connections that received the message: each
/// relay holding the channel counts once, and once more per matching pattern it holds, whatever
/// the number of its apps behind that one subscription. A relay's *extra* for a channel is what
/// Redis missed: `(n − 1)` for a channel held by `n ≥ 1` local clients, plus `(m − 1)` for each
/// matching pattern held by `m` clients. The answer an app gets is Redis's count plus the extras
/// of every relay: its own, exact (from the registry, at the moment the PUBLISH is sent), and the
/// others', from this view of them.
///
/// Relays tell each other their extras on one sharded pub/sub channel, `<namespace>:fleet`
/// (sharded, so that no app's PSUBSCRIBE ever matches it): a `state` when a relay's publisher
/// connects or another relay says `hello` (its subscriber connected: it may have missed
/// messages), a `delta` at the end of each tick in which one changed (sent before the
/// subscribing client's confirmation), `alive` every second while it has any, and `bye` when it
/// stops. Only channels with two or more local clients and held patterns are told: a fleet whose
/// relays hold each channel once sends nothing. A relay not heard of for the fleet TTL is
/// forgotten (it died without `bye`); if its `alive` comes again (it was only frozen), the states
/// are asked for again with `hello`.
///
/// SPUBLISH counts the same way, over shard channels alone (`s` entries: no pattern receives a
/// shard message). Shard entries travel in messages of their own, after the channel and pattern
/// entries: a relay of an older version, which rejects a whole message with a kind it does not
/// know (counting it as not understood), still gets every channel and pattern count.
///
/// Pure bookkeeping; the state machine sends and receives.
public struct FleetReceivers {
    public struct Key: Hashable, Sendable {
        public var kind: SubscriptionKind
        public var name: ByteBuffer
    }

    /// One relay's extras as it told them: channels with their local count (≥ 2), patterns with
    /// theirs (≥ 1).
    struct Remote {
        var counts: [Key: Int] = [:]
        var lastHeard: UInt64
    }

    public let relayID: String
    public let channel: ByteBuffer
    private var remotes: [String: Remote] = [:]
    /// Sum over the other relays of `count − 1`, per channel and per pattern (entries > 0 only).
    private var channelExtras: [ByteBuffer: Int] = [:]
    private var shardExtras: [ByteBuffer: Int] = [:]
    private var patternExtras: [ByteBuffer: (bytes: [UInt8], extra: Int)] = [:]
    /// Sum over the other relays of `count`, per pattern: on a Redis Cluster in sharded mode
    /// Redis counts none of them (README, "Redis Cluster").
    private var patternHolders: [ByteBuffer: (bytes: [UInt8], holders: Int)] = [:]
    /// What this relay last told the fleet, and what changed since.
    private var announced: [Key: Int] = [:]
    private var dirty: Set<Key> = []

    public init(namespace: String, relayID: String) {
        self.relayID = relayID
        self.channel = ByteBuffer(string: "\(namespace):fleet")
    }

    // MARK: The other relays

    /// The other relays' extras for a PUBLISH to `channel` (`sharded`: an SPUBLISH).
    public func remoteExtra(for channel: ByteBuffer, sharded: Bool = false) -> Int {
        if sharded { return shardExtras[channel] ?? 0 }
        var n = channelExtras[channel] ?? 0
        if !patternExtras.isEmpty {
            channel.withUnsafeReadableBytes { ch in
                for (_, p) in patternExtras where p.bytes.withUnsafeBytes({ GlobMatcher.matches(pattern: $0, string: ch) }) {
                    n += p.extra
                }
            }
        }
        return n
    }

    /// How many other relays this relay knows of (those with extras to tell).
    public var knownRelays: Int { remotes.count }

    /// What a message on the fleet channel asks of this relay.
    public enum Reaction: Equatable, Sendable {
        case none
        /// Another relay (re)joined: tell it this relay's state.
        case sendState
        /// A relay this one had forgotten (it was quiet past the TTL, e.g. stopped) is alive:
        /// ask for the states again.
        case sayHello
    }

    /// A message on the fleet channel (this relay's own are ignored; malformed ones too, and
    /// counted by the caller).
    public mutating func received(_ payload: ByteBuffer, now: UInt64) throws(Malformed) -> Reaction {
        var buffer = payload
        var parser = RequestParser(limits: .init(maxBulkLength: Int(Int32.max), maxArguments: Int(Int32.max)))
        guard let parts = try? parser.next(from: &buffer), buffer.readableBytes == 0, parts.count >= 3,
              parts[0] == Self.version, (parts.count - 3) % 3 == 0 else {
            throw Malformed()
        }
        let sender = String(buffer: parts[2])
        guard sender != relayID else { return .none }
        var entries: [(Key, Int)] = []
        entries.reserveCapacity((parts.count - 3) / 3)
        var i = 3
        while i < parts.count {
            guard let kind = Self.kind(parts[i]), let n = RedisInteger.parse(parts[i + 2]), n >= 0 else { throw Malformed() }
            entries.append((Key(kind: kind, name: parts[i + 1]), Int(n)))
            i += 3
        }
        switch String(buffer: parts[1]) {
        case "hello":
            remotes[sender, default: Remote(lastHeard: now)].lastHeard = now
            return .sendState
        case "alive" where remotes[sender] == nil:
            return .sayHello
        case "state":
            forget(sender)
            fallthrough
        case "delta", "alive":
            remotes[sender, default: Remote(lastHeard: now)].lastHeard = now
            for (key, n) in entries { set(sender, key, n) }
            if remotes[sender]?.counts.isEmpty == true { remotes[sender] = nil }
            return .none
        case "bye":
            forget(sender)
            return .none
        default:
            throw Malformed()
        }
    }

    public struct Malformed: Error, Sendable {}

    /// Drops the relays not heard of since `now − ttl` (they died without `bye`).
    public mutating func expire(now: UInt64, ttlNanoseconds: UInt64) {
        for (id, remote) in remotes where now - min(remote.lastHeard, now) > ttlNanoseconds { forget(id) }
    }

    /// This relay's subscriber connection (re)connected: what it knew may be stale (messages sent
    /// while it was away are gone); it asks for the others' states again with `hello`.
    public mutating func forgetAll() {
        remotes.removeAll()
        channelExtras.removeAll()
        shardExtras.removeAll()
        patternExtras.removeAll()
        patternHolders.removeAll()
    }

    private mutating func forget(_ id: String) {
        guard let remote = remotes.removeValue(forKey: id) else { return }
        for (key, n) in remote.counts {
            adjust(key, by: -(n - 1))
            if key.kind == .pattern { adjustHolders(key.name, by: -n) }
        }
    }

    private mutating func set(_ id: String, _ key: Key, _ n: Int) {
        let kept = key.kind == .pattern ? n : (n >= 2 ? n : 0)
        let old = remotes[id]?.counts[key] ?? 0
        guard kept != old else { return }
        remotes[id]?.counts[key] = kept == 0 ? nil : kept
        adjust(key, by: (kept == 0 ? 0 : kept - 1) - (old == 0 ? 0 : old - 1))
        if key.kind == .pattern { adjustHolders(key.name, by: kept - old) }
    }

    private mutating func adjustHolders(_ pattern: ByteBuffer, by delta: Int) {
        guard delta != 0 else { return }
        let n = (patternHolders[pattern]?.holders ?? 0) + delta
        patternHolders[pattern] = n > 0 ? (Array(pattern.readableBytesView), n) : nil
    }

    /// Whether a pattern another relay holds matches `channel`.
    public func remotePatternMatches(_ channel: ByteBuffer) -> Bool {
        guard !patternHolders.isEmpty else { return false }
        return channel.withUnsafeReadableBytes { ch in
            patternHolders.values.contains { $0.bytes.withUnsafeBytes { GlobMatcher.matches(pattern: $0, string: ch) } }
        }
    }

    /// Every subscriber of the other relays' patterns that match `channel`.
    public func remotePatternHolders(for channel: ByteBuffer) -> Int {
        guard !patternHolders.isEmpty else { return 0 }
        return channel.withUnsafeReadableBytes { ch in
            patternHolders.values.reduce(0) { n, p in
                n + (p.bytes.withUnsafeBytes { GlobMatcher.matches(pattern: $0, string: ch) } ? p.holders : 0)
            }
        }
    }

    /// The other relays' extras for `channel` as a channel only (no patterns).
    public func remoteChannelExtra(for channel: ByteBuffer) -> Int { channelExtras[channel] ?? 0 }

    private mutating func adjust(_ key: Key, by delta: Int) {
        guard delta != 0 else { return }
        switch key.kind {
        case .channel:
            let n = (channelExtras[key.name] ?? 0) + delta
            channelExtras[key.name] = n > 0 ? n : nil
        case .shard:
            let n = (shardExtras[key.name] ?? 0) + delta
            shardExtras[key.name] = n > 0 ? n : nil
        case .pattern:
            let n = (patternExtras[key.name]?.extra ?? 0) + delta
            patternExtras[key.name] = n > 0 ? (Array(key.name.readableBytesView), n) : nil
        }
    }

    // MARK: This relay

    /// A local subscription to `name` changed; told at the end of the tick if its count did.
    public mutating func changed(_ kind: SubscriptionKind, _ name: ByteBuffer) {
        dirty.insert(Key(kind: kind, name: name))
    }

    /// Whether this relay has anything told (it then sends `alive` every second).
    public var hasAnnounced: Bool { !announced.isEmpty }

    /// Most entries one fleet message carries (a state of many channels goes out in parts).
    public static let entriesPerMessage = 512

    /// The `delta` messages for the changes since the last call (`count` gives a name's current
    /// local count); none when no told count changed.
    public mutating func takeDelta(count: (Key) -> Int) -> [ByteBuffer] {
        guard !dirty.isEmpty else { return [] }
        var entries: [(Key, Int)] = []
        for key in dirty {
            let n = Self.told(key.kind, count(key))
            guard n != announced[key] ?? 0 else { continue }
            announced[key] = n == 0 ? nil : n
            entries.append((key, n))
        }
        dirty.removeAll(keepingCapacity: true)
        return messages("delta", entries)
    }

    /// This relay's whole state, from the registry's counts: a `state` message (then `delta`s
    /// if it is long). Also resets what was told.
    public mutating func takeState(_ counts: some Sequence<(Key, Int)>) -> [ByteBuffer] {
        dirty.removeAll(keepingCapacity: true)
        announced.removeAll(keepingCapacity: true)
        var entries: [(Key, Int)] = []
        for (key, count) in counts {
            let n = Self.told(key.kind, count)
            if n > 0 {
                announced[key] = n
                entries.append((key, n))
            }
        }
        return messages("state", entries)
    }

    public func message(_ type: String) -> ByteBuffer { messages(type, [])[0] }

    /// Channels and shard channels are told only from two local clients on (one is what Redis
    /// counts already).
    static func told(_ kind: SubscriptionKind, _ count: Int) -> Int {
        kind != .pattern && count < 2 ? 0 : count
    }

    /// `type` with the channel and pattern entries (in parts of `entriesPerMessage`, the later
    /// ones as `delta`s), then the shard entries in `delta`s of their own.
    private func messages(_ type: String, _ entries: [(Key, Int)]) -> [ByteBuffer] {
        let classic = entries.filter { $0.0.kind != .shard }
        let shard = entries.filter { $0.0.kind == .shard }
        return chunks(type, classic) + chunks("delta", shard)
    }

    private func chunks(_ type: String, _ entries: [(Key, Int)]) -> [ByteBuffer] {
        if entries.isEmpty && type == "delta" { return [] }
        var out: [ByteBuffer] = []
        var start = 0
        repeat {
            let chunk = entries[start..<min(start + Self.entriesPerMessage, entries.count)]
            var b = ByteBuffer()
            b.writeRESPArrayHeader(3 + 3 * chunk.count)
            b.writeRESPBulk(Self.version)
            b.writeRESPBulk(start == 0 ? type : "delta")
            b.writeRESPBulk(relayID)
            for (key, n) in chunk {
                b.writeRESPBulk(Self.word(key.kind))
                b.writeRESPBulk(key.name)
                b.writeRESPBulk(String(n))
            }
            out.append(b)
            start += chunk.count
        } while start < entries.count
        return out
    }

    static let version = ByteBuffer(string: "fleet/1")

    private static func word(_ kind: SubscriptionKind) -> String {
        switch kind {
        case .channel: return "c"
        case .pattern: return "p"
        case .shard: return "s"
        }
    }

    private static func kind(_ b: ByteBuffer) -> SubscriptionKind? {
        switch b.readableBytesView.first {
        case UInt8(ascii: "c") where b.readableBytes == 1: return .channel
        case UInt8(ascii: "p") where b.readableBytes == 1: return .pattern
        case UInt8(ascii: "s") where b.readableBytes == 1: return .shard
        default: return nil
        }
    }
}
