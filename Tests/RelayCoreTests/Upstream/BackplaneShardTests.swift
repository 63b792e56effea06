import NIOCore
import Testing
@testable import RelayCore

/// Shard channels through the backplane machine: SSUBSCRIBE upstream reference-counted, the
/// confirmation hold, SPUBLISH's count and hold, resubscription, and the fleet channel kept apart.
private typealias Machine = BackplaneStateMachine<TestClient, String, String>

private let second: UInt64 = 1_000_000_000

private final class ShardHarness {
    let registry = SubscriptionRegistry<TestClient>()
    var m: Machine
    var now: UInt64 = 1_000 * second
    var log: [String] = []

    init() {
        m = Machine(settings: .init(relayID: "r1", namespace: "ns", timeoutNanoseconds: 3 * second, backoffCapMilliseconds: 5000),
                    registry: registry, now: now)
        m.random = { 1 }
    }

    @discardableResult
    func run(_ actions: [Machine.Action]) -> [String] {
        var last: [String] = []
        for a in actions {
            switch a {
            case .send(let id, let args):
                var shown = args.map { String(buffer: $0) }
                if shown.first == "SPUBLISH", shown[1] == "ns:fleet" {
                    var payload = args[2]
                    var parser = RequestParser()
                    shown = ["SPUBLISH", "ns:fleet"] + ((try? parser.next(from: &payload)) ?? nil ?? []).dropFirst().map { String(buffer: $0) }
                }
                last.append("\(id.role.rawValue): " + shown.joined(separator: " "))
            case .fill(let w, let bytes): last.append("fill \(w) " + (bytes.map { String(buffer: $0) } ?? "nil"))
            case .fillWithReply(let w, let reply): last.append("reply \(w) \(reply.text)")
            case .fillWithLocalAnswer(let w, _): last.append("local \(w)")
            case .undoSubscriptions(let c, let kind, let names):
                last.append("undo \(c.session.id) \(kind) " + names.map { String(buffer: $0) }.joined(separator: ","))
            case .publishLocally(let w, let channel, let payload, let sharded):
                last.append("local \(sharded ? "spublish" : "publish") \(w) \(String(buffer: channel)) \(String(buffer: payload))")
            case .log(let level, let message, let metadata):
                log.append("\(level) \(message) " + metadata.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            case .connect(let id): last.append("connect \(id.role.rawValue)")
            case .connectAfter(let id, _): last.append("connect \(id.role.rawValue) later")
            case .close(let id): last.append("close \(id.role.rawValue)")
            case .slotLost(let reason): last.append("slot lost: \(reason)")
            case .redirected(let w, let channel, let payload, _, _, _):
                last.append("redirected \(w) \(String(buffer: channel)) \(String(buffer: payload))")
            case .complete, .stateChanged, .notMaster: break
            }
        }
        return last
    }

    func id(_ role: Machine.Role) -> Machine.ConnectionID {
        var g = 1
        while !m.isCurrent(.init(role: role, generation: g)) { g += 1 }
        return .init(role: role, generation: g)
    }

    func reply(_ role: Machine.Role, _ r: UpstreamReply) -> [String] { run(m.received(id(role), r, now: now)) }
    func confirm(_ name: String, kind: SubscriptionKind = .shard, subscribe: Bool = true) -> [String] {
        reply(.subscriber, .confirmation(kind, subscribe: subscribe, name: buffer(name)))
    }

    /// Both connections up; the fleet channel's SSUBSCRIBE confirmed as hiredis types it (a
    /// `.confirmation(.shard, …)`, like an app's shard channel).
    func up() {
        run(m.start(now: now))
        for role in Machine.Role.allCases {
            run(m.connected(id(role), now: now))
            _ = reply(role, .status(buffer("OK")))
            _ = reply(role, .status(buffer("PONG")))
        }
        for _ in 0..<5 { _ = reply(.publisher, .status(buffer("OK"))) }
        _ = reply(.publisher, .integer(0))
        #expect(confirm("ns:fleet") == ["pub: SPUBLISH ns:fleet hello r1"])
        _ = reply(.publisher, .integer(0))
        #expect(m.isForwarding && m.countsFleetReceivers)
    }

    func ssubscribe(_ client: TestClient, _ names: String...) -> String? {
        var added: [ByteBuffer] = []
        for n in names {
            if case .added(let first) = registry.ssubscribe(client, shardChannel: buffer(n)) {
                run(m.subscriptionAdded(.shard, buffer(n), first: first, by: client, now: now) { "fleet\(client.session.id)" })
                added.append(buffer(n))
            }
        }
        let pending = m.pendingNames(.shard, added)
        guard !pending.isEmpty else { return nil }
        let w = "w\(client.session.id)"
        m.hold(.shard, names: added, pending: pending, for: client, waiter: w)
        return w
    }

    func sunsubscribe(_ client: TestClient, _ name: String) {
        if case .removed(let last) = registry.sunsubscribe(client, shardChannel: buffer(name)) {
            run(m.subscriptionRemoved(.shard, buffer(name), last: last, now: now))
        }
    }

    func spublish(_ channel: String, _ payload: String, waiter: String, from client: TestClient) -> [String] {
        run(m.publish(channel: buffer(channel), payload: buffer(payload), sharded: true, from: client, waiter: waiter, now: now))
    }

    @discardableResult
    func flush() -> [String] { run(m.flush(now: now)) }

    /// Answers the publisher's replies until `waiter`'s, which gets `redis`.
    func answerPublisher(until waiter: String, redis: Int) -> String {
        for _ in 0..<20 {
            let got = reply(.publisher, .integer(redis)).filter { $0.hasPrefix("fill \(waiter) ") }
            if let first = got.first { return first }
        }
        return "no reply"
    }
}

@Suite struct BackplaneShardTests {
    @Test func shardChannelsAreReferenceCountedUpstreamAndConfirmationsWait() {
        let h = ShardHarness()
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        #expect(h.ssubscribe(a, "s1", "s2") == "w1")
        #expect(h.ssubscribe(b, "s1") == "w2")
        let sent = h.flush()
        #expect(sent.first == "sub: SSUBSCRIBE s1 s2")
        // Counted in the fleet hash after the shard prefix (the field is not text: not shown).
        #expect(sent.contains { $0.hasPrefix("pub: HSET ns:numsub:r1") })
        #expect(sent.contains("pub: SPUBLISH ns:fleet delta r1 s s1 2"))
        #expect(h.confirm("s1") == ["fill w2 nil"])
        #expect(h.confirm("s2").contains("fill w1 nil"))
        // Already held upstream: confirmed at once.
        #expect(h.ssubscribe(TestClient(id: 3), "s2") == nil)
        // Only the last local holder's leaving goes upstream, as SUNSUBSCRIBE.
        h.sunsubscribe(a, "s1")
        #expect(!h.flush().contains { $0.hasPrefix("sub:") })
        h.sunsubscribe(b, "s1")
        #expect(h.flush().first == "sub: SUNSUBSCRIBE s1")
        #expect(h.confirm("s1", subscribe: false) == [])
        #expect(h.m.pendingConfirmations == 0)
    }

    /// SPUBLISH goes upstream as SPUBLISH; it waits for an S(UN)SUBSCRIBE in flight of the same
    /// name only (neither a pattern nor a classic channel of that name holds it).
    @Test func spublishWaitsOnlyForItsOwnShardChannel() {
        let h = ShardHarness()
        h.up()
        let a = TestClient(id: 1), other = TestClient(id: 2), third = TestClient(id: 3)
        _ = h.ssubscribe(a, "news")
        let p = TestClient(id: 4)
        _ = h.registry.psubscribe(p, pattern: buffer("*"))
        h.run(h.m.subscriptionAdded(.pattern, buffer("*"), first: true, by: p, now: h.now) { "fleet4" })
        #expect(h.spublish("news", "first", waiter: "p1", from: a) == [])
        #expect(h.spublish("sports", "x", waiter: "p2", from: other) == ["pub: SPUBLISH sports x"])
        // A classic PUBLISH of the same name waits for the pattern, not for the shard channel.
        #expect(h.run(h.m.publish(channel: buffer("news"), payload: buffer("c"), from: third, waiter: "p3", now: h.now)) == [])
        h.flush()
        #expect(h.confirm("news") == ["fill w1 nil", "pub: SPUBLISH news first"])
        #expect(h.confirm("*", kind: .pattern) == ["pub: PUBLISH news c"])
        #expect(h.m.heldPublishCount == 2)
    }

    /// The count: Redis's integer, plus this relay's shard clients but one, plus the other
    /// relays' as they told them (`s` entries).
    @Test func spublishCountsTheFleetsShardReceivers() {
        let h = ShardHarness()
        h.up()
        for i in 1...3 { _ = h.ssubscribe(TestClient(id: i), "s") }
        h.flush()
        _ = h.confirm("s")
        _ = h.run(h.m.fleetMessage(Self.message("fleet/1", "delta", "r2", "s", "s", "4", "c", "s", "7"), now: h.now))
        #expect(h.spublish("s", "m", waiter: "p", from: TestClient(id: 9)).last == "pub: SPUBLISH s m")
        // Redis: this relay and r2, 2; here 2 more, r2 3 more; the classic `c s 7` is not counted.
        #expect(h.answerPublisher(until: "p", redis: 2) == "fill p :7\r\n")
        #expect(h.m.malformedFleetMessages == 0)
    }

    @Test func resubscribeIncludesShardChannelsButNotTheFleetChannel() {
        let h = ShardHarness()
        h.up()
        let a = TestClient(id: 1)
        _ = h.ssubscribe(a, "s1")
        _ = h.ssubscribe(a, "ns:fleet")  // an app holding the fleet channel shares the relay's
        #expect(h.flush().first == "sub: SSUBSCRIBE s1")
        _ = h.confirm("s1")
        h.run(h.m.failed(h.id(.subscriber), reason: "connection closed by Redis", now: h.now))
        #expect(!h.m.isForwarding)
        h.now += second
        h.run(h.m.reconnectDue(h.id(.subscriber)))
        h.run(h.m.connected(h.id(.subscriber), now: h.now))
        _ = h.reply(.subscriber, .status(buffer("OK")))
        #expect(h.reply(.subscriber, .status(buffer("PONG"))) == ["sub: SSUBSCRIBE ns:fleet", "sub: SSUBSCRIBE s1"])
        _ = h.confirm("ns:fleet")
        #expect(!h.m.isForwarding)
        _ = h.confirm("s1")
        #expect(h.m.isForwarding)
        // The app leaving the fleet channel does not unsubscribe the relay's own.
        h.sunsubscribe(a, "ns:fleet")
        #expect(!h.flush().contains { $0.hasPrefix("sub:") })
    }

    @Test func aRefusedSsubscribeFailsTheCommandAndIsUndone() {
        let h = ShardHarness()
        h.up()
        let a = TestClient(id: 1)
        #expect(h.ssubscribe(a, "secret") == "w1")
        h.flush()
        let got = h.reply(.subscriber, .error(buffer("NOPERM this user has no permissions to access the 'secret' channel")))
        #expect(got.contains("undo 1 shard secret"))
        #expect(got.contains("fill w1 -NOPERM this user has no permissions to access the 'secret' channel\r\n"))
        #expect(h.log.contains { $0.contains("shard_channel=secret") })
    }

    /// An `sunsubscribe` nobody asked for (a Redis Cluster moving a slot) puts the link out of
    /// step: it reconnects and resubscribes.
    @Test func anUnaskedSunsubscribeDropsTheLink() {
        let h = ShardHarness()
        h.up()
        _ = h.ssubscribe(TestClient(id: 1), "s1")
        h.flush()
        _ = h.confirm("s1")
        #expect(h.confirm("s1", subscribe: false).contains("close sub"))
        #expect(h.m.lastError.contains("unsubscribed the shard channel 's1' unasked"))
    }

    @Test func degradedSpublishesAreDeliveredLocally() {
        let h = ShardHarness()
        h.up()
        _ = h.ssubscribe(TestClient(id: 1), "s")
        h.flush()
        #expect(h.spublish("s", "m", waiter: "p1", from: TestClient(id: 2)) == [])
        #expect(h.run(h.m.failed(h.id(.subscriber), reason: "gone", now: h.now)).last == "local spublish p1 s m")
    }

    @Test func shardQueriesGoFleetWide() {
        let h = ShardHarness()
        h.up()
        let got = h.run(h.m.answer(.shardnumsub([buffer("a")]), now: h.now) { "q1" } ?? [])
        #expect(got.count == 1 && got[0].hasPrefix("pub: EVAL ") && got[0].hasSuffix(" 0 ns SHARDNUMSUB \u{FFFD}s: a"))
        #expect(h.run(h.m.answer(.shardchannels(pattern: buffer("x*")), now: h.now) { "q2" } ?? []) == ["pub: PUBSUB SHARDCHANNELS x*"])
        _ = h.reply(.publisher, .array([.bulk(buffer("a")), .integer(1)]))
        // Redis lists the relays' own fleet channel: not shown to apps.
        #expect(h.reply(.publisher, .array([.bulk(buffer("ns:fleet")), .bulk(buffer("x1"))])) == ["reply q2 array of 1"])
    }

    static func message(_ parts: String...) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeRESPArrayHeader(parts.count)
        for p in parts { b.writeRESPBulk(p) }
        return b
    }
}
