import NIOCore
import Testing
@testable import RelayCore

/// The backplane machine scoped to one Redis Cluster master (`NodeScope`), as `ClusterBackplane`
/// drives one per master: what each master's subscriber and publisher carry, how a slot map
/// change moves subscriptions, and what the cluster's redirections do to PUBLISH and SSUBSCRIBE.
/// Actions are read as short lines (`sub: SSUBSCRIBE a`, `fill w1 nil`, `slot lost: …`).
private typealias Machine = BackplaneStateMachine<TestClient, String, String>

private let second: UInt64 = 1_000_000_000

/// The namespace as the cluster backplane gives it: one hash tag for the fleet's keys and channel.
private let namespace = "{ns}"
private let fleetChannel = "{ns}:fleet"

/// A name's hash slot, as Redis computes it.
private func slot(_ name: String) -> Int { ClusterSlot.of(Array(name.utf8)) }

/// A slot map in which this master serves the slots of `names`, and no other.
private func serving(_ names: String...) -> [Bool] {
    var slots = NodeScope.noSlots
    for name in names { slots[slot(name)] = true }
    return slots
}

private final class ClusterHarness {
    let registry = SubscriptionRegistry<TestClient>()
    var m: Machine
    var now: UInt64 = 1_000 * second
    var log: [String] = []
    /// Every action line since the test last cleared it.
    var all: [String] = []

    init(scope: NodeScope) {
        m = Machine(settings: .init(relayID: "r1", namespace: namespace, timeoutNanoseconds: 3 * second,
                                    backoffCapMilliseconds: 5000, scope: scope),
                    registry: registry, now: now)
        m.random = { 1 }
    }

    convenience init(home: Bool, sharded: Bool = true, slots: [Bool]) {
        self.init(scope: NodeScope(home: home, channelsSharded: sharded, slots: slots))
    }

    @discardableResult
    func run(_ actions: [Machine.Action]) -> [String] {
        var last: [String] = []
        for a in actions {
            switch a {
            case .connect(let id): last.append("connect \(id.role.rawValue)")
            case .connectAfter(let id, let delay): last.append("connect \(id.role.rawValue) after \(delay) ms")
            case .close(let id): last.append("close \(id.role.rawValue)")
            case .send(let id, let args):
                var shown = args.map { String(buffer: $0) }
                if shown.first == "SPUBLISH", args.count == 3, shown[1] == fleetChannel {
                    // A fleet message, shown decoded: `SPUBLISH {ns}:fleet state r1 p p* 1`.
                    var payload = args[2]
                    var parser = RequestParser()
                    shown = Array(shown.prefix(2)) + (((try? parser.next(from: &payload)) ?? nil) ?? []).dropFirst().map { String(buffer: $0) }
                }
                last.append("\(id.role.rawValue): " + shown.joined(separator: " "))
            case .fill(let w, let bytes): last.append("fill \(w) " + (bytes.map { String(buffer: $0) } ?? "nil"))
            case .fillWithReply(let w, let reply): last.append("reply \(w) \(reply.text)")
            case .fillWithLocalAnswer(let w, _): last.append("local \(w)")
            case .undoSubscriptions(let c, let kind, let names):
                last.append("undo \(c.session.id) \(kind) " + names.map { String(buffer: $0) }.joined(separator: ","))
            case .complete(let cb, let reply): last.append("complete \(cb) \(reply?.text ?? "nil")")
            case .log(let level, let message, let metadata):
                log.append("\(level) \(message) " + metadata.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
            case .stateChanged: break
            case .notMaster(let reason): last.append("not master: \(reason)")
            case .publishLocally(let w, let channel, let payload, let sharded):
                last.append("local \(sharded ? "spublish" : "publish") \(w) \(String(buffer: channel)) \(String(buffer: payload))")
            case .slotLost(let reason): last.append("slot lost: \(reason)")
            case .redirected(let w, let channel, let payload, let sharded, let alsoClassic, let echo):
                last.append("redirected \(w) \(String(buffer: channel)) \(String(buffer: payload)) sharded=\(sharded) classic=\(alsoClassic) echo=\(echo)")
            }
        }
        all += last
        return last
    }

    func id(_ role: Machine.Role) -> Machine.ConnectionID {
        var g = 1
        while !m.isCurrent(.init(role: role, generation: g)) { g += 1 }
        return .init(role: role, generation: g)
    }

    func reply(_ role: Machine.Role, _ r: UpstreamReply) -> [String] { run(m.received(id(role), r, now: now)) }
    func error(_ role: Machine.Role, _ text: String) -> [String] { reply(role, .error(buffer(text))) }
    func confirm(_ name: String, kind: SubscriptionKind = .shard, subscribe: Bool = true) -> [String] {
        reply(.subscriber, .confirmation(kind, subscribe: subscribe, name: buffer(name)))
    }

    /// A connection's handshake (CLIENT SETNAME, PING) answered; returns what its PONG sent.
    func handshake(_ role: Machine.Role) -> [String] {
        run(m.connected(id(role), now: now))
        _ = reply(role, .status(buffer("OK")))
        return reply(role, .status(buffer("PONG")))
    }

    /// Confirms, in order, every name of the subscription commands among `lines`.
    func confirmAll(_ lines: [String]) {
        for line in lines {
            let words = line.split(separator: " ").map(String.init)
            guard words.first == "sub:", words.count > 2 else { continue }
            let kind: SubscriptionKind
            switch words[1] {
            case "SUBSCRIBE": kind = .channel
            case "PSUBSCRIBE": kind = .pattern
            case "SSUBSCRIBE": kind = .shard
            default: continue
            }
            for name in words.dropFirst(2) { _ = confirm(name, kind: kind) }
        }
    }

    /// Answers everything the publisher waits for (fleet-count writes, fleet messages).
    func answerPublisher() {
        while m.pendingPublisherReplies > 0 { _ = reply(.publisher, .integer(0)) }
    }

    /// Both connections up, every resubscription confirmed and the publisher answered.
    func up() {
        run(m.start(now: now))
        let subscribed = handshake(.subscriber)
        _ = handshake(.publisher)
        confirmAll(subscribed)
        answerPublisher()
        #expect(m.isForwarding)
    }

    /// `client` now holds `name` (registry and machine, as the executor and the edge do it);
    /// returns the waiter its confirmation waits in, if any.
    @discardableResult
    func add(_ client: TestClient, _ name: String, kind: SubscriptionKind = .channel,
             bookkeeping: Bool = true, upstream: Bool = true) -> String? {
        guard case .added(let first) = registry.add(kind, client, buffer(name)) else { return nil }
        run(m.subscriptionAdded(kind, buffer(name), first: first, by: client, now: now, bookkeeping: bookkeeping,
                                upstream: upstream) { "fleet\(client.session.id)" })
        let pending = m.pendingNames(kind, [buffer(name)])
        guard !pending.isEmpty else { return nil }
        let w = "w\(client.session.id)"
        m.hold(kind, names: [buffer(name)], pending: pending, for: client, waiter: w)
        return w
    }

    func remove(_ client: TestClient, _ name: String, kind: SubscriptionKind = .channel) {
        guard case .removed(let last) = registry.remove(kind, client, buffer(name)) else { return }
        run(m.subscriptionRemoved(kind, buffer(name), last: last, now: now))
    }

    /// Holds `name` in the registry only (before the machine starts).
    func hold(_ client: TestClient, _ name: String, kind: SubscriptionKind = .channel) {
        _ = registry.add(kind, client, buffer(name))
    }

    /// The client of every PUBLISH (one instance: the machine keeps a client's publishes in order).
    let publisher = TestClient(id: 99)

    func publish(_ channel: String, _ payload: String, waiter: String, sharded: Bool = true, alsoClassic: Bool = false) -> [String] {
        run(m.publish(channel: buffer(channel), payload: buffer(payload), sharded: sharded, from: publisher, waiter: waiter,
                      alsoClassic: alsoClassic, now: now))
    }

    func flush() -> [String] { run(m.flush(now: now)) }
    func tick() -> [String] { run(m.tick(now: now) { _ in self.now }) }
    func ownership(_ slots: [Bool], home: Bool) -> [String] { run(m.ownershipChanged(slots: slots, home: home, now: now)) }

    /// A message from another relay on the fleet channel (`fleet/1 <type> <relay> <kind> <name> <count>…`).
    func fleetMessage(_ parts: String...) -> [String] {
        var b = ByteBuffer()
        b.writeRESPArrayHeader(parts.count)
        for p in parts { b.writeRESPBulk(p) }
        return run(m.fleetMessage(b, now: now))
    }
}

/// A subscription command's line with its names sorted (the registry's order is a dictionary's).
private func sortedNames(_ line: String) -> String {
    let words = line.split(separator: " ").map(String.init)
    guard words.count > 2, words[0] == "sub:" else { return line }
    return (words.prefix(2) + words.dropFirst(2).sorted()).joined(separator: " ")
}

private func names(_ line: String) -> [String] { line.split(separator: " ").dropFirst(2).map(String.init) }

/// What one master's connections carry: a non-home master only its slots' names, the home
/// master the fleet channel, the patterns and the books as well.
@Suite struct BackplaneClusterScopeTests {
    @Test func aNonHomeMasterResubscribesOnlyItsSlotsNamesOneSlotPerCommand() {
        let h = ClusterHarness(home: false, slots: serving("a", "s1", "{t}x"))
        let c = TestClient(id: 1)
        for name in ["a", "b", "{t}x"] { h.hold(c, name) }                      // app channels; b's slot is elsewhere
        for name in ["a", "s1", "s2", "{t}y"] { h.hold(c, name, kind: .shard) } // shard channels; s2's slot is elsewhere
        h.hold(c, "a*", kind: .pattern)
        #expect(Set([slot("a"), slot("s1"), slot("{t}x")]).count == 3 && slot("{t}x") == slot("{t}y"))
        #expect(h.run(h.m.start(now: h.now)) == ["connect sub", "connect pub"])
        let sent = h.handshake(.subscriber)
        // Channels and shard channels alike, as SSUBSCRIBE; the channel and the shard channel `a`
        // share one subscription; names of one slot in one command, the slots in order.
        let expected = [["a"], ["s1"], ["{t}x", "{t}y"]].sorted { slot($0[0]) < slot($1[0]) }
            .map { "sub: SSUBSCRIBE " + $0.joined(separator: " ") }
        #expect(sent.map(sortedNames) == expected)
        for line in sent { #expect(Set(names(line).map(slot)).count == 1, "\(line) spans slots: Redis answers -CROSSSLOT") }
        #expect(h.m.phase(.subscriber) == .syncing)
        // No fleet-count rewrite, no state on the fleet channel.
        #expect(h.handshake(.publisher) == [])
        #expect(h.m.pendingPublisherReplies == 0)
        h.confirmAll(sent)
        #expect(h.m.isForwarding && h.m.upstreamNameCount == 4)
        #expect(!h.m.countsFleetReceivers)
        // Ticks past the fleet TTL: the subscriber's PING, nothing on the publisher.
        for _ in 0..<7 {
            h.now += second
            #expect(h.tick() == ["sub: PING"])
            _ = h.reply(.subscriber, .status(buffer("PONG")))
        }
        #expect(h.m.pendingPublisherReplies == 0)
        #expect(h.run(h.m.stop()) == ["close sub", "close pub"], "no fleet counts to remove, no bye")
    }

    @Test func aNonHomeMasterWritesNoBooksWhenSubscriptionsChange() {
        let h = ClusterHarness(home: false, slots: serving("a", "b"))
        h.up()
        let c1 = TestClient(id: 1), c2 = TestClient(id: 2)
        h.all = []
        // Two local clients of `a`: the home master would write the count and tell the fleet.
        #expect(h.add(c1, "a") == "w1")
        _ = h.add(c2, "a")
        _ = h.add(c2, "b", kind: .shard)
        _ = h.flush()
        // One command per slot, in the order the names came (`b`'s slot closes `a`'s run).
        #expect(h.all == ["sub: SSUBSCRIBE a", "sub: SSUBSCRIBE b"])
        #expect(h.m.pendingPublisherReplies == 0)
        h.now += 2 * second
        #expect(!h.tick().contains { $0.hasPrefix("pub:") })
    }

    @Test func theHomeMasterCarriesTheFleetChannelThePatternsAndItsOwnSlotsAndKeepsTheBooks() {
        let h = ClusterHarness(home: true, slots: serving(namespace, "a"))
        let c1 = TestClient(id: 1), c2 = TestClient(id: 2)
        h.hold(c1, "b")                          // its slot is another master's
        h.hold(c2, "a")
        h.hold(c2, "p*", kind: .pattern)
        h.run(h.m.start(now: h.now))
        #expect(h.handshake(.subscriber) == ["sub: SSUBSCRIBE {ns}:fleet", "sub: PSUBSCRIBE p*", "sub: SSUBSCRIBE a"])
        let books = h.handshake(.publisher)
        // The fleet's books count every name this relay holds, whichever master carries it.
        #expect(books.count == 7)
        #expect(Array(books.prefix(2)) == ["pub: MULTI", "pub: DEL {ns}:numsub:r1"])
        #expect(["pub: HSET {ns}:numsub:r1 a 1 b 1", "pub: HSET {ns}:numsub:r1 b 1 a 1"].contains(books[2]))
        #expect(Array(books.suffix(4)) == ["pub: PEXPIRE {ns}:numsub:r1 5000", "pub: SADD {ns}:relays r1", "pub: EXEC",
                                           "pub: SPUBLISH {ns}:fleet state r1 p p* 1"])
        h.answerPublisher()
        #expect(h.confirm(fleetChannel) == ["pub: SPUBLISH {ns}:fleet hello r1"])
        _ = h.confirm("p*", kind: .pattern)
        _ = h.confirm("a")
        h.answerPublisher()
        #expect(h.m.isForwarding && h.m.countsFleetReceivers && h.m.upstreamNameCount == 2)
        // The books are refreshed every second.
        h.now += second
        let tick = h.tick()
        #expect(tick.contains("pub: PEXPIRE {ns}:numsub:r1 5000") && tick.contains("pub: SADD {ns}:relays r1"))
        #expect(tick.contains("pub: SPUBLISH {ns}:fleet alive r1"))
    }

    /// Classic mode: the app channels all go to the home master as SUBSCRIBE; every master
    /// carries the apps' own shard channels of its slots.
    @Test func inClassicModeTheHomeMasterCarriesEveryAppChannel() {
        let c = TestClient(id: 1)
        let home = ClusterHarness(home: true, sharded: false, slots: serving(namespace))
        for name in ["a", "b"] { home.hold(c, name) }
        home.hold(c, "{ns}.s", kind: .shard)     // the home slot's
        home.hold(c, "s1", kind: .shard)         // another master's
        home.run(home.m.start(now: home.now))
        let sent = home.handshake(.subscriber).map(sortedNames)
        #expect(sent == ["sub: SSUBSCRIBE {ns}:fleet", "sub: SUBSCRIBE a b", "sub: SSUBSCRIBE {ns}.s"])

        let other = ClusterHarness(home: false, sharded: false, slots: serving("a", "s1"))
        other.hold(c, "a")
        other.hold(c, "s1", kind: .shard)
        other.run(other.m.start(now: other.now))
        #expect(other.handshake(.subscriber) == ["sub: SSUBSCRIBE s1"])
        #expect(other.handshake(.publisher) == [])
    }
}

/// App subscriptions as the edge forwards them to one master's machine.
@Suite struct BackplaneClusterSubscriptionTests {
    @Test func aChannelAndAShardChannelOfOneNameShareOneSsubscribe() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        #expect(h.add(a, "x") == "w1")
        #expect(h.flush() == ["sub: SSUBSCRIBE x"])
        // The shard channel of the same name rides the same subscription; its client waits for it too.
        #expect(h.add(b, "x", kind: .shard) == "w2")
        #expect(h.flush() == [])
        #expect(h.confirm("x") == ["fill w1 nil", "fill w2 nil"])
        #expect(h.m.pendingConfirmations == 0)
        // Either one leaving alone keeps it; the last one's leaving unsubscribes.
        h.remove(a, "x")
        #expect(h.flush() == [])
        h.remove(b, "x", kind: .shard)
        #expect(h.flush() == ["sub: SUNSUBSCRIBE x"])
        #expect(h.confirm("x", subscribe: false) == [])
        #expect(h.m.pendingConfirmations == 0 && h.m.slotMovesPushed == 0 && h.m.isForwarding)
    }

    @Test func theShardChannelFirstThenTheChannelLikewise() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = h.add(a, "x", kind: .shard)
        #expect(h.flush() == ["sub: SSUBSCRIBE x"])
        _ = h.confirm("x")
        #expect(h.add(b, "x") == nil, "held upstream already: confirmed at once")
        #expect(h.flush() == [])
        h.remove(a, "x", kind: .shard)
        #expect(h.flush() == [])
        h.remove(b, "x")
        #expect(h.flush() == ["sub: SUNSUBSCRIBE x"])
    }

    /// The edge tells the home master of every name (`upstream: false` when another master
    /// carries it) and the carrying master without the books (`bookkeeping: false`).
    @Test func bookkeepingAndUpstreamDoWhatTheySay() {
        let h = ClusterHarness(home: true, slots: serving(namespace, "x"))
        h.up()
        // Counted here, carried elsewhere: the hash write only (the client waits for it).
        #expect(h.add(TestClient(id: 1), "y", upstream: false) == nil)
        #expect(h.flush() == ["pub: HSET {ns}:numsub:r1 y 1", "pub: PEXPIRE {ns}:numsub:r1 5000", "pub: SADD {ns}:relays r1"])
        #expect(h.reply(.publisher, .integer(1)) == [])
        #expect(h.reply(.publisher, .integer(1)) == [])
        #expect(h.reply(.publisher, .integer(1)) == ["fill fleet1 nil"])
        // Carried here, not counted: the subscription only.
        let c2 = TestClient(id: 2)
        #expect(h.add(c2, "x", bookkeeping: false) == "w2")
        #expect(h.flush() == ["sub: SSUBSCRIBE x"])
        #expect(h.confirm("x") == ["fill w2 nil"])
        _ = h.registry.remove(.channel, c2, buffer("x"))
        #expect(h.run(h.m.subscriptionRemoved(.channel, buffer("x"), last: true, now: h.now, bookkeeping: false)) == [])
        #expect(h.flush() == ["sub: SUNSUBSCRIBE x"])
        // On a master that is not home, neither: nothing at all.
        let other = ClusterHarness(home: false, slots: serving("z"))
        other.up()
        _ = other.add(TestClient(id: 4), "z", upstream: false)
        #expect(other.flush() == [])
        #expect(other.m.pendingPublisherReplies == 0)
    }
}

/// The slot map changes under a running machine.
@Suite struct BackplaneClusterOwnershipTests {
    @Test func gainedSlotsAreSubscribedAndLostOnesLeftToTheirNewMaster() {
        let h = ClusterHarness(home: false, slots: serving("a"))
        let c = TestClient(id: 1)
        h.hold(c, "a")
        h.hold(c, "b")
        h.hold(c, "c", kind: .shard)
        h.run(h.m.start(now: h.now))
        let sent = h.handshake(.subscriber)
        #expect(sent == ["sub: SSUBSCRIBE a"])
        _ = h.handshake(.publisher)
        h.confirmAll(sent)
        #expect(h.m.isForwarding)
        #expect(h.ownership(serving("a", "b"), home: false) == ["sub: SSUBSCRIBE b"])
        #expect(h.m.movedSubscriptions == 1)
        _ = h.confirm("b")
        // `a`'s slot left: Redis drops it on its own (no SUNSUBSCRIBE); `c`'s came.
        #expect(h.ownership(serving("b", "c"), home: false) == ["sub: SSUBSCRIBE c"])
        #expect(h.m.movedSubscriptions == 2)
        _ = h.confirm("c")
        // The same map again, nothing dropped meanwhile: nothing to do.
        #expect(h.ownership(serving("b", "c"), home: false) == [])
        #expect(h.m.movedSubscriptions == 2 && h.m.upstreamNameCount == 2 && h.m.isForwarding)
    }

    @Test func theFirstMapBeforeTheHandshakeIsWhatTheResubscriptionUses() {
        let h = ClusterHarness(home: false, slots: NodeScope.noSlots)
        let c = TestClient(id: 1)
        h.hold(c, "a")
        h.hold(c, "b")
        #expect(h.ownership(serving("b"), home: false) == [])
        h.run(h.m.start(now: h.now))
        #expect(h.handshake(.subscriber) == ["sub: SSUBSCRIBE b"])
        #expect(h.m.movedSubscriptions == 0)
    }

    @Test func aChangeOfHomeMovesTheFleetsPartOnTheOpenConnections() {
        let h = ClusterHarness(home: false, slots: serving("a"))
        h.hold(TestClient(id: 1), "a")
        h.hold(TestClient(id: 1), "p*", kind: .pattern)
        h.up()
        // The home comes here: the fleet channel, the patterns and the books, nothing dropped.
        let gained = h.ownership(serving("a", namespace), home: true)
        #expect(h.m.scope.home && h.m.isForwarding)
        #expect(!gained.contains { $0.hasPrefix("close") || $0.hasPrefix("connect") }, "\(gained)")
        #expect(gained.contains("sub: SSUBSCRIBE {ns}:fleet") && gained.contains("sub: PSUBSCRIBE p*"), "\(gained)")
        #expect(gained.contains("pub: MULTI"), "\(gained)")
        #expect(!gained.contains("sub: SSUBSCRIBE a"), "a is served here already: \(gained)")
        h.confirmAll(gained)
        h.answerPublisher()
        #expect(h.m.countsFleetReceivers)
        // And away again: the patterns are given up here, the connections stay.
        let lost = h.ownership(serving("a"), home: false)
        #expect(!h.m.scope.home && h.m.isForwarding && !h.m.countsFleetReceivers)
        #expect(lost.contains("sub: PUNSUBSCRIBE p*") && !lost.contains { $0.hasPrefix("close") }, "\(lost)")
    }
}

/// Redis Cluster's own moves: an unasked `sunsubscribe`, `-MOVED` and its kin.
@Suite struct BackplaneClusterRedirectTests {
    @Test func anUnaskedSunsubscribeIsASlotMoveNotALinkFailure() {
        let h = ClusterHarness(home: false, slots: serving("a", "b"))
        let c = TestClient(id: 1)
        h.hold(c, "a")                      // an app channel, carried as a shard channel
        h.hold(c, "b", kind: .shard)
        h.up()
        #expect(h.confirm("a", subscribe: false) == ["slot lost: Redis unsubscribed the shard channel 'a': its slot moved"])
        #expect(h.m.phase(.subscriber) == .ready && h.m.isForwarding && h.m.slotMovesPushed == 1)
        // The next map, even unchanged, subscribes it again where it lives.
        #expect(h.ownership(serving("a", "b"), home: false) == ["sub: SSUBSCRIBE a"])
        #expect(h.m.movedSubscriptions == 1)
        _ = h.confirm("a")
        // Dropped, and the map says its slot is elsewhere now: left to that master.
        #expect(h.confirm("b", subscribe: false).first?.hasPrefix("slot lost:") == true)
        #expect(h.m.slotMovesPushed == 2)
        #expect(h.ownership(serving("a"), home: false) == [])
        #expect(h.ownership(serving("a"), home: false) == [], "forgotten once the map was in")
        #expect(h.m.movedSubscriptions == 1 && h.m.isForwarding)
    }

    @Test func onOneServerAnUnaskedSunsubscribeStillFailsTheLink() {
        let h = ClusterHarness(scope: .whole)
        h.hold(TestClient(id: 1), "s", kind: .shard)
        h.up()
        let got = h.confirm("s", subscribe: false)
        #expect(got.prefix(2) == ["close sub", "connect sub after 50 ms"])
        #expect(!got.contains { $0.hasPrefix("slot lost") })
        #expect(h.m.lastError == "subscriber connection out of step: Redis unsubscribed the shard channel 's' unasked")
        #expect(h.m.slotMovesPushed == 0)
    }

    @Test func aRedirectedPublishIsHandedBackToBeSentAgain() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        let errors = ["MOVED 1234 10.0.0.2:7001", "ASK 1234 10.0.0.2:7001", "CLUSTERDOWN The cluster is down",
                      "TRYAGAIN Multiple keys request during rehashing of slot"]
        for (i, error) in errors.enumerated() {
            #expect(h.publish("x", "m\(i)", waiter: "p\(i)") == ["pub: SPUBLISH x m\(i)"])
            #expect(h.error(.publisher, error) == ["redirected p\(i) x m\(i) sharded=true classic=false echo=false"], "\(error)")
        }
        // Any other error is Redis's answer to the client.
        #expect(h.publish("x", "m", waiter: "p9") == ["pub: SPUBLISH x m"])
        #expect(h.error(.publisher, "NOPERM this user has no permissions to access one of the channels used as arguments") == [
            "reply p9 NOPERM this user has no permissions to access one of the channels used as arguments"])
        #expect(h.m.unconfirmedPublishes == 0 && h.m.isForwarding)
        // On one server a -MOVED is nothing to follow: the client gets it.
        let one = ClusterHarness(scope: .whole)
        one.up()
        #expect(one.publish("x", "m", waiter: "p1") == ["pub: SPUBLISH x m"])
        #expect(one.error(.publisher, "MOVED 1234 10.0.0.2:7001") == ["reply p1 MOVED 1234 10.0.0.2:7001"])
    }

    /// PUBLISH names no key: a cluster node runs it whatever the slot map, so the classic copy
    /// behind a redirected SPUBLISH reached the fleet's pattern subscribers already.
    @Test func aRedirectedSpublishIsSentAgainWithoutItsClassicCopy() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        for (i, error) in ["MOVED 1234 10.0.0.2:7001", "CLUSTERDOWN The cluster is down"].enumerated() {
            #expect(h.publish("x", "m\(i)", waiter: "p\(i)", alsoClassic: true) == ["pub: SPUBLISH x m\(i)", "pub: PUBLISH x m\(i)"])
            #expect(h.error(.publisher, error) == ["redirected p\(i) x m\(i) sharded=true classic=false echo=false"], "\(error)")
            #expect(h.reply(.publisher, .integer(1)) == [], "the classic copy ran")
        }
    }

    @Test func aMovedSsubscribeConfirmsTheWaitingClientAndAsksForTheMap() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        let a = TestClient(id: 1)
        #expect(h.add(a, "x", kind: .shard) == "w1")
        #expect(h.flush() == ["sub: SSUBSCRIBE x"])
        // An SPUBLISH of x waits for the subscription in flight.
        #expect(h.publish("x", "m", waiter: "p1") == [])
        #expect(h.error(.subscriber, "MOVED 1234 10.0.0.2:7001") == [
            "fill w1 nil", "slot lost: a subscription was answered MOVED 1234 10.0.0.2:7001", "pub: SPUBLISH x m"])
        #expect(h.m.refusedSubscriptions == 0 && h.m.pendingConfirmations == 0 && h.m.isForwarding)
        #expect(h.registry.isHeld(.shard, buffer("x")), "not undone")
        // The next map, if x is still here, subscribes it again.
        #expect(h.ownership(serving("x"), home: false) == ["sub: SSUBSCRIBE x"])
    }

    @Test func aMovedSsubscribeOfANameWhoseSlotLeftIsForgotten() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        h.up()
        _ = h.add(TestClient(id: 1), "x", kind: .shard)
        _ = h.flush()
        _ = h.error(.subscriber, "MOVED 1234 10.0.0.2:7001")
        // The slot is elsewhere now: nothing goes to this master for it…
        #expect(h.ownership(NodeScope.noSlots, home: false) == [])
        // …and when the slot comes back, the name is subscribed here again, once.
        #expect(h.ownership(serving("x"), home: false) == ["sub: SSUBSCRIBE x"])
        #expect(h.ownership(serving("x"), home: false) == [])
    }
}

/// A PUBLISH in sharded mode: SPUBLISH, and a classic copy for the fleet's patterns.
@Suite struct BackplaneClusterPublishTests {
    @Test func theClassicCopyFollowsOnTheSameConnectionAndItsReplyIsNotCounted() {
        let h = ClusterHarness(home: false, slots: serving("x"))
        let clients = (1...9).map { TestClient(id: $0) }
        h.hold(clients[0], "x")
        h.hold(clients[1], "x")
        h.hold(clients[2], "x", kind: .shard)
        h.hold(clients[3], "x*", kind: .pattern)
        h.hold(clients[4], "x*", kind: .pattern)
        h.hold(clients[5], "*", kind: .pattern)
        for c in clients[6...8] { h.hold(c, "y*", kind: .pattern) }   // does not match x
        h.up()
        var asked: [String] = []
        h.m.remoteReceivers = { channel, sharded, patterns in
            asked.append("\(String(buffer: channel)) sharded=\(sharded) patterns=\(patterns)")
            return patterns ? 4 : 3
        }
        #expect(h.publish("x", "m", waiter: "p1", alsoClassic: true) == ["pub: SPUBLISH x m", "pub: PUBLISH x m"])
        // Redis's 1 (the relays holding x, each once) + x's clients here but one (2 + 1 − 1) +
        // every local client of x* and * (3) + the other relays' (4).
        #expect(h.reply(.publisher, .integer(1)) == ["fill p1 :10\r\n"])
        #expect(asked == ["x sharded=true patterns=true"])
        #expect(h.reply(.publisher, .integer(7)) == [], "the classic copy's count is not Redis's to give")
        // Its errors are logged once.
        for i in 2...3 {
            _ = h.publish("x", "m", waiter: "p\(i)", alsoClassic: true)
            #expect(h.reply(.publisher, .integer(1)) == ["fill p\(i) :10\r\n"])
            #expect(h.error(.publisher, "ERR something") == [])
        }
        #expect(h.log.filter { $0.hasPrefix("warning redis cluster: the classic PUBLISH for pattern subscribers failed") }.count == 1)
        // Without the copy no pattern subscriber is counted.
        #expect(h.publish("x", "m", waiter: "p4") == ["pub: SPUBLISH x m"])
        #expect(h.reply(.publisher, .integer(1)) == ["fill p4 :6\r\n"])
        #expect(h.m.pendingPublisherReplies == 0 && h.m.isForwarding)
    }

    @Test func onTheHomeMasterTheOtherRelaysPatternHoldersAreCountedFromTheFleet() {
        let h = ClusterHarness(home: true, slots: serving(namespace, "x"))
        h.up()
        #expect(h.fleetMessage("fleet/1", "delta", "r2", "p", "x*", "2", "s", "x", "3", "c", "x", "2") == [])
        #expect(h.m.remoteReceiverCount(for: buffer("x"), sharded: true, patterns: true) == 2 + 2 + 1)
        #expect(h.m.remoteReceiverCount(for: buffer("x"), sharded: true, patterns: false) == 2 + 1)
        #expect(h.publish("x", "m", waiter: "p1", alsoClassic: true) == ["pub: SPUBLISH x m", "pub: PUBLISH x m"])
        #expect(h.reply(.publisher, .integer(1)) == ["fill p1 :6\r\n"])
    }

    @Test func fleetHoldsPatternIsTrueUntilTheFleetChannelIsUpThenFollowsThePatterns() {
        let h = ClusterHarness(home: true, slots: serving(namespace))
        h.run(h.m.start(now: h.now))
        let subscribed = h.handshake(.subscriber)
        _ = h.handshake(.publisher)
        // Not known yet: a classic copy too many rather than a message lost.
        #expect(h.m.fleetHoldsPattern(matching: buffer("zoo")))
        h.confirmAll(subscribed)
        h.answerPublisher()
        #expect(h.m.countsFleetReceivers)
        // Subscribed, but the other relays' states may still be on their way for a second.
        #expect(h.m.fleetHoldsPattern(matching: buffer("zoo")))
        h.now += second
        _ = h.tick()
        h.answerPublisher()
        #expect(!h.m.fleetHoldsPattern(matching: buffer("zoo")))
        // A local pattern.
        _ = h.add(TestClient(id: 1), "n*", kind: .pattern)
        #expect(h.m.fleetHoldsPattern(matching: buffer("news")) && !h.m.fleetHoldsPattern(matching: buffer("zoo")))
        // Another relay's, as it tells it, and as it drops it.
        #expect(h.fleetMessage("fleet/1", "delta", "r2", "p", "z*", "2") == [])
        #expect(h.m.fleetHoldsPattern(matching: buffer("zoo")))
        #expect(h.fleetMessage("fleet/1", "delta", "r2", "p", "z*", "0") == [])
        #expect(!h.m.fleetHoldsPattern(matching: buffer("zoo")))
        #expect(h.fleetMessage("fleet/1", "state", "r3", "p", "*o*", "1") == [])
        #expect(h.m.fleetHoldsPattern(matching: buffer("zoo")))
        #expect(h.fleetMessage("fleet/1", "bye", "r3") == [])
        #expect(!h.m.fleetHoldsPattern(matching: buffer("zoo")))
        #expect(h.m.malformedFleetMessages == 0)
        // The subscriber lost: the fleet's patterns are unknown again.
        h.run(h.m.failed(h.id(.subscriber), reason: "connection closed by Redis", now: h.now))
        #expect(h.m.fleetHoldsPattern(matching: buffer("zoo")))
    }
}
