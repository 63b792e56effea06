import NIOCore
import Testing
@testable import RelayCore

/// Records what the executor tells a backplane (the upstream link's side of the contract).
private final class RecordingBackplane: Backplane {
    typealias Client = TestClient
    var isForwarding = true
    var answers = true
    var events: [String] = []

    func subscriptionAdded(_ kind: SubscriptionKind, _ name: ByteBuffer, first: Bool, by client: TestClient) {
        events.append("+\(Self.prefix(kind))\(String(buffer: name))\(first ? " first" : "") by \(client.session.id)")
    }

    /// When set, every SUBSCRIBE/PSUBSCRIBE's confirmations are held in a slot kept here.
    var holds = false
    var held: [(names: [String], slot: ReplySlot)] = []

    func holdConfirmations(_ kind: SubscriptionKind, _ names: [ByteBuffer], for client: TestClient) -> ReplySlot? {
        guard holds else { return nil }
        let slot = ReplySlot()
        held.append((names.map { String(buffer: $0) }, slot))
        return slot
    }

    func subscriptionRemoved(_ kind: SubscriptionKind, _ name: ByteBuffer, last: Bool) {
        events.append("-\(Self.prefix(kind))\(String(buffer: name))\(last ? " last" : "")")
    }

    static func prefix(_ kind: SubscriptionKind) -> String {
        switch kind {
        case .channel: return ""
        case .pattern: return "p"
        case .shard: return "s"
        }
    }

    func publish(channel: ByteBuffer, payload: ByteBuffer, sharded: Bool, from client: TestClient) {
        events.append("\(sharded ? "spublish" : "publish") \(String(buffer: channel)) \(String(buffer: payload))")
    }

    func answer(_ query: PubSubQuery, for client: TestClient) -> Bool {
        switch query {
        case .numsub(let channels): events.append("numsub \(channels.map { String(buffer: $0) })")
        case .channels(let pattern): events.append("channels \(pattern.map { String(buffer: $0) } ?? "-")")
        case .numpat: events.append("numpat")
        case .shardnumsub(let channels): events.append("shardnumsub \(channels.map { String(buffer: $0) })")
        case .shardchannels(let pattern): events.append("shardchannels \(pattern.map { String(buffer: $0) } ?? "-")")
        }
        return answers
    }
}

@Suite struct BackplaneExecutorTests {
    private let hub = PubSubHub<TestClient>(stats: RelayStats())
    private let executor: CommandExecutor<TestClient>
    private let backplane = RecordingBackplane()

    init() {
        executor = CommandExecutor(hub: hub)
        executor.backplane = backplane
    }

    private func run(_ client: TestClient, _ args: String...) -> String {
        var out = ByteBuffer()
        _ = executor.execute(args.map { ByteBuffer(string: $0) }, client: client, out: &out)
        return String(buffer: out)
    }

    /// First and last local holders are flagged: that is the upstream reference count.
    @Test func subscriptionsAreReferenceCounted() {
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = run(a, "SUBSCRIBE", "x", "y")
        _ = run(b, "SUBSCRIBE", "x")
        _ = run(a, "SUBSCRIBE", "x")  // already held: nothing to tell
        _ = run(b, "PSUBSCRIBE", "n*")
        #expect(backplane.events == ["+x first by 1", "+y first by 1", "+x by 2", "+pn* first by 2"])
        backplane.events = []
        _ = run(a, "UNSUBSCRIBE", "x")
        _ = run(b, "UNSUBSCRIBE")
        _ = run(b, "PUNSUBSCRIBE", "n*")
        _ = run(b, "UNSUBSCRIBE", "never")
        #expect(backplane.events == ["-x", "-x last", "-pn* last"])
        backplane.events = []
        _ = run(b, "PSUBSCRIBE", "p1", "p2")
        _ = run(b, "RESET")
        executor.clientClosed(a)
        #expect(backplane.events == ["+pp1 first by 2", "+pp2 first by 2", "-pp1 last", "-pp2 last", "-y last"])
    }

    /// Forwarding: PUBLISH goes upstream and its reply comes later; degraded: local delivery.
    @Test func publishFollowsTheMode() {
        let sub = TestClient(id: 1), pub = TestClient(id: 2)
        _ = run(sub, "SUBSCRIBE", "x")
        _ = sub.takeOutput()
        #expect(run(pub, "PUBLISH", "x", "hi") == "")
        #expect(sub.takeOutput().isEmpty)
        backplane.isForwarding = false
        #expect(run(pub, "PUBLISH", "x", "local") == ":1\r\n")
        #expect(String(decoding: sub.takeOutput(), as: UTF8.self) == "*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$5\r\nlocal\r\n")
        #expect(backplane.events.last == "publish x hi")
        #expect(hub.stats.counts.messagesPublished == 2)
    }

    /// PUBSUB questions go to the backplane; when it declines, the local registry answers.
    @Test func pubsubQueriesGoFleetWide() {
        _ = run(TestClient(id: 9), "SUBSCRIBE", "x")
        let a = TestClient(id: 1)
        #expect(run(a, "PUBSUB", "NUMSUB", "x") == "")
        #expect(run(a, "PUBSUB", "CHANNELS", "x*") == "")
        #expect(run(a, "PUBSUB", "NUMPAT") == "")
        #expect(backplane.events.suffix(3) == ["numsub [\"x\"]", "channels x*", "numpat"])
        backplane.answers = false
        #expect(run(a, "PUBSUB", "NUMSUB", "x") == "*2\r\n$1\r\nx\r\n:1\r\n")
        #expect(run(a, "PUBSUB", "NUMPAT") == ":0\r\n")
        // No channel given: answered locally without asking upstream.
        backplane.events = []
        #expect(run(a, "PUBSUB", "NUMSUB") == "*0\r\n")
        #expect(backplane.events.isEmpty)
    }

    /// Held confirmations: the command's reply is kept in the slot (only the names the command
    /// added are named), shown when upstream confirms; on a refusal the undo drops exactly those.
    @Test func confirmationsAreHeldAndARefusedCommandIsUndone() throws {
        let a = TestClient(id: 1)
        _ = run(a, "SUBSCRIBE", "kept")
        backplane.holds = true
        backplane.events = []
        #expect(run(a, "SUBSCRIBE", "kept", "x", "y") == "")
        #expect(backplane.held.count == 1 && backplane.held[0].names == ["x", "y"])
        let slot = backplane.held[0].slot
        #expect(String(buffer: try #require(slot.heldReply)) ==
            "*3\r\n$9\r\nsubscribe\r\n$4\r\nkept\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:2\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\ny\r\n:3\r\n")
        executor.undoSubscriptions(.channel, [ByteBuffer(string: "x"), ByteBuffer(string: "y")], of: a)
        #expect(hub.registry.subscriptionCount(of: a) == 1)
        #expect(backplane.events == ["+x first by 1", "+y first by 1", "-x last", "-y last"])
        // Undo after the client left on its own changes nothing.
        #expect(run(a, "PSUBSCRIBE", "p*") == "")
        _ = run(a, "RESET")
        backplane.events = []
        executor.undoSubscriptions(.pattern, [ByteBuffer(string: "p*")], of: a)
        #expect(backplane.events.isEmpty && hub.registry.subscriptionCount(of: a) == 0)
        #expect(!a.session.inPubSubContext)
    }

    @Test func filledSlotShowsItsHeldReplyUnlessReplaced() {
        var d = DeferredReplies()
        let s1 = d.reserve(), s2 = d.reserve()
        s1.heldReply = ByteBuffer(string: "A")
        s2.heldReply = ByteBuffer(string: "B")
        s2.fill(ByteBuffer(string: "E"))
        s1.fill()
        var shown = ""
        d.drain { shown += String(buffer: $0) }
        #expect(shown == "AE")
    }
}
