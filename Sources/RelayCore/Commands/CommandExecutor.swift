import NIOCore

/// What the connection must do after a command's reply has been queued.
public enum CommandOutcome: Equatable, Sendable {
    case proceed
    /// QUIT: flush the reply, then close.
    case closeAfterReply
    /// `POST` / `Host:` (an HTTP request on the socket): close at once, no reply, as Redis does.
    case closeImmediately(reason: String)
}

/// Runs one request against the hub and a client's session, writing the reply exactly as
/// Redis 7.0 would. No I/O: replies go to `out`, deliveries to other clients through the hub.
public final class CommandExecutor<Client: RelayClient> {
    public let hub: PubSubHub<Client>
    /// The Redis version the relay reports in HELLO and INFO: the release whose pub/sub
    /// behaviour it reproduces and is tested against.
    public static var compatibleRedisVersion: String { "7.0.15" }

    /// INFO's text for the requested (lower-cased) sections; provided by the server edge.
    public var infoText: ([String]) -> String = { _ in "" }
    /// CLIENT INFO's line for a client (without the trailing newline).
    public var clientInfoLine: (Client) -> String = { _ in "" }
    /// Told of each unknown command or subcommand (the edge logs it); the reply is already written.
    public var unknownCommand: (Client, ByteBuffer) -> Void = { _, _ in }
    /// `RELAY_ENABLE_DEBUG_COMMAND`: whether `DEBUG SLEEP` is accepted.
    public var debugCommandEnabled = false
    /// Blocks the calling thread (`DEBUG SLEEP`); the edge passes the real sleep.
    public var debugSleep: (Double) -> Void = { _ in }
    /// The Redis backplane, when `REDIS_URL` is set; nil in local mode.
    public var backplane: (any Backplane<Client>)?
    /// `RELAY_PASSWORD`: the `default` user's password, as Redis's `requirepass`; nil: none
    /// (any password is accepted for `default`, as by a Redis whose `default` user is `nopass`).
    public var password: RelayPassword?
    /// Told of each failed AUTH / HELLO AUTH (the edge logs it, rate-limited); already counted
    /// and answered. The user name is passed, never the password.
    public var authFailed: (Client, ByteBuffer) -> Void = { _, _ in }

    /// Whether a new connection starts authenticated: only when no password is set.
    public var newClientsAuthenticated: Bool { password == nil }

    public init(hub: PubSubHub<Client>) {
        self.hub = hub
    }

    private var registry: SubscriptionRegistry<Client> { hub.registry }
    private var stats: RelayStats { hub.stats }

    public func execute(_ args: [ByteBuffer], client: Client, out: inout ByteBuffer) -> CommandOutcome {
        precondition(!args.isEmpty, "empty requests are skipped by the caller")
        stats.counts.commandsProcessed += 1
        let name = args[0].readableBytesView

        if ASCII.equalsIgnoringCase(name, "host:") || ASCII.equalsIgnoringCase(name, "post") {
            stats.counts.securityDisconnects += 1
            return .closeImmediately(reason: "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: commands to the relay.")
        }

        guard let base = CommandTable.find(name, in: CommandTable.commands) else {
            stats.counts.unknownCommands += 1
            writeError(&out, CommandTexts.unknownCommandText(args))
            unknownCommand(client, args[0])
            return .proceed
        }
        var spec = base
        if !base.subcommands.isEmpty && args.count >= 2 {
            guard let sub = CommandTable.find(args[1].readableBytesView, in: base.subcommands) else {
                stats.counts.unknownCommands += 1
                writeError(&out, CommandTexts.unknownSubcommandText(args))
                unknownCommand(client, args[0])
                return .proceed
            }
            spec = sub
        }
        guard spec.acceptsArgumentCount(args.count) else {
            stats.counts.rejectedCommands += 1
            writeError(&out, Array("ERR wrong number of arguments for '\(spec.fullName)' command".utf8))
            return .proceed
        }
        client.session.lastCommand = spec.fullName
        // As Redis's processCommand: after the name and arity checks, before anything else.
        if !client.session.authenticated && !spec.allowedUnauthenticated {
            stats.counts.rejectedCommands += 1
            writeError(&out, Array("NOAUTH Authentication required.".utf8))
            return .proceed
        }
        if client.session.inPubSubContext && client.session.resp == .resp2 && !spec.allowedWhenSubscribed {
            stats.counts.rejectedCommands += 1
            writeError(&out, Array("ERR Can't execute '\(spec.fullName)': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context".utf8))
            return .proceed
        }
        return run(spec, args, client, &out)
    }

    // MARK: Dispatch

    private func run(_ spec: CommandSpec, _ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) -> CommandOutcome {
        let v = client.session.resp
        switch spec.handler {
        case .publish, .spublish:
            let sharded = spec.handler == .spublish
            stats.counts.messagesPublished += 1
            if let backplane, backplane.isForwarding {
                backplane.publish(channel: args[1], payload: args[2], sharded: sharded, from: client)
            } else {
                let n = sharded ? hub.publish(shardChannel: args[1], payload: args[2]) : hub.publish(channel: args[1], payload: args[2])
                out.writeRESPInteger(n)
            }
        case .subscribe:
            subscribe(.channel, args, client, &out)
        case .psubscribe:
            subscribe(.pattern, args, client, &out)
        case .ssubscribe:
            subscribe(.shard, args, client, &out)
        case .unsubscribe:
            unsubscribe(.channel, args, client, &out)
        case .punsubscribe:
            unsubscribe(.pattern, args, client, &out)
        case .sunsubscribe:
            unsubscribe(.shard, args, client, &out)
        case .ping:
            ping(args, client, &out)
        case .echo:
            out.writeRESPBulk(args[1])
        case .quit:
            out.writeRESPSimpleString("OK")
            return .closeAfterReply
        case .reset:
            dropSubscriptions(of: client)
            client.session.resp = .resp2
            client.session.db = 0
            client.session.name = nil
            client.session.inPubSubContext = false
            // Redis's clientSetDefaultAuth: back to `default`, unauthenticated if it has a password.
            client.session.authenticated = newClientsAuthenticated
            out.writeRESPSimpleString("RESET")
        case .hello:
            hello(args, client, &out)
        case .select:
            select(args, &out)
                .map { client.session.db = $0 }
        case .auth:
            auth(args, client, &out)
        case .info:
            let sections = args.dropFirst().map { String(decoding: $0.readableBytesView.map(ASCII.lower), as: UTF8.self) }
            out.writeRESPVerbatimText(infoText(sections), v)
        case .debug:
            debug(args, &out)
        case .container:
            preconditionFailure("container \(spec.fullName) reached dispatch with \(args.count) arguments")
        case .command:
            out.writeRESPArrayHeader(CommandDocs.allInfo.count)
            for (_, value) in CommandDocs.allInfo { out.writeRESPValue(value, v) }
        case .commandCount:
            out.writeRESPInteger(CommandDocs.allInfo.count)
        case .commandInfo:
            commandInfo(args, v, &out)
        case .commandDocs:
            commandDocs(args, v, &out)
        case .commandList:
            commandList(args, &out)
        case .commandHelp:
            writeHelp(args, CommandTexts.commandHelp, &out)
        case .clientId:
            out.writeRESPInteger(client.session.id)
        case .clientGetname:
            if let name = client.session.name {
                out.writeRESPBulk(bytes: name)
            } else {
                out.writeRESPNull(v)
            }
        case .clientSetname:
            if let name = CommandTexts.validatedName(args[2]) {
                client.session.name = name.isEmpty ? nil : name
                out.writeRESPSimpleString("OK")
            } else {
                writeError(&out, Array("ERR Client names cannot contain spaces, newlines or special characters.".utf8))
            }
        case .clientSetinfo:
            clientSetinfo(args, client, &out)
        case .clientInfo:
            out.writeRESPVerbatimText(clientInfoLine(client) + "\n", v)
        case .clientHelp:
            writeHelp(args, CommandTexts.clientHelp, &out)
        case .pubsubChannels, .pubsubShardChannels:
            guard args.count <= 3 else {
                writeError(&out, CommandTexts.subcommandSyntaxText(args))
                return .proceed
            }
            let pattern = args.count == 3 ? args[2] : nil
            let query = spec.handler == .pubsubChannels ? PubSubQuery.channels(pattern: pattern) : .shardchannels(pattern: pattern)
            if backplane?.answer(query, for: client) != true { writeLocalAnswer(query, v, into: &out) }
        case .pubsubNumsub, .pubsubShardNumsub:
            let names = Array(args.dropFirst(2))
            let query = spec.handler == .pubsubNumsub ? PubSubQuery.numsub(names) : .shardnumsub(names)
            if args.count == 2 || backplane?.answer(query, for: client) != true { writeLocalAnswer(query, v, into: &out) }
        case .pubsubNumpat:
            if backplane?.answer(.numpat, for: client) != true { writeLocalAnswer(.numpat, v, into: &out) }
        case .pubsubHelp:
            writeHelp(args, CommandTexts.pubsubHelp, &out)
        }
        return .proceed
    }

    /// A PUBSUB answer from this relay's registry alone (local mode, degraded mode, or when the
    /// backplane cannot answer).
    public func writeLocalAnswer(_ query: PubSubQuery, _ version: RESPVersion, into out: inout ByteBuffer) {
        switch query {
        case .channels(let pattern):
            writeNames(registry.activeChannels, matching: pattern, into: &out)
        case .shardchannels(let pattern):
            writeNames(registry.activeShardChannels, matching: pattern, into: &out)
        case .numsub(let channels):
            out.writeRESPArrayHeader(channels.count * 2)
            for channel in channels {
                out.writeRESPBulk(channel)
                out.writeRESPInteger(registry.numberOfSubscribers(channel: channel))
            }
        case .shardnumsub(let channels):
            out.writeRESPArrayHeader(channels.count * 2)
            for channel in channels {
                out.writeRESPBulk(channel)
                out.writeRESPInteger(registry.numberOfShardSubscribers(shardChannel: channel))
            }
        case .numpat:
            out.writeRESPInteger(registry.patternCount)
        }
    }

    /// `PUBSUB (SHARD)CHANNELS [pattern]`: the names of `active` that match.
    private func writeNames(_ active: some Collection<ByteBuffer>, matching pattern: ByteBuffer?, into out: inout ByteBuffer) {
        let patternBytes = pattern.map { Array($0.readableBytesView) }
        var names: [ByteBuffer] = []
        for name in active {
            if let patternBytes, !GlobMatcher.matches(pattern: patternBytes, string: name.readableBytesView) { continue }
            names.append(name)
        }
        out.writeRESPArrayHeader(names.count)
        for name in names { out.writeRESPBulk(name) }
    }

    /// (P|S)SUBSCRIBE: registered locally at once; with a backplane, the confirmations may be held
    /// until upstream has confirmed (or refused) the new subscriptions.
    private func subscribe(_ kind: SubscriptionKind, _ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        let v = client.session.resp
        let start = out.writerIndex
        var added: [ByteBuffer] = []
        for name in args.dropFirst() {
            let change = registry.add(kind, client, name)
            if let backplane, case .added(let first) = change {
                backplane.subscriptionAdded(kind, name, first: first, by: client)
                added.append(name)
            }
            PubSubFrames.confirmation(kind.subscribeWord, name: name, count: registry.confirmationCount(kind, of: client), v, into: &out)
        }
        client.session.inPubSubContext = true
        if !added.isEmpty, let slot = backplane?.holdConfirmations(kind, added, for: client) {
            slot.heldReply = out.getSlice(at: start, length: out.writerIndex - start)
            out.moveWriterIndex(to: start)
        }
    }

    /// (P|S)UNSUBSCRIBE: the names given, or (none given) every name of that kind the client
    /// holds, in the order it subscribed them; with nothing to drop, one confirmation with a null
    /// name, as Redis answers.
    private func unsubscribe(_ kind: SubscriptionKind, _ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        let v = client.session.resp
        if args.count == 1 {
            let removed = registry.removeAll(kind, client)
            var count = registry.confirmationCount(kind, of: client) + removed.count
            for (name, last) in removed {
                count -= 1
                backplane?.subscriptionRemoved(kind, name, last: last)
                PubSubFrames.confirmation(kind.unsubscribeWord, name: name, count: count, v, into: &out)
            }
            if removed.isEmpty {
                PubSubFrames.confirmation(kind.unsubscribeWord, name: nil, count: count, v, into: &out)
            }
        } else {
            for name in args.dropFirst() {
                if case .removed(let last) = registry.remove(kind, client, name) {
                    backplane?.subscriptionRemoved(kind, name, last: last)
                }
                PubSubFrames.confirmation(kind.unsubscribeWord, name: name, count: registry.confirmationCount(kind, of: client), v, into: &out)
            }
        }
        leavePubSubContextIfIdle(client)
    }

    /// Upstream refused a subscription that one of `client`'s commands added: as on Redis, the
    /// command changes nothing — the names it added are dropped again.
    public func undoSubscriptions(_ kind: SubscriptionKind, _ names: [ByteBuffer], of client: Client) {
        for name in names {
            if case .removed(let last) = registry.remove(kind, client, name) {
                backplane?.subscriptionRemoved(kind, name, last: last)
            }
        }
        leavePubSubContextIfIdle(client)
    }

    /// A client leaves (disconnect): its subscriptions are dropped, upstream ones released —
    /// after the current fan-out when it closed in the middle of one (the registry is not
    /// changed under the loop that walks it).
    public func clientClosed(_ client: Client) {
        if hub.isFanningOut {
            hub.whenNotFanningOut { [unowned self] in self.dropSubscriptions(of: client) }
        } else {
            dropSubscriptions(of: client)
        }
    }

    private func dropSubscriptions(of client: Client) {
        for kind in SubscriptionKind.allCases {
            for (name, last) in registry.removeAll(kind, client) {
                backplane?.subscriptionRemoved(kind, name, last: last)
            }
        }
    }

    private func leavePubSubContextIfIdle(_ client: Client) {
        if registry.totalSubscriptionCount(of: client) == 0 {
            client.session.inPubSubContext = false
        }
    }

    // MARK: Commands

    private func ping(_ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        guard args.count <= 2 else {
            writeError(&out, Array("ERR wrong number of arguments for 'ping' command".utf8))
            return
        }
        if client.session.inPubSubContext && client.session.resp == .resp2 {
            out.writeRESPArrayHeader(2)
            out.writeRESPBulk("pong")
            if args.count == 2 { out.writeRESPBulk(args[1]) } else { out.writeRESPBulk("") }
        } else if args.count == 2 {
            out.writeRESPBulk(args[1])
        } else {
            out.writeRESPSimpleString("PONG")
        }
    }

    private func hello(_ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        var version: Int64 = 0
        var next = 1
        if args.count >= 2 {
            guard let parsed = RedisInteger.parse(args[1]) else {
                writeError(&out, Array("ERR Protocol version is not an integer or out of range".utf8))
                return
            }
            guard parsed == 2 || parsed == 3 else {
                writeError(&out, Array("NOPROTO unsupported protocol version".utf8))
                return
            }
            version = parsed
            next = 2
        }
        // Redis 7.0.15 runs the options in order as it reads them: an AUTH authenticates (or
        // fails the command) there and then, a SETNAME sets the name there and then — even for a
        // client that is not authenticated and gets NOAUTH below — and a bad option fails the
        // command with what the earlier options did kept.
        var j = next
        while j < args.count {
            let moreArgs = args.count - 1 - j
            let option = args[j].readableBytesView
            if ASCII.equalsIgnoringCase(option, "AUTH") && moreArgs >= 2 {
                guard authenticate(user: args[j + 1], password: args[j + 2], client) else {
                    writeError(&out, Array(Self.wrongPass.utf8))
                    return
                }
                j += 3
            } else if ASCII.equalsIgnoringCase(option, "SETNAME") && moreArgs >= 1 {
                guard let name = CommandTexts.validatedName(args[j + 1]) else {
                    writeError(&out, Array("ERR Client names cannot contain spaces, newlines or special characters.".utf8))
                    return
                }
                client.session.name = name.isEmpty ? nil : name
                j += 2
            } else {
                writeError(&out, Array("ERR Syntax error in HELLO option '".utf8) + ASCII.cString(option) + Array("'".utf8))
                return
            }
        }
        guard client.session.authenticated else {
            writeError(&out, Array("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".utf8))
            return
        }
        if version != 0 { client.session.resp = version == 3 ? .resp3 : .resp2 }
        let v = client.session.resp
        out.writeRESPMapHeader(7, v)
        out.writeRESPBulk("server"); out.writeRESPBulk("redis")
        out.writeRESPBulk("version"); out.writeRESPBulk(Self.compatibleRedisVersion)
        out.writeRESPBulk("proto"); out.writeRESPInteger(v.rawValue)
        out.writeRESPBulk("id"); out.writeRESPInteger(client.session.id)
        out.writeRESPBulk("mode"); out.writeRESPBulk("standalone")
        out.writeRESPBulk("role"); out.writeRESPBulk("master")
        out.writeRESPBulk("modules"); out.writeRESPArrayHeader(0)
    }

    static var wrongPass: String { "WRONGPASS invalid username-password pair or user is disabled." }

    /// Redis's ACLAuthenticateUser for the one user there is, `default`: with a password, it
    /// must match (compared in constant time); without one (`nopass`), any password does. A
    /// success authenticates the client; a failure is counted, reported to the edge, and leaves
    /// the client as it was (an authenticated client stays authenticated, as in Redis).
    private func authenticate(user: ByteBuffer, password candidate: ByteBuffer, _ client: Client) -> Bool {
        let ok: Bool
        if let password {
            ok = password.authenticates(user: user.readableBytesView, password: candidate.readableBytesView)
        } else {
            ok = user.readableBytesView.elementsEqual("default".utf8)
        }
        if ok {
            client.session.authenticated = true
        } else {
            stats.counts.authFailures += 1
            authFailed(client, user)
        }
        return ok
    }

    /// `DEBUG SLEEP <seconds>`: blocks the event loop, as Redis's does — a test hook for the
    /// systemd watchdog, refused unless `RELAY_ENABLE_DEBUG_COMMAND=yes`.
    private func debug(_ args: [ByteBuffer], _ out: inout ByteBuffer) {
        guard debugCommandEnabled else {
            writeError(&out, Array("ERR DEBUG is disabled; set RELAY_ENABLE_DEBUG_COMMAND=yes to allow it (test setups only)".utf8))
            return
        }
        guard args.count == 3, ASCII.equalsIgnoringCase(args[1].readableBytesView, "sleep") else {
            writeError(&out, Array("ERR the relay supports only DEBUG SLEEP <seconds>".utf8))
            return
        }
        guard let seconds = Double(String(decoding: args[2].readableBytesView, as: UTF8.self)),
              seconds >= 0, seconds <= 3600 else {
            writeError(&out, Array("ERR value is not a valid float".utf8))
            return
        }
        debugSleep(seconds)
        out.writeRESPSimpleString("OK")
    }

    private func auth(_ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        if args.count > 3 {
            writeError(&out, Array("ERR syntax error".utf8))
        } else if args.count == 2 && password == nil {
            writeError(&out, Array("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".utf8))
        } else if authenticate(user: args.count == 2 ? ByteBuffer(string: "default") : args[1], password: args[args.count - 1], client) {
            out.writeRESPSimpleString("OK")
        } else {
            writeError(&out, Array(Self.wrongPass.utf8))
        }
    }

    /// Returns the new database on success.
    private func select(_ args: [ByteBuffer], _ out: inout ByteBuffer) -> Int? {
        guard let id = RedisInteger.parse(args[1]) else {
            writeError(&out, Array("ERR value is not an integer or out of range".utf8))
            return nil
        }
        guard id >= Int64(Int32.min), id <= Int64(Int32.max) else {
            writeError(&out, Array("ERR value is out of range, value must between -2147483648 and 2147483647".utf8))
            return nil
        }
        guard id >= 0 && id < 16 else {
            writeError(&out, Array("ERR DB index is out of range".utf8))
            return nil
        }
        out.writeRESPSimpleString("OK")
        return Int(id)
    }

    private func clientSetinfo(_ args: [ByteBuffer], _ client: Client, _ out: inout ByteBuffer) {
        let attribute = args[2].readableBytesView
        let isName = ASCII.equalsIgnoringCase(attribute, "lib-name")
        guard isName || ASCII.equalsIgnoringCase(attribute, "lib-ver") else {
            writeError(&out, Array("ERR Unrecognized option '".utf8) + ASCII.cString(attribute) + Array("'".utf8))
            return
        }
        guard let value = CommandTexts.validatedName(args[3]) else {
            writeError(&out, Array("ERR ".utf8) + ASCII.cString(attribute) + Array(" cannot contain spaces, newlines or special characters.".utf8))
            return
        }
        if isName { client.session.libName = value.isEmpty ? nil : value } else { client.session.libVersion = value.isEmpty ? nil : value }
        out.writeRESPSimpleString("OK")
    }

    private func commandInfo(_ args: [ByteBuffer], _ v: RESPVersion, _ out: inout ByteBuffer) {
        if args.count == 2 {
            out.writeRESPArrayHeader(CommandDocs.allInfo.count)
            for (_, value) in CommandDocs.allInfo { out.writeRESPValue(value, v) }
            return
        }
        out.writeRESPArrayHeader(args.count - 2)
        for name in args.dropFirst(2) {
            if let value = CommandDocs.info(named: Self.lowercased(name)) {
                out.writeRESPValue(value, v)
            } else {
                out.writeRESPNull(v == .resp3 ? .resp3 : .resp2)
            }
        }
    }

    private func commandDocs(_ args: [ByteBuffer], _ v: RESPVersion, _ out: inout ByteBuffer) {
        var entries: [(String, RESPValue)] = []
        if args.count == 2 {
            entries = CommandDocs.docs
        } else {
            for name in args.dropFirst(2) {
                let key = Self.lowercased(name)
                if let value = CommandDocs.docs(named: key) { entries.append((key, value)) }
            }
        }
        out.writeRESPMapHeader(entries.count, v)
        for (name, value) in entries {
            out.writeRESPBulk(name)
            out.writeRESPValue(value, v)
        }
    }

    private func commandList(_ args: [ByteBuffer], _ out: inout ByteBuffer) {
        guard args.count == 2 else {
            writeError(&out, Array("ERR syntax error".utf8))
            return
        }
        var names: [String] = []
        // Commands without a COMMAND INFO entry (DEBUG, a disabled-by-default test hook) are
        // left out, so that COMMAND, COMMAND COUNT and COMMAND LIST agree.
        for spec in CommandTable.commands where CommandDocs.info(named: spec.fullName) != nil {
            names.append(spec.fullName)
            names.append(contentsOf: spec.subcommands.map(\.fullName))
        }
        out.writeRESPArrayHeader(names.count)
        for name in names { out.writeRESPBulk(name) }
    }

    // MARK: Replies and texts

    /// `-text\r\n`. CR and LF become spaces, as Redis's `addReplyErrorFormat` does, so that
    /// client bytes quoted in an error can never break the reply stream.
    private func writeError(_ out: inout ByteBuffer, _ text: [UInt8]) {
        out.writeInteger(UInt8(ascii: "-"))
        for b in text { out.writeInteger((b == 0x0D || b == 0x0A) ? UInt8(ascii: " ") : b) }
        out.writeCRLF()
    }

    private func writeHelp(_ args: [ByteBuffer], _ lines: [String], _ out: inout ByteBuffer) {
        let command = String(decoding: ASCII.cString(args[0].readableBytesView).map(ASCII.upper), as: UTF8.self)
        out.writeRESPArrayHeader(lines.count + 3)
        out.writeRESPSimpleString("\(command) <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
        for line in lines { out.writeRESPSimpleString(line) }
        out.writeRESPSimpleString("HELP")
        out.writeRESPSimpleString("    Prints this help.")
    }

    private static func lowercased(_ b: ByteBuffer) -> String {
        String(decoding: b.readableBytesView.map(ASCII.lower), as: UTF8.self)
    }

}

/// Reply texts built exactly as Redis builds them (argument truncation at NUL and 128 bytes,
/// CR/LF are turned into spaces where the reply is written), and the HELP listings.
enum CommandTexts {
    /// Redis's `clientSetName` charset rule: printable ASCII without spaces, or empty.
    static func validatedName(_ b: ByteBuffer) -> [UInt8]? {
        let bytes = Array(b.readableBytesView)
        return bytes.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) ? bytes : nil
    }

    /// `unknown command '…', with args beginning with: '…' …` as `commandCheckExistence` builds it.
    static func unknownCommandText(_ args: [ByteBuffer]) -> [UInt8] {
        var listed: [UInt8] = []
        var i = 1
        while i < args.count && listed.count < 128 {
            listed += Array("'".utf8) + ASCII.cString(args[i].readableBytesView, limit: 128 - listed.count) + Array("' ".utf8)
            i += 1
        }
        let text = Array("ERR unknown command '".utf8) + ASCII.cString(args[0].readableBytesView, limit: 128)
            + Array("', with args beginning with: ".utf8) + listed
        return text
    }

    static func unknownSubcommandText(_ args: [ByteBuffer]) -> [UInt8] {
        let command = ASCII.cString(args[0].readableBytesView).map(ASCII.upper)
        let text = Array("ERR unknown subcommand '".utf8) + ASCII.cString(args[1].readableBytesView, limit: 128)
            + Array("'. Try ".utf8) + command + Array(" HELP.".utf8)
        return text
    }

    static func subcommandSyntaxText(_ args: [ByteBuffer]) -> [UInt8] {
        let command = ASCII.cString(args[0].readableBytesView).map(ASCII.upper)
        let text = Array("ERR unknown subcommand or wrong number of arguments for '".utf8)
            + ASCII.cString(args[1].readableBytesView, limit: 128) + Array("'. Try ".utf8) + command + Array(" HELP.".utf8)
        return text
    }

    static let pubsubHelp = [
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
    ]

    static let clientHelp = [
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "SETINFO <option> <value>",
        "    Set client meta attr. Options are:",
        "    * LIB-NAME: the client lib name.",
        "    * LIB-VER: the client lib version.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
    ]

    static let commandHelp = [
        "(no subcommand)",
        "    Return details about all Redis commands.",
        "COUNT",
        "    Return the total number of commands in this Redis server.",
        "LIST",
        "    Return a list of all commands in this Redis server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
    ]
}
