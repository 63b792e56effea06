import NIOCore
import Testing
@testable import RelayCore

/// A subscriber with an output limit, as a connection has one. When a frame would take it past
/// the limit it is cut: it drops that frame and every later one, and leaves the way the edge
/// does — it tells the executor it is gone (NIO fires `channelInactive`, and with it
/// `CommandExecutor.clientClosed`, synchronously inside a channel close).
private final class LimitedClient: RelayClient {
    var session: ClientSession
    let limit: Int
    var queuedBytes = 0
    var received: [[UInt8]] = []
    var isClosing = false
    /// Frames offered after the cut (dropped, as `ClientConnection` counts `dropped_frames`).
    var offeredAfterCut = 0
    var onCut: (LimitedClient) -> Void = { _ in }
    /// Runs at each delivery: the registry as another subscriber sees it mid-fan-out.
    var onDeliver: () -> Void = {}

    init(id: Int, limit: Int = .max) {
        session = ClientSession(id: id)
        self.limit = limit
    }

    var respVersion: RESPVersion { session.resp }

    func deliver(_ frame: ByteBuffer, bytes: UnsafeRawBufferPointer) {
        onDeliver()
        guard !isClosing else {
            offeredAfterCut += 1
            return
        }
        if queuedBytes + bytes.count > limit {
            isClosing = true
            onCut(self)
            return
        }
        queuedBytes += bytes.count
        received.append(Array(bytes))
    }
}

/// What other subscribers saw of the registry while a fan-out was iterating it.
private final class Violations {
    var seen: [String] = []
}

/// A subscriber reaching its output limit inside the hub's fan-out: it is not removed from the
/// registry under the loop that walks it, but after that fan-out — as Redis's `freeClientAsync`
/// defers freeing a client that hit its limit inside `pubsubPublishMessage`.
@Suite struct PubSubHubClosingTests {
    /// The RESP2 frames of one publish on `news` for a client of `news`, `n*` and `new?`.
    static func frames(_ payload: String) -> (message: [UInt8], pmessageN: [UInt8], pmessageNew: [UInt8]) {
        let p = Array(payload.utf8)
        let tail = Array("$\(p.count)\r\n".utf8) + p + Array("\r\n".utf8)
        return (Array("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n".utf8) + tail,
                Array("*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n".utf8) + tail,
                Array("*4\r\n$8\r\npmessage\r\n$4\r\nnew?\r\n$4\r\nnews\r\n".utf8) + tail)
    }

    fileprivate struct Setup {
        let hub: PubSubHub<LimitedClient>
        let executor: CommandExecutor<LimitedClient>
        let cut: LimitedClient
        let exact: [LimitedClient]
        let byPattern: [LimitedClient]
        let violations: Violations
    }

    /// `cut` subscribes first (the fan-out meets it before the others) to `news`, `n*` and
    /// `new?` (a pattern only it holds); 50 clients hold `news`, 20 hold `n*`. Its limit lets
    /// exactly the first publish (three frames) through. While `armed`, every other client
    /// checks at each delivery that `cut` is still fully registered.
    fileprivate static func setUp() -> (Setup, arm: () -> Void) {
        let hub = PubSubHub<LimitedClient>(stats: RelayStats())
        let executor = CommandExecutor(hub: hub)
        let first = frames("m1")
        let cut = LimitedClient(id: 1, limit: first.message.count + first.pmessageN.count + first.pmessageNew.count)
        cut.onCut = { executor.clientClosed($0) }
        _ = hub.registry.subscribe(cut, channel: buffer("news"))
        _ = hub.registry.psubscribe(cut, pattern: buffer("n*"))
        _ = hub.registry.psubscribe(cut, pattern: buffer("new?"))
        let exact = (2...51).map { LimitedClient(id: $0) }
        let byPattern = (52...71).map { LimitedClient(id: $0) }
        for c in exact { _ = hub.registry.subscribe(c, channel: buffer("news")) }
        for c in byPattern { _ = hub.registry.psubscribe(c, pattern: buffer("n*")) }
        let violations = Violations()
        let arm = {
            for c in exact + byPattern {
                c.onDeliver = { [unowned hub, unowned cut] in
                    let news = hub.registry.numberOfSubscribers(channel: buffer("news"))
                    let nStar = hub.registry.patterns[buffer("n*")]?.subscribers.count ?? 0
                    let held = hub.registry.subscriptionCount(of: cut)
                    let newQ = hub.registry.patterns[buffer("new?")] != nil
                    if news != 51 || nStar != 21 || held != 3 || !newQ {
                        violations.seen.append("client \(c.session.id): news=\(news) n*=\(nStar) cut holds \(held) new?=\(newQ)")
                    }
                }
            }
        }
        return (Setup(hub: hub, executor: executor, cut: cut, exact: exact, byPattern: byPattern, violations: violations), arm)
    }

    fileprivate static func expectConsistentAfterCut(_ s: Setup) {
        let registry = s.hub.registry
        #expect(registry.subscriptionCount(of: s.cut) == 0)
        #expect(registry.channels(of: s.cut).isEmpty && registry.patterns(of: s.cut).isEmpty)
        #expect(registry.numberOfSubscribers(channel: buffer("news")) == 50)
        #expect(registry.patterns[buffer("n*")]?.subscribers.count == 20)
        #expect(registry.patterns[buffer("new?")] == nil, "the pattern only the cut client held is gone")
        #expect(registry.channelCount == 1 && registry.patternCount == 1)
        #expect(registry.subscriberCount == 70)
        #expect(registry.subscriptionTotals.channels == 50 && registry.subscriptionTotals.patterns == 20)
        #expect(!registry.patterns[buffer("n*")]!.subscribers.contains { $0 === s.cut })
        #expect(!registry.entry(forChannel: buffer("news"))!.subscribers.contains { $0 === s.cut })
    }

    @Test func subscriberCutDuringPublishLeavesAfterTheFanOut() {
        let (s, arm) = Self.setUp()
        let (m1, m2, m3) = (Self.frames("m1"), Self.frames("m2"), Self.frames("m3"))
        #expect(s.hub.publish(channel: buffer("news"), payload: buffer("m1")) == 73)
        #expect(s.cut.received == [m1.message, m1.pmessageN, m1.pmessageNew])

        arm()
        // `cut` passes its limit on m2's first frame. It still counts, as in Redis (a client
        // freed asynchronously is counted by PUBLISH): 51 exact + 21 on n* + 1 on new?.
        #expect(s.hub.publish(channel: buffer("news"), payload: buffer("m2")) == 73)
        #expect(s.violations.seen.count == 0, "registry changed during the fan-out: \(s.violations.seen.prefix(3))")
        #expect(s.cut.received == [m1.message, m1.pmessageN, m1.pmessageNew], "nothing queued after the cut")
        #expect(s.cut.offeredAfterCut == 2, "its two pmessages of m2 were offered and dropped")
        Self.expectConsistentAfterCut(s)

        #expect(s.hub.publish(channel: buffer("news"), payload: buffer("m3")) == 70)
        #expect(s.cut.offeredAfterCut == 2, "not offered anything once removed")
        for c in s.exact { #expect(c.received == [m1.message, m2.message, m3.message]) }
        for c in s.byPattern { #expect(c.received == [m1.pmessageN, m2.pmessageN, m3.pmessageN]) }
    }

    /// The same cut in the backplane's delivery paths: a `message`, then a `pmessage`, from Redis.
    @Test func subscriberCutDuringUpstreamDeliveryLeavesAfterTheFanOut() {
        let (s, arm) = Self.setUp()
        let m1 = Self.frames("m1")
        #expect(s.hub.publish(channel: buffer("news"), payload: buffer("m1")) == 73)
        arm()
        let payload = Array("m2".utf8)
        let channel = Array("news".utf8)
        let n = payload.withUnsafeBytes { p in s.hub.deliverUpstream(channel: buffer("news"), payload: p) }
        #expect(n == 51)
        #expect(s.violations.seen.count == 0, "registry changed during the fan-out: \(s.violations.seen.prefix(3))")
        Self.expectConsistentAfterCut(s)
        let p = channel.withUnsafeBytes { c in
            payload.withUnsafeBytes { p in s.hub.deliverUpstream(pattern: buffer("n*"), channel: c, payload: p) }
        }
        #expect(p == 20)
        #expect(s.cut.received == [m1.message, m1.pmessageN, m1.pmessageNew])
        #expect(s.cut.offeredAfterCut == 0)
        let m2 = Self.frames("m2")
        for c in s.exact { #expect(c.received == [m1.message, m2.message]) }
        for c in s.byPattern { #expect(c.received == [m1.pmessageN, m2.pmessageN]) }
    }

    /// Outside a fan-out a close takes effect at once.
    @Test func closeOutsideFanOutIsImmediate() {
        let (s, _) = Self.setUp()
        #expect(!s.hub.isFanningOut)
        s.executor.clientClosed(s.cut)
        Self.expectConsistentAfterCut(s)
        var ran = false
        s.hub.whenNotFanningOut { ran = true }
        #expect(ran)
    }
}
