import NIOCore
import Testing
@testable import RelayCore

/// SSUBSCRIBE / SUNSUBSCRIBE / SPUBLISH and the shard PUBSUB subcommands in local mode. Every
/// expected reply was captured from redis-server 7.0.15 given the same commands.
@Suite struct ShardedPubSubExecutorTests {
    private let hub = PubSubHub<TestClient>(stats: RelayStats())
    private let executor: CommandExecutor<TestClient>

    init() {
        executor = CommandExecutor(hub: hub)
    }

    private func run(_ client: TestClient, _ args: String...) -> String {
        var out = ByteBuffer()
        _ = executor.execute(args.map { ByteBuffer(string: $0) }, client: client, out: &out)
        return String(buffer: out)
    }

    private func frame(_ kind: String, _ name: String?, _ count: Int, push: Bool = false) -> String {
        (push ? ">3\r\n" : "*3\r\n") + "$\(kind.utf8.count)\r\n\(kind)\r\n"
            + (name.map { "$\($0.utf8.count)\r\n\($0)\r\n" } ?? (push ? "_\r\n" : "$-1\r\n")) + ":\(count)\r\n"
    }

    /// The ssubscribe count is the shard channels alone; subscribe/psubscribe counts leave them out.
    @Test func countsAreKeptApart() {
        let c = TestClient()
        #expect(run(c, "SUBSCRIBE", "a") == frame("subscribe", "a", 1))
        #expect(run(c, "SSUBSCRIBE", "a", "b", "a") == frame("ssubscribe", "a", 1) + frame("ssubscribe", "b", 2) + frame("ssubscribe", "a", 2))
        #expect(run(c, "PSUBSCRIBE", "p*") == frame("psubscribe", "p*", 2))
        #expect(run(c, "SUNSUBSCRIBE", "b", "zz") == frame("sunsubscribe", "b", 1) + frame("sunsubscribe", "zz", 1))
        #expect(run(c, "UNSUBSCRIBE") == frame("unsubscribe", "a", 1))
        #expect(hub.registry.shardChannelCount(of: c) == 1 && hub.registry.subscriptionCount(of: c) == 1)
        #expect(hub.registry.totalSubscriptionCount(of: c) == 2)
    }

    @Test func sunsubscribeWithoutArguments() {
        let c = TestClient()
        #expect(run(c, "SUNSUBSCRIBE") == frame("sunsubscribe", nil, 0))
        #expect(!c.session.inPubSubContext)
        _ = run(c, "SSUBSCRIBE", "x", "y")
        #expect(run(c, "SUNSUBSCRIBE") == frame("sunsubscribe", "x", 1) + frame("sunsubscribe", "y", 0))
        #expect(hub.registry.shardChannelCount == 0)
        _ = run(c, "HELLO", "3")
        #expect(run(c, "SUNSUBSCRIBE") == frame("sunsubscribe", nil, 0, push: true))
    }

    /// SSUBSCRIBE enters the RESP2 subscribed context; it is left only when channels, patterns
    /// and shard channels are all gone.
    @Test func subscribedContextCoversShardChannels() {
        let c = TestClient()
        _ = run(c, "SSUBSCRIBE", "s")
        #expect(c.session.inPubSubContext)
        #expect(run(c, "SPUBLISH", "s", "x").hasPrefix("-ERR Can't execute 'spublish': only (P|S)SUBSCRIBE"))
        #expect(run(c, "PING") == "*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        _ = run(c, "SUBSCRIBE", "a")
        #expect(run(c, "UNSUBSCRIBE") == frame("unsubscribe", "a", 0))
        #expect(c.session.inPubSubContext)  // still holds the shard channel
        #expect(run(c, "SUNSUBSCRIBE", "s") == frame("sunsubscribe", "s", 0))
        #expect(!c.session.inPubSubContext)
        #expect(run(c, "PING") == "+PONG\r\n")
        _ = run(c, "SSUBSCRIBE", "s")
        #expect(run(c, "RESET") == "+RESET\r\n")
        #expect(hub.registry.shardChannelCount == 0 && !c.session.inPubSubContext)
        _ = run(c, "SSUBSCRIBE", "t")
        executor.clientClosed(c)
        #expect(hub.registry.shardChannelCount == 0)
    }

    /// SPUBLISH reaches shard subscribers only, PUBLISH never reaches them.
    @Test func namespacesAreApart() {
        let shard = TestClient(id: 1), classic = TestClient(id: 2), pattern = TestClient(id: 3), pub = TestClient(id: 4)
        _ = run(shard, "SSUBSCRIBE", "news")
        _ = run(classic, "SUBSCRIBE", "news")
        _ = run(pattern, "PSUBSCRIBE", "*")
        for c in [shard, classic, pattern] { _ = c.takeOutput() }
        #expect(run(pub, "SPUBLISH", "news", "s1") == ":1\r\n")
        #expect(String(decoding: shard.takeOutput(), as: UTF8.self) == "*3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$2\r\ns1\r\n")
        #expect(classic.takeOutput().isEmpty && pattern.takeOutput().isEmpty)
        #expect(run(pub, "PUBLISH", "news", "c1") == ":2\r\n")
        #expect(shard.takeOutput().isEmpty)
        #expect(run(pub, "SPUBLISH", "nobody", "x") == ":0\r\n")
        let resp3 = TestClient(id: 5)
        _ = run(resp3, "HELLO", "3")
        _ = run(resp3, "SSUBSCRIBE", "news")
        // A RESP3 subscriber may publish, and receives its own message before the reply.
        #expect(run(resp3, "SPUBLISH", "news", "s2") == ":2\r\n")
        #expect(String(decoding: resp3.takeOutput(), as: UTF8.self) == ">3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$2\r\ns2\r\n")
    }

    @Test func pubsubShardSubcommands() {
        let a = TestClient(id: 1), b = TestClient(id: 2), q = TestClient(id: 3)
        _ = run(a, "SSUBSCRIBE", "s1", "s2", "other")
        _ = run(b, "SSUBSCRIBE", "s1")
        _ = run(b, "SUBSCRIBE", "c1")
        #expect(run(q, "PUBSUB", "SHARDNUMSUB", "s1", "s2", "c1", "none") ==
            "*8\r\n$2\r\ns1\r\n:2\r\n$2\r\ns2\r\n:1\r\n$2\r\nc1\r\n:0\r\n$4\r\nnone\r\n:0\r\n")
        #expect(run(q, "PUBSUB", "SHARDNUMSUB") == "*0\r\n")
        #expect(run(q, "PUBSUB", "NUMSUB", "s1") == "*2\r\n$2\r\ns1\r\n:0\r\n")
        #expect(Set(run(q, "PUBSUB", "SHARDCHANNELS").split(separator: "\r\n").dropFirst()) == ["$2", "s1", "s2", "$5", "other"])
        #expect(run(q, "PUBSUB", "SHARDCHANNELS", "s*").hasPrefix("*2\r\n"))
        #expect(run(q, "PUBSUB", "SHARDCHANNELS", "c*") == "*0\r\n")
        #expect(run(q, "PUBSUB", "CHANNELS") == "*1\r\n$2\r\nc1\r\n")
        #expect(run(q, "PUBSUB", "SHARDCHANNELS", "a", "b").hasPrefix("-ERR unknown subcommand or wrong number of arguments for 'SHARDCHANNELS'"))
    }

    @Test func arityErrors() {
        let c = TestClient()
        #expect(run(c, "SSUBSCRIBE") == "-ERR wrong number of arguments for 'ssubscribe' command\r\n")
        #expect(run(c, "SPUBLISH", "a") == "-ERR wrong number of arguments for 'spublish' command\r\n")
        #expect(run(c, "SPUBLISH", "a", "b", "c") == "-ERR wrong number of arguments for 'spublish' command\r\n")
    }

    @Test func commandInfoHasTheShardCommands() {
        for name in ["ssubscribe", "sunsubscribe", "spublish"] {
            #expect(CommandDocs.info(named: name) != nil)
            #expect(CommandDocs.docs(named: name) != nil)
        }
    }
}
