import NIOCore
import Testing
@testable import RelayCore

/// One relay's command side: a hub, its executor, and helpers that run a command for a client
/// and return the reply bytes. Every expected reply below was captured from redis-server 7.0.15
/// given the same commands (client ids aside).
private final class Relay {
    let stats = RelayStats()
    let hub: PubSubHub<TestClient>
    let executor: CommandExecutor<TestClient>

    init() {
        hub = PubSubHub(stats: stats)
        executor = CommandExecutor(hub: hub)
    }

    func execute(_ client: TestClient, _ args: [[UInt8]]) -> (reply: [UInt8], outcome: CommandOutcome) {
        var out = ByteBuffer()
        let outcome = executor.execute(args.map { ByteBuffer(bytes: $0) }, client: client, out: &out)
        return (bytes(out), outcome)
    }

    /// The reply to one command, as text (replies here are ASCII unless a test says otherwise).
    func reply(_ client: TestClient, _ args: String...) -> String {
        let (reply, outcome) = execute(client, args.map { Array($0.utf8) })
        #expect(outcome == .proceed)
        return String(decoding: reply, as: UTF8.self)
    }

    /// The replies to a sequence of commands, concatenated.
    func replies(_ client: TestClient, _ commands: [[String]]) -> String {
        commands.map { command in
            let (reply, _) = execute(client, command.map { Array($0.utf8) })
            return String(decoding: reply, as: UTF8.self)
        }.joined()
    }
}

private func subscribedContextError(_ command: String) -> String {
    "-ERR Can't execute '\(command)': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
}

private func hello(proto: Int, id: Int) -> String {
    (proto == 3 ? "%7\r\n" : "*14\r\n")
        + "$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:\(proto)\r\n"
        + "$2\r\nid\r\n:\(id)\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
}

@Suite struct CommandExecutorTests {
    // MARK: SUBSCRIBE / UNSUBSCRIBE / PSUBSCRIBE / PUNSUBSCRIBE

    @Test func subscribeRepliesRESP2() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "SUBSCRIBE", "a", "b")
            == "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
        #expect(c.session.inPubSubContext)
        #expect(relay.hub.registry.subscriptionCount(of: c) == 2)
        // Subscribing again does not add, and the count stays.
        #expect(relay.reply(c, "subscribe", "a") == "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n")
    }

    /// Unsubscribing every channel, then again with nothing left.
    @Test func unsubscribeAllRESP2() {
        let relay = Relay(), c = TestClient()
        _ = relay.reply(c, "SUBSCRIBE", "a", "b")
        // Redis walks its dict (order unspecified); the relay walks subscription order.
        #expect(relay.reply(c, "UNSUBSCRIBE")
            == "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n")
        #expect(relay.reply(c, "UNSUBSCRIBE") == "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
        #expect(!c.session.inPubSubContext)
        #expect(relay.hub.registry.channelCount == 0)
    }

    @Test func argumentlessUnsubscribeWithNothingSubscribed() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "UNSUBSCRIBE") == "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
        #expect(relay.reply(c, "PUNSUBSCRIBE") == "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n")
        // It does not enter the subscribed context.
        #expect(!c.session.inPubSubContext)
        #expect(relay.reply(c, "ECHO", "ok") == "$2\r\nok\r\n")
    }

    @Test func patternsAndChannelsShareTheCount() {
        let relay = Relay(), c = TestClient()
        let got = relay.replies(c, [
            ["PSUBSCRIBE", "a*", "b*"], ["SUBSCRIBE", "c"], ["PUNSUBSCRIBE"], ["PUNSUBSCRIBE", "zz"],
            ["UNSUBSCRIBE", "c", "c"],
        ])
        #expect(got == "*3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\nb*\r\n:2\r\n"
            + "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:3\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\na*\r\n:2\r\n"
            + "*3\r\n$12\r\npunsubscribe\r\n$2\r\nb*\r\n:1\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\nzz\r\n:1\r\n"
            + "*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n")
    }

    /// The subscribed context lasts while any channel or pattern is held.
    @Test func contextEndsWhenTheLastSubscriptionGoes() {
        let relay = Relay(), c = TestClient()
        let got = relay.replies(c, [
            ["PSUBSCRIBE", "a"], ["SUBSCRIBE", "b"], ["UNSUBSCRIBE"], ["ECHO", "still"], ["PUNSUBSCRIBE"], ["ECHO", "ok"],
        ])
        #expect(got == "*3\r\n$10\r\npsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
            + "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n" + subscribedContextError("echo")
            + "*3\r\n$12\r\npunsubscribe\r\n$1\r\na\r\n:0\r\n$2\r\nok\r\n")
    }

    @Test func commandNamesAreCaseInsensitive() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "sUbScRiBe", "b") == "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n")
        #expect(relay.reply(c, "ping") == "*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    }

    // MARK: RESP2 subscribed context

    @Test func pingInSubscribedContext() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "PING") == "+PONG\r\n")
        #expect(relay.reply(c, "PING", "x") == "$1\r\nx\r\n")
        _ = relay.reply(c, "SUBSCRIBE", "a")
        #expect(relay.reply(c, "PING") == "*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        #expect(relay.reply(c, "PING", "x") == "*2\r\n$4\r\npong\r\n$1\r\nx\r\n")
    }

    @Test(arguments: [
        (["ECHO", "x"], "echo"), (["HELLO", "3"], "hello"), (["PUBLISH", "a", "b"], "publish"),
        (["CLIENT", "ID"], "client|id"), (["PUBSUB", "NUMPAT"], "pubsub|numpat"), (["SELECT", "0"], "select"),
    ])
    func otherCommandsAreRejectedWhenSubscribed(_ c: ([String], String)) {
        let relay = Relay(), client = TestClient()
        _ = relay.reply(client, "SUBSCRIBE", "a")
        let (reply, outcome) = relay.execute(client, c.0.map { Array($0.utf8) })
        #expect(String(decoding: reply, as: UTF8.self) == subscribedContextError(c.1))
        #expect(outcome == .proceed)
        #expect(relay.stats.counts.rejectedCommands == 1)
        // Nothing ran: still RESP2, still subscribed to "a" only.
        #expect(client.session.resp == .resp2)
        #expect(relay.hub.registry.subscriptionCount(of: client) == 1)
    }

    /// Existence and arity are checked before the subscribed context, as in Redis.
    @Test func unknownAndArityErrorsComeFirstWhenSubscribed() {
        let relay = Relay(), c = TestClient()
        _ = relay.reply(c, "SUBSCRIBE", "a")
        #expect(relay.reply(c, "GET", "x") == "-ERR unknown command 'GET', with args beginning with: 'x' \r\n")
        #expect(relay.reply(c, "ECHO") == "-ERR wrong number of arguments for 'echo' command\r\n")
    }

    // MARK: RESP3

    @Test func resp3PubSubReplies() {
        let relay = Relay(), c = TestClient(id: 6)
        let got = relay.replies(c, [["HELLO", "3"], ["SUBSCRIBE", "a"], ["PING"], ["UNSUBSCRIBE"], ["UNSUBSCRIBE"]])
        #expect(got == hello(proto: 3, id: 6)
            + ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n+PONG\r\n"
            + ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n>3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n")
        #expect(c.session.resp == .resp3)
    }

    /// RESP3 has no subscribed context: any command runs.
    @Test func resp3AllowsAnyCommandWhileSubscribed() {
        let relay = Relay(), c = TestClient(id: 34)
        _ = relay.reply(c, "HELLO", "3")
        let (reply, _) = relay.execute(c, [Array("PSUBSCRIBE".utf8), Array("a*".utf8)])
        #expect(String(decoding: reply, as: UTF8.self) == ">3\r\n$10\r\npsubscribe\r\n$2\r\na*\r\n:1\r\n")
        let echo = relay.execute(c, [Array("ECHO".utf8), [0x65, 0x00, 0x65]])
        #expect(echo.reply == Array("$3\r\ne".utf8) + [0] + Array("e\r\n".utf8))
    }

    @Test func helloWithoutVersionReportsTheCurrentOne() {
        let relay = Relay(), c = TestClient(id: 37)
        #expect(relay.reply(c, "HELLO") == hello(proto: 2, id: 37))
        #expect(c.session.resp == .resp2)
    }

    @Test func helloAuthAndSetname() {
        let relay = Relay(), c = TestClient(id: 43)
        let got = relay.replies(c, [
            ["HELLO", "3"], ["COMMAND", "INFO", "nosuch"], ["CLIENT", "GETNAME"],
            ["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "n"], ["CLIENT", "GETNAME"],
        ])
        #expect(got == hello(proto: 3, id: 43) + "*1\r\n_\r\n_\r\n" + hello(proto: 3, id: 43) + "$1\r\nn\r\n")
    }

    @Test func helloErrors() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "HELLO", "4") == "-NOPROTO unsupported protocol version\r\n")
        #expect(relay.reply(c, "HELLO", "+3") == "-ERR Protocol version is not an integer or out of range\r\n")
        #expect(relay.reply(c, "HELLO", "2", "SETNAME") == "-ERR Syntax error in HELLO option 'SETNAME'\r\n")
        #expect(relay.reply(c, "HELLO", "2", "AUTH", "default") == "-ERR Syntax error in HELLO option 'AUTH'\r\n")
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "bob", "pw")
            == "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(relay.reply(c, "HELLO", "2", "x\u{0}y") == "-ERR Syntax error in HELLO option 'x'\r\n")
        // None of these switched the protocol.
        #expect(c.session.resp == .resp2)
        #expect(relay.reply(c, "PING") == "+PONG\r\n")
    }

    /// `addReplyErrorFormat` turns CR and LF into spaces: a client-supplied option must not
    /// split the error line (redis-server 7.0.15 replies `'a  b'`).
    @Test func helloSyntaxErrorKeepsTheReplyOnOneLine() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "HELLO", "3", "a\r\nb") == "-ERR Syntax error in HELLO option 'a  b'\r\n")
    }

    /// CLIENT SETINFO (Redis 7.2) reports an unknown attribute with `addReplyErrorFormat`, which
    /// turns CR and LF into spaces like every formatted error.
    @Test func setinfoUnknownAttributeKeepsTheReplyOnOneLine() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "CLIENT", "SETINFO", "lib-name", "redis-py") == "+OK\r\n")
        #expect(relay.reply(c, "CLIENT", "SETINFO", "x\r\ny", "1") == "-ERR Unrecognized option 'x  y'\r\n")
    }

    // MARK: PUBLISH between clients

    @Test func publishDeliversMessageThenPmessageInEachProtocol() {
        let relay = Relay()
        let two = TestClient(id: 1), three = TestClient(id: 2), publisher = TestClient(id: 3)
        _ = relay.reply(three, "HELLO", "3")
        for c in [two, three] {
            _ = relay.reply(c, "SUBSCRIBE", "a")
            _ = relay.reply(c, "PSUBSCRIBE", "a*")
        }
        let payload: [UInt8] = Array("hi\r\n".utf8) + [0]
        let (reply, _) = relay.execute(publisher, [Array("PUBLISH".utf8), Array("a".utf8), payload])
        #expect(reply == Array(":4\r\n".utf8))
        #expect(two.takeOutput() == Array("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\n".utf8) + payload
            + Array("\r\n*4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$5\r\n".utf8) + payload + Array("\r\n".utf8))
        #expect(three.takeOutput() == Array(">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\n".utf8) + payload
            + Array("\r\n>4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$5\r\n".utf8) + payload + Array("\r\n".utf8))
        #expect(publisher.frames.isEmpty)
    }

    @Test func publishToNoOneRepliesZero() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "PUBLISH", "nobody", "x") == ":0\r\n")
    }

    /// A publisher subscribed (RESP3) to its own channel receives its message like anyone else.
    @Test func publisherReceivesItsOwnMessageInRESP3() {
        let relay = Relay(), c = TestClient()
        _ = relay.reply(c, "HELLO", "3")
        _ = relay.reply(c, "SUBSCRIBE", "me")
        #expect(relay.reply(c, "PUBLISH", "me", "x") == ":1\r\n")
        #expect(String(decoding: c.takeOutput(), as: UTF8.self) == ">3\r\n$7\r\nmessage\r\n$2\r\nme\r\n$1\r\nx\r\n")
    }

    // MARK: PUBSUB

    @Test func pubsubIntrospection() {
        let relay = Relay()
        let a = TestClient(id: 1), b = TestClient(id: 2), c = TestClient(id: 3)
        _ = relay.reply(a, "SUBSCRIBE", "a")
        _ = relay.reply(b, "SUBSCRIBE", "a")
        _ = relay.reply(b, "PSUBSCRIBE", "a*")
        _ = relay.reply(a, "PSUBSCRIBE", "a*")
        #expect(relay.reply(c, "PUBSUB", "NUMSUB", "a", "zz") == "*4\r\n$1\r\na\r\n:2\r\n$2\r\nzz\r\n:0\r\n")
        #expect(relay.reply(c, "PUBSUB", "NUMPAT") == ":1\r\n")
        #expect(relay.reply(c, "PUBSUB", "CHANNELS") == "*1\r\n$1\r\na\r\n")
        #expect(relay.reply(c, "PUBSUB", "CHANNELS", "b*") == "*0\r\n")
        #expect(relay.reply(c, "PUBSUB", "CHANNELS", "?") == "*1\r\n$1\r\na\r\n")
        #expect(relay.reply(c, "pubsub", "numsub") == "*0\r\n")
    }

    @Test func pubsubErrorsAndHelp() {
        let relay = Relay(), c = TestClient()
        // The subcommand is echoed as the client typed it.
        #expect(relay.reply(c, "PUBSUB", "channels", "a", "b")
            == "-ERR unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP.\r\n")
        #expect(relay.reply(c, "pubsub", "ChAnNeLs", "a", "b")
            == "-ERR unknown subcommand or wrong number of arguments for 'ChAnNeLs'. Try PUBSUB HELP.\r\n")
        #expect(relay.reply(c, "PUBSUB", "FOO") == "-ERR unknown subcommand 'FOO'. Try PUBSUB HELP.\r\n")
        #expect(relay.reply(c, "PUBSUB", "HELP") == "*14\r\n"
            + "+PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
            + "+CHANNELS [<pattern>]\r\n"
            + "+    Return the currently active channels matching a <pattern> (default: '*').\r\n"
            + "+NUMPAT\r\n+    Return number of subscriptions to patterns.\r\n"
            + "+NUMSUB [<channel> ...]\r\n"
            + "+    Return the number of subscribers for the specified channels, excluding\r\n"
            + "+    pattern subscriptions(default: no channels).\r\n"
            + "+SHARDCHANNELS [<pattern>]\r\n"
            + "+    Return the currently active shard level channels matching a <pattern> (default: '*').\r\n"
            + "+SHARDNUMSUB [<shardchannel> ...]\r\n"
            + "+    Return the number of subscribers for the specified shard level channel(s)\r\n"
            + "+HELP\r\n+    Prints this help.\r\n")
    }

    // MARK: Unknown commands and arity

    @Test func unknownCommandTextsWith128ByteTruncation() {
        let relay = Relay(), c = TestClient()
        let a200 = String(repeating: "a", count: 200)
        let a128 = String(repeating: "a", count: 128)
        #expect(relay.reply(c, "FOO", a200, "b")
            == "-ERR unknown command 'FOO', with args beginning with: '\(a128)' \r\n")
        #expect(relay.reply(c, a200) == "-ERR unknown command '\(a128)', with args beginning with: \r\n")
        #expect(relay.reply(c, "foo", String(repeating: "a", count: 100), String(repeating: "b", count: 100), "c")
            == "-ERR unknown command 'foo', with args beginning with: '\(String(repeating: "a", count: 100))' '\(String(repeating: "b", count: 25))' \r\n")
        #expect(relay.reply(c, "") == "-ERR unknown command '', with args beginning with: \r\n")
        let many = ["x"] + Array(repeating: "abcd", count: 50)
        #expect(relay.replies(c, [many])
            == "-ERR unknown command 'x', with args beginning with: " + String(repeating: "'abcd' ", count: 18) + "'ab' \r\n")
        #expect(relay.stats.counts.unknownCommands == 5)
    }

    /// The argument list grows while it is under 128 bytes; each argument gets the room left.
    @Test func unknownCommandArgumentListBoundary() {
        let relay = Relay(), c = TestClient()
        let a = { (n: Int) in String(repeating: "a", count: n) }
        // 124 bytes quoted make 127: one more argument fits, cut to the 1 byte left.
        #expect(relay.reply(c, "nope", a(124), "xyz", "q")
            == "-ERR unknown command 'nope', with args beginning with: '\(a(124))' 'x' \r\n")
        // 125 make 128: the list is full.
        #expect(relay.reply(c, "nope", a(125), "xyz")
            == "-ERR unknown command 'nope', with args beginning with: '\(a(125))' \r\n")
        #expect(relay.reply(c, "nope", a(126), "xyz")
            == "-ERR unknown command 'nope', with args beginning with: '\(a(126))' \r\n")
        #expect(relay.reply(c, "nope", "a\u{0}a\u{0}a\u{0}", "")
            == "-ERR unknown command 'nope', with args beginning with: 'a' '' \r\n")
    }

    /// Arguments are shown as C strings (cut at NUL) with CR and LF turned into spaces.
    @Test func unknownCommandTextIsOneLine() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "foo", "x\r\ny", "a\u{0}b") == "-ERR unknown command 'foo', with args beginning with: 'x  y' 'a' \r\n")
        #expect(relay.reply(c, "PING\u{0}x") == "-ERR unknown command 'PING', with args beginning with: \r\n")
    }

    @Test func unknownSubcommand() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "CLIENT", "FOO") == "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n")
        #expect(relay.reply(c, "client", "foo") == "-ERR unknown subcommand 'foo'. Try CLIENT HELP.\r\n")
    }

    @Test(arguments: [
        (["CLIENT", "SETNAME"], "client|setname"), (["CLIENT", "SETNAME", "a", "b"], "client|setname"),
        (["PING", "a", "b"], "ping"), (["PUBSUB"], "pubsub"), (["CLIENT"], "client"), (["ECHO"], "echo"),
        (["SUBSCRIBE"], "subscribe"), (["PSUBSCRIBE"], "psubscribe"), (["PUBLISH", "a"], "publish"),
        (["SELECT"], "select"), (["PUBSUB", "NUMPAT", "x"], "pubsub|numpat"),
    ])
    func wrongArity(_ c: ([String], String)) {
        let relay = Relay(), client = TestClient()
        #expect(relay.replies(client, [c.0]) == "-ERR wrong number of arguments for '\(c.1)' command\r\n")
        #expect(!client.session.inPubSubContext)
    }

    // MARK: Connection lifecycle

    @Test func quitRepliesOKThenCloses() {
        let relay = Relay(), c = TestClient()
        let (reply, outcome) = relay.execute(c, [Array("QUIT".utf8)])
        #expect(reply == Array("+OK\r\n".utf8))
        #expect(outcome == .closeAfterReply)
        _ = relay.reply(c, "SUBSCRIBE", "a")
        #expect(relay.execute(c, [Array("quit".utf8), Array("x".utf8)]).outcome == .closeAfterReply)
    }

    /// `POST` and `Host:` (an HTTP request sent to the socket) close at once with no reply, even
    /// in the subscribed context.
    @Test(arguments: ["POST", "post", "Host:", "HOST:", "post\u{0}x"])
    func httpRequestClosesImmediately(_ name: String) {
        let relay = Relay(), c = TestClient()
        _ = relay.reply(c, "SUBSCRIBE", "a")
        let (reply, outcome) = relay.execute(c, [Array(name.utf8), Array("/".utf8)])
        #expect(reply.isEmpty)
        guard case .closeImmediately = outcome else {
            Issue.record("expected .closeImmediately, got \(outcome)")
            return
        }
        #expect(relay.stats.counts.securityDisconnects == 1)
    }

    @Test func resetLeavesPubSubAndRESP3() {
        let relay = Relay(), c = TestClient(id: 44)
        let got = relay.replies(c, [["HELLO", "3"], ["SUBSCRIBE", "a"], ["RESET"], ["UNSUBSCRIBE"], ["ECHO", "x"]])
        #expect(got == hello(proto: 3, id: 44) + ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n+RESET\r\n"
            + "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n$1\r\nx\r\n")
        #expect(relay.hub.registry.channelCount == 0)
        #expect(relay.hub.registry.subscriberCount == 0)
    }

    @Test func resetClearsNameAndDatabase() {
        let relay = Relay(), c = TestClient()
        let got = relay.replies(c, [
            ["CLIENT", "SETNAME", "a b"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "n1"], ["CLIENT", "GETNAME"],
            ["SELECT", "3"], ["RESET"], ["CLIENT", "GETNAME"],
        ])
        #expect(got == "-ERR Client names cannot contain spaces, newlines or special characters.\r\n$-1\r\n"
            + "+OK\r\n$2\r\nn1\r\n+OK\r\n+RESET\r\n$-1\r\n")
        #expect(c.session.db == 0)
    }

    @Test func clientIdAndEcho() {
        let relay = Relay(), c = TestClient(id: 12345)
        #expect(relay.reply(c, "CLIENT", "ID") == ":12345\r\n")
        let binary: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF]
        #expect(relay.execute(c, [Array("ECHO".utf8), binary]).reply == Array("$4\r\n".utf8) + binary + Array("\r\n".utf8))
    }

    // MARK: SELECT and AUTH

    @Test func selectReplies() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "SELECT", "0") == "+OK\r\n")
        #expect(relay.reply(c, "SELECT", "15") == "+OK\r\n")
        #expect(c.session.db == 15)
        #expect(relay.reply(c, "SELECT", "16") == "-ERR DB index is out of range\r\n")
        #expect(relay.reply(c, "SELECT", "-1") == "-ERR DB index is out of range\r\n")
        #expect(relay.reply(c, "SELECT", "x") == "-ERR value is not an integer or out of range\r\n")
        #expect(relay.reply(c, "SELECT", "99999999999999999999") == "-ERR value is not an integer or out of range\r\n")
        #expect(c.session.db == 15)
    }

    /// `getIntFromObjectOrReply` tells a valid 64-bit integer outside `int` apart from a
    /// non-integer: redis-server 7.0.15 answers SELECT 3000000000 with the range message.
    @Test func selectOutsideIntRangeNamesTheRange() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "SELECT", "3000000000")
            == "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n")
        #expect(relay.reply(c, "SELECT", "-3000000000")
            == "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n")
    }

    @Test func authReplies() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "AUTH", "x")
            == "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n")
        #expect(relay.reply(c, "AUTH", "default", "x") == "+OK\r\n")
        #expect(relay.reply(c, "AUTH", "bob", "x") == "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(relay.reply(c, "AUTH", "a", "b", "c") == "-ERR syntax error\r\n")
    }

    // MARK: COMMAND (what clients probe on connect)

    @Test func commandInfoMatchesRedis() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "COMMAND", "INFO", "subscribe", "nosuch")
            == "*2\r\n*10\r\n$9\r\nsubscribe\r\n:-2\r\n*4\r\n+pubsub\r\n+noscript\r\n+loading\r\n+stale\r\n"
            + ":0\r\n:0\r\n:0\r\n*2\r\n+@pubsub\r\n+@slow\r\n*0\r\n*0\r\n*0\r\n$-1\r\n")
    }

    @Test func commandDocsMatchesRedis() {
        let relay = Relay(), c = TestClient()
        #expect(relay.reply(c, "COMMAND", "DOCS", "ping")
            == "*2\r\n$4\r\nping\r\n*10\r\n$7\r\nsummary\r\n$15\r\nPing the server\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n"
            + "$5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*6\r\n"
            + "$4\r\nname\r\n$7\r\nmessage\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\nflags\r\n*1\r\n+optional\r\n")
    }

    @Test func commandCountAgreesWithCommand() {
        let relay = Relay(), c = TestClient()
        let count = Array(relay.reply(c, "COMMAND", "COUNT").utf8)
        let all = Array(relay.reply(c, "COMMAND").utf8)
        #expect(count.first == UInt8(ascii: ":") && count.suffix(2) == [0x0D, 0x0A])
        let n = String(decoding: count.dropFirst().dropLast(2), as: UTF8.self)
        #expect((Int(n) ?? 0) >= 13, "the relay carries at least 13 commands")
        #expect(all.starts(with: Array("*\(n)\r\n".utf8)))
    }

    @Test func statsCountCommands() {
        let relay = Relay(), c = TestClient()
        _ = relay.reply(c, "PING")
        _ = relay.reply(c, "NOPE")
        _ = relay.reply(c, "ECHO")
        #expect(relay.stats.counts.commandsProcessed == 3)
        #expect(relay.stats.counts.unknownCommands == 1)
        #expect(relay.stats.counts.rejectedCommands == 1)
    }
}

/// `DEBUG SLEEP`, the watchdog test hook: refused unless enabled, then it calls the edge's sleep.
@Suite struct DebugCommandTests {
    @Test func refusedByDefault() {
        let relay = Relay()
        var slept: [Double] = []
        relay.executor.debugSleep = { slept.append($0) }
        #expect(relay.reply(TestClient(), "DEBUG", "SLEEP", "0")
            == "-ERR DEBUG is disabled; set RELAY_ENABLE_DEBUG_COMMAND=yes to allow it (test setups only)\r\n")
        #expect(slept.isEmpty)
    }

    @Test func sleepsWhenEnabledAndRejectsOtherForms() {
        let relay = Relay()
        var slept: [Double] = []
        relay.executor.debugSleep = { slept.append($0) }
        relay.executor.debugCommandEnabled = true
        let client = TestClient()
        #expect(relay.reply(client, "debug", "sleep", "0.25") == "+OK\r\n")
        #expect(slept == [0.25])
        #expect(relay.reply(client, "DEBUG", "SLEEP", "soon") == "-ERR value is not a valid float\r\n")
        #expect(relay.reply(client, "DEBUG", "OBJECT", "x") == "-ERR the relay supports only DEBUG SLEEP <seconds>\r\n")
        #expect(relay.reply(client, "DEBUG") == "-ERR wrong number of arguments for 'debug' command\r\n")
        #expect(slept == [0.25])
    }

    @Test func commandListLeavesOutCommandsWithoutInfo() {
        let relay = Relay()
        let list = relay.reply(TestClient(), "COMMAND", "LIST")
        #expect(list.contains("$7\r\npublish\r\n"))
        #expect(!list.contains("debug"))
    }
}

/// With `RELAY_PASSWORD` set: Redis 7.0.15 started with `--requirepass secret`, reply for reply
/// (captured from it over TCP and over its Unix socket).
@Suite struct CommandExecutorPasswordTests {
    private static let noauth = "-NOAUTH Authentication required.\r\n"
    private static let wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    private static let helloNoauth = "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"

    private func relay() -> (Relay, TestClient) {
        let relay = Relay()
        relay.executor.password = RelayPassword(Array("secret".utf8))
        let c = TestClient(id: 7)
        c.session.authenticated = relay.executor.newClientsAuthenticated
        #expect(!c.session.authenticated)
        return (relay, c)
    }

    @Test func beforeAuthOnlyAuthHelloQuitResetRun() {
        let (relay, c) = relay()
        for command in [["PUBLISH", "a", "b"], ["PING"], ["SUBSCRIBE", "x"], ["PSUBSCRIBE", "*"], ["INFO"], ["SELECT", "1"],
                        ["ECHO", "x"], ["COMMAND"], ["CLIENT", "GETNAME"], ["PUBSUB", "CHANNELS"], ["UNSUBSCRIBE"]] {
            #expect(relay.replies(c, [command]) == Self.noauth, "\(command)")
        }
        #expect(relay.hub.registry.subscriptionCount(of: c) == 0)
        #expect(!c.session.inPubSubContext)
        // Unknown commands and wrong arities are answered as such first, as Redis checks them first.
        #expect(relay.reply(c, "FOO") == "-ERR unknown command 'FOO', with args beginning with: \r\n")
        #expect(relay.reply(c, "PUBLISH", "a") == "-ERR wrong number of arguments for 'publish' command\r\n")
        #expect(relay.reply(c, "CLIENT", "FOO") == "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n")
        #expect(relay.reply(c, "AUTH") == "-ERR wrong number of arguments for 'auth' command\r\n")
        #expect(relay.reply(c, "AUTH", "a", "b", "c") == "-ERR syntax error\r\n")
        #expect(relay.reply(c, "RESET") == "+RESET\r\n")
        let (quit, outcome) = relay.execute(c, utf8("QUIT"))
        #expect(String(decoding: quit, as: UTF8.self) == "+OK\r\n" && outcome == .closeAfterReply)
        #expect(relay.stats.counts.authFailures == 0)
    }

    @Test func authWithThePassword() {
        let (relay, c) = relay()
        #expect(relay.reply(c, "AUTH", "wrong") == Self.wrongpass)
        #expect(relay.reply(c, "AUTH", "default", "wrong") == Self.wrongpass)
        #expect(relay.reply(c, "AUTH", "bob", "secret") == Self.wrongpass)
        #expect(relay.reply(c, "PING") == Self.noauth)
        #expect(relay.stats.counts.authFailures == 3)
        #expect(relay.reply(c, "AUTH", "secret") == "+OK\r\n")
        #expect(relay.reply(c, "PING") == "+PONG\r\n")
        // A failed AUTH later leaves the client authenticated, as in Redis.
        #expect(relay.reply(c, "AUTH", "wrong") == Self.wrongpass)
        #expect(relay.reply(c, "PING") == "+PONG\r\n")
        // RESET goes back to the default user, which has a password: unauthenticated again.
        #expect(relay.reply(c, "RESET") == "+RESET\r\n")
        #expect(relay.reply(c, "PING") == Self.noauth)
        #expect(relay.reply(c, "AUTH", "default", "secret") == "+OK\r\n")
        #expect(relay.reply(c, "PUBLISH", "a", "b") == ":0\r\n")
        #expect(relay.stats.counts.authFailures == 4)
    }

    @Test func helloBeforeAuth() {
        let (relay, c) = relay()
        #expect(relay.reply(c, "HELLO") == Self.helloNoauth)
        #expect(relay.reply(c, "HELLO", "3") == Self.helloNoauth)
        #expect(relay.reply(c, "HELLO", "4") == "-NOPROTO unsupported protocol version\r\n")
        #expect(relay.reply(c, "HELLO", "x") == "-ERR Protocol version is not an integer or out of range\r\n")
        #expect(relay.reply(c, "HELLO", "3", "SETNAME", "a b") == "-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
        #expect(relay.reply(c, "HELLO", "3", "FOO") == "-ERR Syntax error in HELLO option 'FOO'\r\n")
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "default", "bad") == Self.wrongpass)
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "bob", "secret") == Self.wrongpass)
        #expect(c.session.resp == .resp2 && !c.session.authenticated)
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "default", "secret", "SETNAME", "n") == hello(proto: 3, id: 7))
        #expect(c.session.resp == .resp3 && c.session.authenticated)
        #expect(relay.reply(c, "CLIENT", "GETNAME") == "$1\r\nn\r\n")
        // Wrong credentials in a later HELLO: refused, the protocol kept, still authenticated.
        #expect(relay.reply(c, "HELLO", "2", "AUTH", "default", "wrong") == Self.wrongpass)
        #expect(c.session.resp == .resp3)
        #expect(relay.reply(c, "PING") == "+PONG\r\n")
    }

    /// Redis 7.0.15 runs HELLO's options in order: what an earlier option did stays when a later
    /// one fails, and a failed one stops the rest.
    @Test func helloRunsItsOptionsInOrder() {
        let (relay, c) = relay()
        #expect(relay.reply(c, "HELLO", "3", "SETNAME", "n0") == Self.helloNoauth)
        #expect(relay.reply(c, "HELLO", "3", "SETNAME", "a b", "AUTH", "default", "secret")
            == "-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
        #expect(!c.session.authenticated)
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "default", "wrong", "SETNAME", "zz") == Self.wrongpass)
        #expect(relay.reply(c, "HELLO", "3", "AUTH", "default", "secret", "FOO") == "-ERR Syntax error in HELLO option 'FOO'\r\n")
        #expect(c.session.authenticated && c.session.resp == .resp2)
        // n0 was set by the refused HELLO; zz never was (its AUTH failed first).
        #expect(relay.reply(c, "CLIENT", "GETNAME") == "$2\r\nn0\r\n")
        #expect(relay.reply(c, "HELLO", "2", "SETNAME", "n1", "FOO") == "-ERR Syntax error in HELLO option 'FOO'\r\n")
        #expect(relay.reply(c, "CLIENT", "GETNAME") == "$2\r\nn1\r\n")
        #expect(relay.reply(c, "HELLO", "2", "SETNAME", "n2", "AUTH", "default", "wrong") == Self.wrongpass)
        #expect(relay.reply(c, "CLIENT", "GETNAME") == "$2\r\nn2\r\n")
    }

    /// A RESP2 subscriber must not even AUTH (the subscribed-context error), as in Redis.
    @Test func subscribedContextComesAfterAuth() {
        let (relay, c) = relay()
        #expect(relay.reply(c, "AUTH", "secret") == "+OK\r\n")
        _ = relay.reply(c, "SUBSCRIBE", "x")
        #expect(relay.reply(c, "AUTH", "secret")
            == "-ERR Can't execute 'auth': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n")
    }

    @Test func failuresAreReportedWithoutThePassword() {
        let (relay, c) = relay()
        var reported: [String] = []
        relay.executor.authFailed = { _, user in reported.append(String(buffer: user)) }
        _ = relay.reply(c, "AUTH", "guess1")
        _ = relay.reply(c, "AUTH", "bob", "guess2")
        _ = relay.reply(c, "HELLO", "3", "AUTH", "default", "guess3")
        _ = relay.reply(c, "AUTH", "secret")
        #expect(reported == ["default", "bob", "default"])
    }
}
