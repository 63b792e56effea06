import NIOCore

/// The fleet-wide subscriber counts behind `PUBSUB NUMSUB` (README, "Fleet-wide PUBSUB"): each relay keeps the
/// number of local app subscribers per channel in a Redis hash of its own,
/// `<namespace>:numsub:<relay id>`, which expires unless the relay refreshes it, and lists itself
/// in the set `<namespace>:relays`. A script sums the live hashes with Redis's own count of
/// direct subscribers, so a dead relay's apps stop counting once its hash expires.
///
/// Shard channels (`PUBSUB SHARDNUMSUB`) are counted in the same hash, in fields named
/// `shardFieldPrefix` + the shard channel: the prefix starts with 0xFF, a byte no UTF-8 text
/// holds, so no text-named classic channel shares a field with a shard channel, and a relay of an
/// older version (which counts only the fields it asks for by their channel's name) keeps
/// answering classic NUMSUB exactly.
///
/// This type only builds the commands; the upstream link sends them on the publisher connection.
public struct FleetCounts {
    public let namespace: String
    public let relayID: String
    /// How long a relay's hash outlives its last refresh.
    public let ttlMilliseconds: Int
    /// Channels and shard channels (by field name) whose local count changed since the last
    /// `takeUpdate`.
    private var dirty: Set<Field> = []

    /// One counted name: a channel, or a shard channel.
    public struct Field: Hashable, Sendable {
        public var name: ByteBuffer
        public var sharded: Bool

        public init(_ name: ByteBuffer, sharded: Bool = false) {
            self.name = name
            self.sharded = sharded
        }

        /// The hash field it is written in.
        var key: ByteBuffer {
            guard sharded else { return name }
            var b = ByteBuffer(bytes: FleetCounts.shardFieldPrefix)
            b.writeImmutableBuffer(name)
            return b
        }
    }

    /// Before a shard channel's name in the hash: 0xFF (never in UTF-8 text), then `s:`.
    public static let shardFieldPrefix: [UInt8] = [0xFF, UInt8(ascii: "s"), UInt8(ascii: ":")]

    /// `PUBSUB CHANNELS` for a fleet whose channels Redis does not hold as classic
    /// subscriptions (a Redis Cluster in sharded mode): every channel some live relay's apps hold,
    /// once; the pattern is applied by the caller (Lua has no Redis glob).
    public func channelsCommand() -> [ByteBuffer] {
        [Self.arg("EVAL"), Self.arg(Self.channelsScript), Self.arg("0"), Self.arg(namespace)]
    }

    public static let channelsScript = """
        local ns = ARGV[1]
        local seen = {}
        local out = {}
        for _, id in ipairs(redis.call('SMEMBERS', ns .. ':relays')) do
          for _, field in ipairs(redis.call('HKEYS', ns .. ':numsub:' .. id)) do
            if string.byte(field, 1) ~= 255 and not seen[field] then
              seen[field] = true
              out[#out + 1] = field
            end
          end
        end
        return out
        """

    public init(namespace: String, relayID: String, ttlMilliseconds: Int) {
        self.namespace = namespace
        self.relayID = relayID
        self.ttlMilliseconds = ttlMilliseconds
    }

    public var hashKey: String { "\(namespace):numsub:\(relayID)" }
    public var relaysKey: String { "\(namespace):relays" }

    public var hasChanges: Bool { !dirty.isEmpty }

    public mutating func changed(_ channel: ByteBuffer, sharded: Bool = false) {
        dirty.insert(Field(channel, sharded: sharded))
    }

    /// Most fields one HSET or HDEL carries: a relay holding hundreds of thousands of channels
    /// sends bounded commands, never one that stalls Redis or the relay's own buffers.
    public static let fieldsPerCommand = 512

    /// The commands that bring the hash up to date for the changed channels (`count` gives the
    /// current local count), ending with the refresh; clears the change set.
    public mutating func takeUpdate(count: (Field) -> Int) -> [[ByteBuffer]] {
        var set = FieldBatches(verb: "HSET", key: hashKey)
        var del = FieldBatches(verb: "HDEL", key: hashKey)
        for field in dirty {
            let n = count(field)
            if n > 0 {
                set.add(field.key, Self.arg(String(n)))
            } else {
                del.add(field.key)
            }
        }
        dirty.removeAll(keepingCapacity: true)
        return set.commands + del.commands + refresh()
    }

    /// After a (re)connect: the whole hash rewritten from the local registry, atomically (a
    /// MULTI block, so that a counting script never sees it half-written).
    public mutating func takeFullRewrite(_ counts: some Sequence<(ByteBuffer, Int)>,
                                         shardCounts: some Sequence<(ByteBuffer, Int)> = [(ByteBuffer, Int)]()) -> [[ByteBuffer]] {
        dirty.removeAll(keepingCapacity: true)
        var set = FieldBatches(verb: "HSET", key: hashKey)
        for (channel, n) in counts where n > 0 {
            set.add(channel, Self.arg(String(n)))
        }
        for (channel, n) in shardCounts where n > 0 {
            set.add(Field(channel, sharded: true).key, Self.arg(String(n)))
        }
        return [[Self.arg("MULTI")], [Self.arg("DEL"), Self.arg(hashKey)]] + set.commands + refresh() + [[Self.arg("EXEC")]]
    }

    /// `VERB key field [value] …` commands of at most `fieldsPerCommand` fields each.
    struct FieldBatches {
        let verb: String
        let key: String
        private(set) var commands: [[ByteBuffer]] = []
        private var fields = 0

        init(verb: String, key: String) {
            self.verb = verb
            self.key = key
        }

        mutating func add(_ field: ByteBuffer, _ value: ByteBuffer? = nil) {
            if commands.isEmpty || fields == FleetCounts.fieldsPerCommand {
                commands.append([FleetCounts.arg(verb), FleetCounts.arg(key)])
                fields = 0
            }
            commands[commands.count - 1].append(field)
            if let value { commands[commands.count - 1].append(value) }
            fields += 1
        }
    }

    /// Keeps this relay's hash alive and listed (sent every second).
    public func refresh() -> [[ByteBuffer]] {
        [
            [Self.arg("PEXPIRE"), Self.arg(hashKey), Self.arg(String(ttlMilliseconds))],
            [Self.arg("SADD"), Self.arg(relaysKey), Self.arg(relayID)],
        ]
    }

    /// On a clean shutdown: this relay's apps stop counting at once.
    public func removal() -> [[ByteBuffer]] {
        [[Self.arg("DEL"), Self.arg(hashKey)], [Self.arg("SREM"), Self.arg(relaysKey), Self.arg(relayID)]]
    }

    /// Most channels one counting EVAL covers: a NUMSUB of many channels is answered by several
    /// bounded scripts (each a few milliseconds of Redis time), not one that blocks Redis.
    public static let channelsPerNumsubScript = 1024

    /// `PUBSUB NUMSUB ch…` (`sharded`: `SHARDNUMSUB`) for the whole fleet: EVALs of at most
    /// `channelsPerNumsubScript` channels each, whose answers, concatenated, are the reply.
    /// `countsDirect: false`: no direct subscribers counted — on a Redis Cluster, where the
    /// node asked sees only its own (README, "Redis Cluster").
    public func numsubCommands(_ channels: [ByteBuffer], sharded: Bool = false, countsDirect: Bool = true) -> [[ByteBuffer]] {
        let head = [Self.arg("EVAL"), Self.arg(Self.numsubScript), Self.arg("0"), Self.arg(namespace),
                    Self.arg(countsDirect ? (sharded ? "SHARDNUMSUB" : "NUMSUB") : ""), sharded ? ByteBuffer(bytes: Self.shardFieldPrefix) : ByteBuffer()]
        return stride(from: 0, to: channels.count, by: Self.channelsPerNumsubScript).map { start in
            head + channels[start..<min(start + Self.channelsPerNumsubScript, channels.count)]
        }
    }

    /// For each channel: Redis's direct subscribers (its NUMSUB, or SHARDNUMSUB, less one per
    /// relay holding the channel) plus every live relay's local app subscribers (the hash field
    /// is the channel's name after `ARGV[3]`, the shard prefix or nothing). Relays whose hash
    /// has expired are dropped from the set.
    public static let numsubScript = """
        local ns = ARGV[1]
        local subcommand = ARGV[2]
        local prefix = ARGV[3]
        local live = {}
        for _, id in ipairs(redis.call('SMEMBERS', ns .. ':relays')) do
          if redis.call('EXISTS', ns .. ':numsub:' .. id) == 1 then
            live[#live + 1] = ns .. ':numsub:' .. id
          else
            redis.call('SREM', ns .. ':relays', id)
          end
        end
        local out = {}
        for i = 4, #ARGV do
          local channel = ARGV[i]
          local direct = 0
          if subcommand ~= '' then direct = redis.call('PUBSUB', subcommand, channel)[2] end
          local apps = 0
          for _, key in ipairs(live) do
            local n = tonumber(redis.call('HGET', key, prefix .. channel) or '0')
            if n > 0 then
              apps = apps + n
              direct = direct - 1
            end
          end
          if direct < 0 then direct = 0 end
          out[#out + 1] = channel
          out[#out + 1] = direct + apps
        end
        return out
        """

    static func arg(_ s: String) -> ByteBuffer {
        ByteBuffer(string: s)
    }
}
