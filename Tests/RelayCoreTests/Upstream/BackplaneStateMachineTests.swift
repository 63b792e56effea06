import NIOCore
import Testing
@testable import RelayCore

/// The backplane's logic without I/O: each test feeds events and reads the actions as short
/// lines (`sub: SUBSCRIBE a b`, `fill w1 nil`, …). Times are nanoseconds; waiters and callbacks
/// are labels.
private typealias Machine = BackplaneStateMachine<TestClient, String, String>

private let ms: UInt64 = 1_000_000
private let second: UInt64 = 1_000_000_000

private final class Harness {
    let registry = SubscriptionRegistry<TestClient>()
    var m: Machine
    var now: UInt64 = 1_000 * second
    var log: [String] = []
    /// Actions of the last event, without logs and state-change notices.
    var last: [String] = []
    /// Every action line since the test last cleared it.
    var all: [String] = []

    init(password: String? = nil, db: Int = 0, followsMaster: Bool = false) {
        m = Machine(settings: .init(relayID: "r1", password: password, db: db, namespace: "ns",
                                    timeoutNanoseconds: 3 * second, backoffCapMilliseconds: 5000,
                                    followsMaster: followsMaster),
                    registry: registry, now: now)
        m.random = { 1 }
    }

    @discardableResult
    func run(_ actions: [Machine.Action]) -> [String] {
        last = []
        for a in actions {
            switch a {
            case .connect(let id): last.append("connect \(id.role.rawValue)")
            case .connectAfter(let id, let delay): last.append("connect \(id.role.rawValue) after \(delay) ms")
            case .close(let id): last.append("close \(id.role.rawValue)")
            case .send(let id, let args):
                var shown = args.map { String(buffer: $0) }
                if shown.first == "SPUBLISH", args.count == 3 {
                    // A fleet message, shown decoded: `SPUBLISH ns:fleet state r1 c x 2`.
                    var payload = args[2]
                    var parser = RequestParser()
                    let parts = (try? parser.next(from: &payload)) ?? nil
                    shown = Array(shown.prefix(2)) + (parts ?? []).dropFirst().map { String(buffer: $0) }
                }
                last.append("\(id.role.rawValue): " + shown.joined(separator: " "))
            case .fill(let w, let bytes): last.append("fill \(w) " + (bytes.map { String(buffer: $0) } ?? "nil"))
            case .fillWithReply(let w, let reply): last.append("reply \(w) \(reply.text)")
            case .fillWithLocalAnswer(let w, _): last.append("local \(w)")
            case .undoSubscriptions(let c, _, let names):
                last.append("undo \(c.session.id) " + names.map { String(buffer: $0) }.joined(separator: ","))
            case .complete(let cb, let reply): last.append("complete \(cb) \(reply?.text ?? "nil")")
            case .log(let level, let message, let metadata):
                log.append("\(level) \(message) " + metadata.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            case .stateChanged: break
            case .notMaster(let reason): last.append("not master: \(reason)")
            case .publishLocally(let w, let channel, let payload, let sharded):
                last.append("local \(sharded ? "spublish" : "publish") \(w) \(String(buffer: channel)) \(String(buffer: payload))")
            case .slotLost(let reason): last.append("slot lost: \(reason)")
            case .redirected(let w, let channel, let payload, _, _, _):
                last.append("redirected \(w) \(String(buffer: channel)) \(String(buffer: payload))")
            }
        }
        all += last
        return last
    }

    func id(_ role: Machine.Role) -> Machine.ConnectionID {
        // The current attempt: generations count from 1 and grow by one per attempt.
        var g = 1
        while !m.isCurrent(.init(role: role, generation: g)) { g += 1 }
        return .init(role: role, generation: g)
    }

    func reply(_ role: Machine.Role, _ r: UpstreamReply) -> [String] { run(m.received(id(role), r, now: now)) }
    func ok(_ role: Machine.Role) -> [String] { reply(role, .status(buffer("OK"))) }
    func pong(_ role: Machine.Role) -> [String] { reply(role, .status(buffer("PONG"))) }
    func confirm(_ name: String, kind: SubscriptionKind = .channel, subscribe: Bool = true) -> [String] {
        reply(.subscriber, .confirmation(kind, subscribe: subscribe, name: buffer(name)))
    }

    /// Both connections up and through their handshakes.
    func up() {
        run(m.start(now: now))
        for role in Machine.Role.allCases {
            run(m.connected(id(role), now: now))
            _ = ok(role)     // CLIENT SETNAME
            _ = pong(role)   // the handshake's PING
        }
        // The publisher's fleet-count rewrite (MULTI … EXEC) and its state on the fleet channel
        // are answered; the subscriber's SSUBSCRIBE of the fleet channel is confirmed, which
        // makes the publisher say hello.
        for _ in 0..<5 { _ = ok(.publisher) }
        _ = reply(.publisher, .integer(0))
        _ = fleetSubscribed()
        _ = reply(.publisher, .integer(0))
    }

    /// Redis's confirmation of the subscriber's `SSUBSCRIBE ns:fleet`.
    func fleetSubscribed() -> [String] {
        reply(.subscriber, .array([.bulk(buffer("ssubscribe")), .bulk(buffer("ns:fleet")), .integer(1)]))
    }

    let publisher = TestClient(id: 99)

    func publish(_ channel: String, _ payload: String, waiter: String, from client: TestClient? = nil, sharded: Bool = false) -> [String] {
        run(m.publish(channel: buffer(channel), payload: buffer(payload), sharded: sharded, from: client ?? publisher, waiter: waiter, now: now))
    }

    /// A message from another relay on the fleet channel.
    func fleetMessage(_ parts: String...) -> [String] {
        var b = ByteBuffer()
        b.writeRESPArrayHeader(parts.count)
        for p in parts { b.writeRESPBulk(p) }
        return run(m.fleetMessage(b, now: now))
    }

    func subscribe(_ client: TestClient, _ names: String..., kind: SubscriptionKind = .channel) -> (added: [ByteBuffer], waiter: String?) {
        var added: [ByteBuffer] = []
        for n in names {
            let change = registry.add(kind, client, buffer(n))
            if case .added(let first) = change {
                run(m.subscriptionAdded(kind, buffer(n), first: first, by: client, now: now) { "fleet\(client.session.id)" })
                added.append(buffer(n))
            }
        }
        let pending = m.pendingNames(kind, added)
        guard !pending.isEmpty else { return (added, nil) }
        let w = "w\(client.session.id)"
        m.hold(kind, names: added, pending: pending, for: client, waiter: w)
        return (added, w)
    }

    func flush() -> [String] { run(m.flush(now: now)) }
    func tick(heard: UInt64? = nil) -> [String] { run(m.tick(now: now) { _ in heard }) }
}

@Suite struct BackplaneStateMachineTests {
    @Test func handshakeLogsInNamesAndPings() {
        let h = Harness(password: "pw", db: 2)
        #expect(h.run(h.m.start(now: h.now)) == ["connect sub", "connect pub"])
        #expect(h.run(h.m.connected(h.id(.publisher), now: h.now)) == [
            "pub: AUTH pw", "pub: SELECT 2", "pub: CLIENT SETNAME pubsub-relay:r1:pub", "pub: PING"])
        #expect(h.run(h.m.connected(h.id(.subscriber), now: h.now)) == [
            "sub: AUTH pw", "sub: CLIENT SETNAME pubsub-relay:r1:sub", "sub: PING"])
        _ = h.ok(.publisher); _ = h.ok(.publisher); _ = h.ok(.publisher)
        // The publisher's PONG: it rewrites this relay's fleet counts and is ready.
        // The publisher's PONG: it rewrites this relay's fleet counts, tells the fleet its (empty)
        // state, and is ready.
        #expect(h.pong(.publisher) == ["pub: MULTI", "pub: DEL ns:numsub:r1", "pub: PEXPIRE ns:numsub:r1 5000",
                                       "pub: SADD ns:relays r1", "pub: EXEC", "pub: SPUBLISH ns:fleet state r1"])
        #expect(h.m.isPublisherReady && !h.m.isForwarding)
        _ = h.ok(.subscriber); _ = h.ok(.subscriber)
        #expect(h.pong(.subscriber) == ["sub: SSUBSCRIBE ns:fleet"])
        #expect(h.m.isForwarding && h.m.degradedSince == nil && !h.m.countsFleetReceivers)
        // Subscribed to the fleet channel: it asks the other relays for their states.
        #expect(h.fleetSubscribed() == ["pub: SPUBLISH ns:fleet hello r1"])
        #expect(h.m.countsFleetReceivers)
    }

    @Test func wrongPasswordFailsTheAttemptAndBacksOff() {
        let h = Harness(password: "bad")
        h.run(h.m.start(now: h.now))
        h.run(h.m.connected(h.id(.subscriber), now: h.now))
        #expect(h.reply(.subscriber, .error(buffer("WRONGPASS invalid username-password pair"))) == [
            "close sub", "connect sub after 50 ms"])
        #expect(h.m.lastError == "Redis refused AUTH: WRONGPASS invalid username-password pair")
        #expect(h.log.contains { $0.hasPrefix("warning redis subscriber connection down") })
    }

    @Test func subscriptionsAreReferenceCountedAndBatchedPerTick() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        h.all = []
        _ = h.subscribe(a, "x", "y")
        _ = h.subscribe(b, "x")
        _ = h.subscribe(b, "n*", kind: .pattern)
        h.flush()
        let sent = h.all
        #expect(Array(sent.prefix(2)) == ["sub: SUBSCRIBE x y", "sub: PSUBSCRIBE n*"])
        #expect(Set(sent.dropFirst(2).prefix(3)) == ["pub: HSET ns:numsub:r1 x 2 y 1", "pub: PEXPIRE ns:numsub:r1 5000", "pub: SADD ns:relays r1"]
            || Set(sent.dropFirst(2).prefix(3)) == ["pub: HSET ns:numsub:r1 y 1 x 2", "pub: PEXPIRE ns:numsub:r1 5000", "pub: SADD ns:relays r1"])
        // The fleet hears of x's second client and of the pattern (y's one client Redis counts).
        #expect(sent.last == "pub: SPUBLISH ns:fleet delta r1 c x 2 p n* 1" || sent.last == "pub: SPUBLISH ns:fleet delta r1 p n* 1 c x 2")
        // Only the last local holder's leaving goes upstream.
        _ = h.registry.unsubscribe(a, channel: buffer("x"))
        h.run(h.m.subscriptionRemoved(.channel, buffer("x"), last: false, now: h.now))
        _ = h.registry.unsubscribe(b, channel: buffer("x"))
        h.run(h.m.subscriptionRemoved(.channel, buffer("x"), last: true, now: h.now))
        #expect(h.flush().first == "sub: UNSUBSCRIBE x")
    }

    @Test func confirmationsWaitForRedis() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        let (_, wa) = h.subscribe(a, "x", "y")
        let (_, wb) = h.subscribe(b, "x")
        #expect(wa == "w1" && wb == "w2")
        h.flush()
        _ = h.ok(.publisher); _ = h.ok(.publisher); _ = h.ok(.publisher)
        // The fleet-count write and the fleet message (x has two clients) release the fleet
        // waiters; the confirmations still wait.
        #expect(h.reply(.publisher, .integer(0)) == ["fill fleet1 nil", "fill fleet2 nil"])
        #expect(h.confirm("x") == ["fill w2 nil"])
        #expect(h.confirm("y") == ["fill w1 nil"])
        #expect(h.m.pendingConfirmations == 0)
        // Already held upstream: nothing to wait for.
        #expect(h.subscribe(TestClient(id: 3), "x").waiter == nil)
    }

    @Test func aRefusedBatchIsRetriedNameByNameAndOnlyTheRefusedCommandFails() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = h.subscribe(a, "app:1")
        _ = h.subscribe(b, "app:2", "secret")
        #expect(h.flush().first == "sub: SUBSCRIBE app:1 app:2 secret")
        let noperm = UpstreamReply.error(buffer("NOPERM this user has no permissions to access one of the channels used as arguments"))
        #expect(h.reply(.subscriber, noperm) == ["sub: SUBSCRIBE app:1", "sub: SUBSCRIBE app:2", "sub: SUBSCRIBE secret"])
        #expect(h.confirm("app:1") == ["fill w1 nil"])
        #expect(h.confirm("app:2") == [])
        // The refusal of `secret` fails b's whole command, as on Redis: app:2 is dropped again.
        #expect(h.reply(.subscriber, noperm) == [
            "undo 2 app:2,secret",
            "fill w2 -NOPERM this user has no permissions to access one of the channels used as arguments\r\n"])
        #expect(h.m.refusedSubscriptions == 1 && h.m.isForwarding)
        #expect(h.log.filter { $0.hasPrefix("warning redis refused a subscription") }.count == 1)
    }

    @Test func publishesArePipelinedAndAnsweredInOrder() {
        let h = Harness()
        h.up()
        for i in 1...3 {
            #expect(h.publish("c", "m\(i)", waiter: "p\(i)") == ["pub: PUBLISH c m\(i)"])
        }
        #expect(h.reply(.publisher, .integer(2)) == ["fill p1 :2\r\n"])
        #expect(h.reply(.publisher, .error(buffer("NOPERM no"))) == ["reply p2 NOPERM no"])
        #expect(h.reply(.publisher, .integer(0)) == ["fill p3 :0\r\n"])
    }

    @Test func aPublishInFlightWhenTheConnectionDropsIsAnsweredZero() {
        let h = Harness()
        h.up()
        h.publish("c", "m", waiter: "p1")
        #expect(h.run(h.m.failed(h.id(.publisher), reason: "connection closed by Redis", now: h.now)) == [
            "close pub", "connect pub after 50 ms", "fill p1 :0\r\n"])
        #expect(h.m.unconfirmedPublishes == 1 && !h.m.isForwarding)
        #expect(h.log.contains { $0.hasPrefix("error redis backplane lost") })
    }

    @Test func degradedSubscriberConfirmsLocallyAndResubscribesOnReturn() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1)
        let (_, w) = h.subscribe(a, "x")
        h.flush()
        // The subscriber drops with x in flight: a's confirmation is released (degraded).
        #expect(h.run(h.m.failed(h.id(.subscriber), reason: "connection closed by Redis", now: h.now)).contains("fill \(w!) nil"))
        #expect(!h.m.isForwarding)
        // Meanwhile another subscription is only local.
        #expect(h.subscribe(a, "y").waiter == nil)
        h.now += 100 * ms
        #expect(h.run(h.m.reconnectDue(h.id(.subscriber))) == ["connect sub"])
        h.run(h.m.connected(h.id(.subscriber), now: h.now))
        _ = h.ok(.subscriber)
        let resubscribe = h.pong(.subscriber)
        #expect(resubscribe.count == 2 && resubscribe[0] == "sub: SSUBSCRIBE ns:fleet")
        let names = resubscribe[1].split(separator: " ").dropFirst(2).map(String.init)
        #expect(resubscribe[1].hasPrefix("sub: SUBSCRIBE ") && Set(names) == ["x", "y"])
        #expect(h.m.phase(.subscriber) == .syncing && !h.m.isForwarding)
        #expect(h.fleetSubscribed() == ["pub: SPUBLISH ns:fleet hello r1"])
        for name in names { _ = h.confirm(name) }
        #expect(h.m.isForwarding && h.m.gaps == 1 && h.m.reconnects == 1)
        #expect(h.log.contains { $0.hasPrefix("notice redis backplane restored") })
    }

    @Test func aSilentRedisIsDeclaredHungAfterTheTimeout() {
        let h = Harness()
        h.up()
        let heard = h.now
        h.now += 1 * second
        #expect(h.tick(heard: heard).contains("sub: PING"))
        // Silent since: the PING's deadline runs out 3 s after it was sent.
        for _ in 0..<29 {
            h.now += 100 * ms
            #expect(!h.tick(heard: heard).contains("close sub"))
        }
        h.now += 200 * ms
        #expect(h.tick(heard: heard).prefix(2) == ["close sub", "connect sub after 50 ms"])
        #expect(h.m.lastError.hasPrefix("no reply from Redis within 3.000 s"))
    }

    @Test func aRedisBusySendingIsNotHung() {
        let h = Harness()
        h.up()
        // A PING goes unanswered for 5 s, but bytes keep arriving (a burst the relay reads slowly).
        h.now += 1 * second
        _ = h.tick(heard: h.now)
        for _ in 0..<40 {
            h.now += 100 * ms
            #expect(!h.tick(heard: h.now - 50 * ms).contains("close sub"))
        }
    }

    @Test func aStallOfTheRelayItselfIsNotBlamedOnRedis() {
        let h = Harness()
        h.up()
        h.publish("c", "m", waiter: "p1")
        // The loop was frozen for 10 s (no tick ran): the first tick after restarts the clock.
        h.now += 10 * second
        #expect(!h.tick(heard: h.now - 10 * second).contains("close pub"))
        h.now += 1 * second
        #expect(!h.tick(heard: h.now - 11 * second).contains("close pub"))
    }

    @Test func theGapStartsWhenTheLinkWasLastKnownGood() {
        let h = Harness()
        h.up()
        let lastBytes = h.now + 200 * ms
        h.now += 300 * ms
        _ = h.tick(heard: lastBytes)
        // Redis cut the subscriber (its output limit) while the relay was frozen for 4 s; a tick
        // runs first after the freeze, then the stale bytes and the end of the connection.
        h.now += 4 * second
        _ = h.tick(heard: lastBytes)
        h.now += 5 * ms
        h.run(h.m.failed(h.id(.subscriber), reason: "connection closed by Redis", lastHeard: h.now, now: h.now))
        h.now += 100 * ms
        h.run(h.m.reconnectDue(h.id(.subscriber)))
        h.run(h.m.connected(h.id(.subscriber), now: h.now))
        _ = h.ok(.subscriber)
        _ = h.pong(.subscriber)
        #expect(h.m.isForwarding)
        #expect(h.m.gapSecondsTotal >= 4.1, "gap \(h.m.gapSecondsTotal)")
    }

    @Test func aConnectionCutRightAfterItsHandshakeBacksOffMoreEachTime() {
        let h = Harness()
        h.up()
        var delays: [String] = []
        for _ in 0..<6 {
            h.now += 20 * ms
            let actions = h.run(h.m.failed(h.id(.subscriber), reason: "killed", now: h.now))
            delays += actions.filter { $0.hasPrefix("connect sub after") }
            h.run(h.m.reconnectDue(h.id(.subscriber)))
            h.run(h.m.connected(h.id(.subscriber), now: h.now))
            _ = h.ok(.subscriber)
            _ = h.pong(.subscriber)
        }
        #expect(delays == ["connect sub after 50 ms", "connect sub after 100 ms", "connect sub after 200 ms",
                           "connect sub after 400 ms", "connect sub after 800 ms", "connect sub after 1600 ms"])
    }

    @Test func fleetWideNumsubIsGatheredFromBoundedEvals() {
        let h = Harness()
        h.up()
        let channels = (0..<1500).map { buffer("c\($0)") }
        let actions = h.run(h.m.answer(.numsub(channels), now: h.now) { "q" }!)
        #expect(actions.count == 2 && actions.allSatisfy { $0.hasPrefix("pub: EVAL") })
        #expect(h.reply(.publisher, .array([.bulk(buffer("c0")), .integer(3)])) == [])
        #expect(h.reply(.publisher, .array([.bulk(buffer("c1")), .integer(0)])) == [
            "fill q *4\r\n$2\r\nc0\r\n:3\r\n$2\r\nc1\r\n:0\r\n"])
        // A failed part: the relay's own count answers.
        h.run(h.m.answer(.numsub(channels), now: h.now) { "q2" }!)
        _ = h.reply(.publisher, .error(buffer("NOSCRIPT")))
        #expect(h.reply(.publisher, .array([])) == ["local q2"])
    }

    @Test func degradedRelayAnswersPubsubQuestionsLocally() {
        let h = Harness()
        h.run(h.m.start(now: h.now))
        #expect(h.m.answer(.numpat, now: h.now) { "q" } == nil)
        #expect(h.run(h.m.request([buffer("GET"), buffer("k")], "lease", now: h.now)) == ["complete lease nil"])
    }

    @Test func stopRemovesTheFleetCountsAndCloses() {
        let h = Harness()
        h.up()
        #expect(h.run(h.m.stop()) == ["pub: DEL ns:numsub:r1", "pub: SREM ns:relays r1", "close sub", "close pub"])
        #expect(h.run(h.m.reconnectDue(h.id(.subscriber))) == [])
    }
}

/// Redis Sentinel (README, "Redis Sentinel"): the machine's side of following a master.
/// PUBLISH in fleet mode: it waits for the subscriptions in flight that affect it, and its count
/// is the fleet's receivers (README, "PUBLISH's count in fleet mode").
@Suite struct BackplaneStateMachinePublishTests {
    @Test func aPublishWaitsForASubscriptionInFlightAndKeepsItsClientsOrder() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1), other = TestClient(id: 2)
        _ = h.subscribe(a, "news")
        // Queued for the end of the tick, then in flight: either way the PUBLISH waits for it.
        #expect(h.publish("news", "first", waiter: "p1", from: a) == [])
        #expect(h.flush().first == "sub: SUBSCRIBE news")
        // The same client's next PUBLISH waits behind it; another client's goes at once.
        #expect(h.publish("sports", "second", waiter: "p2", from: a) == [])
        #expect(h.publish("sports", "third", waiter: "p3", from: other) == ["pub: PUBLISH sports third"])
        #expect(h.m.heldPublishCount == 2)
        #expect(h.confirm("news") == ["fill w1 nil", "pub: PUBLISH news first", "pub: PUBLISH sports second"])
    }

    @Test func aPendingPatternHoldsTheChannelsItMatchesOnly() {
        let h = Harness()
        h.up()
        _ = h.subscribe(TestClient(id: 1), "n*", kind: .pattern)
        h.flush()
        #expect(h.publish("news", "m", waiter: "p1") == [])
        #expect(h.publish("zoo", "m", waiter: "p2", from: TestClient(id: 3)) == ["pub: PUBLISH zoo m"])
        #expect(h.confirm("n*", kind: .pattern).contains("pub: PUBLISH news m"))
    }

    @Test func anUnsubscribeInFlightHoldsThePublishSoItCountsNoOne() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1)
        _ = h.subscribe(a, "x")
        h.flush()
        _ = h.confirm("x")
        // UNSUBSCRIBE x then PUBLISH x, pipelined: Redis must see them in that order.
        _ = h.registry.unsubscribe(a, channel: buffer("x"))
        h.run(h.m.subscriptionRemoved(.channel, buffer("x"), last: true, now: h.now))
        #expect(h.publish("x", "m", waiter: "p1", from: a) == [])
        #expect(h.flush().first == "sub: UNSUBSCRIBE x")
        #expect(h.confirm("x", subscribe: false) == ["pub: PUBLISH x m"])
        // Skip the fleet-count write's replies queued before the PUBLISH.
        while true {
            let got = h.reply(.publisher, .integer(0))
            if got != [] && got != ["fill fleet1 nil"] {
                #expect(got == ["fill p1 :0\r\n"])
                break
            }
        }
    }

    @Test func heldPublishesAreDeliveredLocallyWhenTheLinkDrops() {
        let h = Harness()
        h.up()
        _ = h.subscribe(TestClient(id: 1), "x")
        h.flush()
        #expect(h.publish("x", "m", waiter: "p1") == [])
        let dropped = h.run(h.m.failed(h.id(.subscriber), reason: "connection closed by Redis", now: h.now))
        #expect(dropped.last == "local publish p1 x m")
    }

    @Test func theCountAddsTheClientsRedisDoesNotSee() {
        let h = Harness()
        h.up()
        let clients = (1...3).map { TestClient(id: $0) }
        for c in clients.prefix(2) { _ = h.subscribe(c, "x") }
        for c in clients { _ = h.subscribe(c, "x*", kind: .pattern) }
        h.flush()
        _ = h.confirm("x")
        _ = h.confirm("x*", kind: .pattern)
        #expect(h.publish("x", "m", waiter: "p2") == ["pub: PUBLISH x m"])
        // The fleet-count write and fleet message went before the PUBLISH: answered first.
        while h.m.pendingPublisherReplies > 1 { _ = h.reply(.publisher, .integer(0)) }
        // Redis counts the relay once for x and once for x*: 2; the relay has 2 + 3 receivers.
        #expect(h.reply(.publisher, .integer(2)) == ["fill p2 :5\r\n"])
        // A direct subscriber of Redis's own makes it 3 there, 6 here.
        #expect(h.publish("x", "m", waiter: "p3") == ["pub: PUBLISH x m"])
        #expect(h.reply(.publisher, .integer(3)) == ["fill p3 :6\r\n"])
    }

    @Test func theOtherRelaysReceiversAreAddedFromWhatTheyTold() {
        let h = Harness()
        h.up()
        #expect(h.fleetMessage("fleet/1", "state", "r2", "c", "x", "3", "p", "x*", "2", "p", "y*", "4") == [])
        #expect(h.m.knownFleetRelays == 1)
        func count(_ redis: Int) -> String {
            h.publish("x", "m", waiter: "p")
            return h.reply(.publisher, .integer(redis)).first ?? ""
        }
        // r2's three clients of x and two of x* are counted by Redis as 2.
        #expect(count(2) == "fill p :5\r\n")
        #expect(h.fleetMessage("fleet/1", "delta", "r2", "c", "x", "1") == [])
        #expect(count(2) == "fill p :3\r\n")
        // This relay's own messages are ignored; a malformed one is counted.
        #expect(h.fleetMessage("fleet/1", "delta", "r1", "c", "x", "9") == [])
        #expect(h.fleetMessage("fleet/1", "delta", "r2", "c", "x") == [])
        #expect(h.m.malformedFleetMessages == 1)
        #expect(count(2) == "fill p :3\r\n")
        // A relay that goes quiet is forgotten after the fleet TTL; `bye` forgets at once.
        h.now += 6 * second
        for line in h.tick() where line.hasPrefix("pub: ") { _ = h.ok(.publisher) }   // the fleet-count refresh
        #expect(h.m.knownFleetRelays == 0 && count(2) == "fill p :2\r\n")
        #expect(h.fleetMessage("fleet/1", "state", "r3", "p", "x*", "5") == [])
        #expect(count(1) == "fill p :5\r\n")
        #expect(h.fleetMessage("fleet/1", "bye", "r3") == [])
        #expect(count(1) == "fill p :1\r\n")
        // A forgotten relay that turns out alive (it was stopped past the TTL): the states are
        // asked for again, at most once a second.
        #expect(h.fleetMessage("fleet/1", "alive", "r2") == ["pub: SPUBLISH ns:fleet hello r1"])
        _ = h.reply(.publisher, .integer(1))
        #expect(h.fleetMessage("fleet/1", "alive", "r4") == [])
    }

    @Test func aHelloIsAnsweredWithThisRelaysStateAndAliveKeepsItKnown() {
        let h = Harness()
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = h.subscribe(a, "x")
        _ = h.subscribe(b, "x")
        h.flush()
        #expect(h.fleetMessage("fleet/1", "hello", "r2") == ["pub: SPUBLISH ns:fleet state r1 c x 2"])
        h.now += 1 * second
        #expect(h.tick().contains("pub: SPUBLISH ns:fleet alive r1"))
        // On a clean stop the fleet forgets this relay at once.
        #expect(h.run(h.m.stop()).contains("pub: SPUBLISH ns:fleet bye r1"))
    }

    @Test func withoutShardedPubSubTheCountIsThisRelaysOnly() {
        let h = Harness()
        h.run(h.m.start(now: h.now))
        for role in Machine.Role.allCases {
            h.run(h.m.connected(h.id(role), now: h.now))
            _ = h.ok(role)
            _ = h.pong(role)
        }
        for _ in 0..<5 { _ = h.ok(.publisher) }
        // Redis 6: no SPUBLISH, no SSUBSCRIBE.
        _ = h.reply(.publisher, .error(buffer("ERR unknown command 'SPUBLISH', with args beginning with: ")))
        _ = h.reply(.subscriber, .error(buffer("ERR unknown command 'SSUBSCRIBE', with args beginning with: ")))
        #expect(h.m.isForwarding && !h.m.countsFleetReceivers)
        #expect(h.log.filter { $0.hasPrefix("warning redis: no sharded pub/sub") }.count == 1)
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = h.subscribe(a, "x")
        _ = h.subscribe(b, "x")
        #expect(!h.flush().contains { $0.contains("SPUBLISH") })
    }
}

@Suite struct BackplaneStateMachineSentinelTests {
    private static let master: UpstreamReply = .array([.bulk(buffer("master")), .integer(0), .array([])])

    /// Both connections through their handshakes, ROLE answered `master`.
    private func upOnMaster(_ h: Harness) {
        h.run(h.m.start(now: h.now))
        h.run(h.m.masterChanged(shown: "10.0.0.1:6379", now: h.now))
        for role in Machine.Role.allCases {
            h.run(h.m.connected(h.id(role), now: h.now))
            _ = h.ok(role)                    // CLIENT SETNAME
            _ = h.reply(role, Self.master)    // ROLE
            _ = h.pong(role)
        }
        for _ in 0..<5 { _ = h.ok(.publisher) }
        _ = h.reply(.publisher, .integer(0))   // state
        _ = h.fleetSubscribed()
        _ = h.reply(.publisher, .integer(0))   // hello
    }

    @Test func nothingConnectsBeforeTheSentinelsNameAMaster() {
        let h = Harness(followsMaster: true)
        #expect(h.run(h.m.start(now: h.now)) == [])
        #expect(h.run(h.m.masterChanged(shown: "10.0.0.1:6379", now: h.now)) == ["connect sub", "connect pub"])
        #expect(h.m.masterSwitches == 0, "the first master is no switch")
    }

    @Test func theHandshakeChecksRoleAndAReplicaIsRefused() {
        let h = Harness(followsMaster: true)
        h.run(h.m.start(now: h.now))
        h.run(h.m.masterChanged(shown: "10.0.0.1:6379", now: h.now))
        #expect(h.run(h.m.connected(h.id(.publisher), now: h.now)) == [
            "pub: CLIENT SETNAME pubsub-relay:r1:pub", "pub: ROLE", "pub: PING"])
        _ = h.ok(.publisher)
        let slave: UpstreamReply = .array([.bulk(buffer("slave")), .bulk(buffer("10.0.0.2")), .integer(6379)])
        #expect(h.reply(.publisher, slave) == ["close pub", "connect pub after 50 ms", "not master: ROLE answered slave"])
        #expect(h.m.lastError == "the node is not a master: ROLE answered slave")
        #expect(!h.m.isPublisherReady)
        // Without Sentinel no ROLE is sent.
        let plain = Harness()
        plain.run(plain.m.start(now: plain.now))
        #expect(!plain.run(plain.m.connected(plain.id(.publisher), now: plain.now)).contains("pub: ROLE"))
    }

    @Test func aSwitchReconnectsBothAtOnceAndResubscribes() {
        let h = Harness(followsMaster: true)
        upOnMaster(h)
        let a = TestClient(id: 1)
        _ = h.subscribe(a, "x")
        h.flush()
        _ = h.confirm("x")
        #expect(h.m.isForwarding)
        let moved = h.run(h.m.masterChanged(shown: "10.0.0.2:6379", now: h.now))
        // (The client's wait for its fleet-count write is released with the publisher connection.)
        #expect(moved == ["close sub", "connect sub after 0 ms", "close pub", "connect pub after 0 ms", "fill fleet1 nil"])
        #expect(h.m.masterSwitches == 1 && !h.m.isForwarding)
        #expect(h.log.contains { $0.hasPrefix("notice redis master switched: reconnecting both connections to the new master master=10.0.0.2:6379 master_switches=1") })
        // The backoff did not grow: a later ordinary failure still waits the base step.
        h.run(h.m.reconnectDue(h.id(.subscriber)))
        h.run(h.m.connected(h.id(.subscriber), now: h.now))
        _ = h.ok(.subscriber)
        _ = h.reply(.subscriber, Self.master)
        #expect(h.pong(.subscriber) == ["sub: SSUBSCRIBE ns:fleet", "sub: SUBSCRIBE x"], "every subscription re-established on the new master")
    }

    @Test func readOnlyOnThePublisherLeavesTheNodeAndAnswersLocally() {
        let h = Harness(followsMaster: true)
        upOnMaster(h)
        h.publish("c", "p", waiter: "w1")
        let refused = h.reply(.publisher, .error(buffer("READONLY You can't write against a read only replica.")))
        #expect(refused == ["close pub", "connect pub after 50 ms", "fill w1 :0\r\n", "not master: -READONLY"])
        #expect(h.m.lastError == "the node answered -READONLY: it is a replica now")
        #expect(h.m.unconfirmedPublishes == 1, "the PUBLISH in flight is answered 0")
        // Without Sentinel a READONLY is Redis's answer like any other.
        let plain = Harness()
        plain.up()
        plain.publish("c", "p", waiter: "w1")
        #expect(plain.reply(.publisher, .error(buffer("READONLY x"))) == ["reply w1 READONLY x"])
    }

    @Test func aSwitchDuringAnOutageConnectsAtOnceInsteadOfWaiting() {
        let h = Harness(followsMaster: true)
        upOnMaster(h)
        h.run(h.m.failed(h.id(.publisher), reason: "connection closed by Redis", now: h.now))
        #expect(h.m.phase(.publisher) == .down)
        #expect(h.run(h.m.masterChanged(shown: "10.0.0.2:6379", now: h.now)) == [
            "close sub", "connect sub after 0 ms", "connect pub"])
    }
}
