/// The commands the relay carries, with Redis 7.0's arities and names.
struct CommandSpec: Sendable {
    enum Handler: Sendable {
        case subscribe, unsubscribe, psubscribe, punsubscribe, publish
        case ssubscribe, sunsubscribe, spublish
        case ping, echo, quit, reset, hello, select, auth, info
        case command, commandCount, commandDocs, commandInfo, commandList, commandHelp
        case clientGetname, clientSetname, clientId, clientInfo, clientSetinfo, clientHelp
        case pubsubChannels, pubsubNumsub, pubsubNumpat, pubsubHelp, pubsubShardChannels, pubsubShardNumsub
        case debug
        case container
    }

    /// Lower-case name; `container|sub` for a subcommand, as in Redis's error texts.
    let fullName: String
    let nameBytes: [UInt8]
    /// Redis arity: N means exactly N arguments (command included), -N at least N.
    let arity: Int
    let handler: Handler
    /// Allowed in the RESP2 subscribed context.
    let allowedWhenSubscribed: Bool
    /// Redis's `CMD_NO_AUTH`: runs before the client has authenticated.
    let allowedUnauthenticated: Bool
    let subcommands: [CommandSpec]

    init(_ name: String, _ arity: Int, _ handler: Handler, subscribed: Bool = false, noAuth: Bool = false,
         parent: String? = nil, subcommands: [CommandSpec] = []) {
        self.fullName = parent.map { "\($0)|\(name)" } ?? name
        self.nameBytes = Array(name.utf8)
        self.arity = arity
        self.handler = handler
        self.allowedWhenSubscribed = subscribed
        self.allowedUnauthenticated = noAuth
        self.subcommands = subcommands
    }

    func acceptsArgumentCount(_ argc: Int) -> Bool {
        arity > 0 ? argc == arity : argc >= -arity
    }
}

enum CommandTable {
    static let commands: [CommandSpec] = [
        // Most frequent first: lookup walks the table.
        CommandSpec("publish", 3, .publish),
        CommandSpec("subscribe", -2, .subscribe, subscribed: true),
        CommandSpec("unsubscribe", -1, .unsubscribe, subscribed: true),
        CommandSpec("psubscribe", -2, .psubscribe, subscribed: true),
        CommandSpec("punsubscribe", -1, .punsubscribe, subscribed: true),
        CommandSpec("spublish", 3, .spublish),
        CommandSpec("ssubscribe", -2, .ssubscribe, subscribed: true),
        CommandSpec("sunsubscribe", -1, .sunsubscribe, subscribed: true),
        CommandSpec("ping", -1, .ping, subscribed: true),
        CommandSpec("echo", 2, .echo),
        // AUTH, HELLO, QUIT and RESET are Redis 7.0's CMD_NO_AUTH commands.
        CommandSpec("quit", -1, .quit, subscribed: true, noAuth: true),
        CommandSpec("reset", 1, .reset, subscribed: true, noAuth: true),
        CommandSpec("hello", -1, .hello, noAuth: true),
        CommandSpec("select", 2, .select),
        CommandSpec("auth", -2, .auth, noAuth: true),
        CommandSpec("info", -1, .info),
        CommandSpec("debug", -2, .debug),
        CommandSpec("client", -2, .container, subcommands: [
            CommandSpec("getname", 2, .clientGetname, parent: "client"),
            CommandSpec("setname", 3, .clientSetname, parent: "client"),
            CommandSpec("id", 2, .clientId, parent: "client"),
            CommandSpec("info", 2, .clientInfo, parent: "client"),
            CommandSpec("setinfo", 4, .clientSetinfo, parent: "client"),
            CommandSpec("help", 2, .clientHelp, parent: "client"),
        ]),
        CommandSpec("pubsub", -2, .container, subcommands: [
            CommandSpec("channels", -2, .pubsubChannels, parent: "pubsub"),
            CommandSpec("numsub", -2, .pubsubNumsub, parent: "pubsub"),
            CommandSpec("numpat", 2, .pubsubNumpat, parent: "pubsub"),
            CommandSpec("help", 2, .pubsubHelp, parent: "pubsub"),
            CommandSpec("shardchannels", -2, .pubsubShardChannels, parent: "pubsub"),
            CommandSpec("shardnumsub", -2, .pubsubShardNumsub, parent: "pubsub"),
        ]),
        CommandSpec("command", -1, .command, subcommands: [
            CommandSpec("count", 2, .commandCount, parent: "command"),
            CommandSpec("docs", -2, .commandDocs, parent: "command"),
            CommandSpec("info", -2, .commandInfo, parent: "command"),
            CommandSpec("list", -2, .commandList, parent: "command"),
            CommandSpec("help", 2, .commandHelp, parent: "command"),
        ]),
    ]

    /// Case-insensitive lookup by raw bytes, as Redis's command dictionary does.
    static func find<C: Collection>(_ name: C, in table: [CommandSpec]) -> CommandSpec? where C.Element == UInt8 {
        let n = name.count
        for spec in table where spec.nameBytes.count == n {
            if zip(spec.nameBytes, name).allSatisfy({ $0 == ASCII.lower($1) }) { return spec }
        }
        return nil
    }
}

enum ASCII {
    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 {
        (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
    }

    @inline(__always)
    static func upper(_ b: UInt8) -> UInt8 {
        (b >= 0x61 && b <= 0x7A) ? b & ~0x20 : b
    }

    /// C-string view of a binary argument: the bytes before the first NUL, at most `limit`.
    static func cString<C: Collection>(_ bytes: C, limit: Int = .max) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        for b in bytes {
            if b == 0 || out.count == limit { break }
            out.append(b)
        }
        return out
    }

    /// `strcasecmp(arg, literal) == 0` over the C-string view of `arg`.
    /// Allocation-free: it runs on every request (the `POST`/`Host:` check).
    static func equalsIgnoringCase<C: Collection>(_ bytes: C, _ literal: StaticString) -> Bool where C.Element == UInt8 {
        literal.withUTF8Buffer { l in
            var i = 0
            for b in bytes {
                if b == 0 { break }
                if i == l.count || lower(b) != lower(l[i]) { return false }
                i += 1
            }
            return i == l.count
        }
    }
}
