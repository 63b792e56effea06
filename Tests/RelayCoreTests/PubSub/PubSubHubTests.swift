import NIOCore
import Testing
@testable import RelayCore

private func resp3Client(id: Int) -> TestClient {
    let c = TestClient(id: id)
    c.session.resp = .resp3
    return c
}

/// The address of a frame's bytes: equal for two frames only when they share one encoding.
private func storageAddress(_ frame: ByteBuffer) -> UnsafeRawPointer? {
    frame.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
}

/// Records which client received a frame, across clients.
private final class DeliveryLog {
    var ids: [Int] = []
}

private final class LoggingClient: RelayClient {
    var session: ClientSession
    let log: DeliveryLog
    init(id: Int, log: DeliveryLog) {
        session = ClientSession(id: id)
        self.log = log
    }
    var respVersion: RESPVersion { session.resp }
    func deliver(_ frame: ByteBuffer, bytes: UnsafeRawBufferPointer) { log.ids.append(session.id) }
}

@Suite struct PubSubHubTests {
    @Test func publishWithoutSubscribersReachesNoOne() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        #expect(hub.publish(channel: buffer("news"), payload: buffer("x")) == 0)
        #expect(hub.stats.counts.deliveries == 0)
    }

    @Test func messageFrameInRESP2AndRESP3() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let two = TestClient(id: 1), three = resp3Client(id: 2)
        _ = hub.registry.subscribe(two, channel: buffer("news"))
        _ = hub.registry.subscribe(three, channel: buffer("news"))
        #expect(hub.publish(channel: buffer("news"), payload: buffer("hello")) == 2)
        #expect(show(two.takeOutput()) == show(Array("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n".utf8)))
        #expect(show(three.takeOutput()) == show(Array(">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n".utf8)))
        #expect(hub.stats.counts.deliveries == 2)
    }

    /// A subscriber to both `a` and `a*` gets the message twice: `message` first, then
    /// `pmessage` — the bytes Redis 7.0.15 sends (payload with CR, LF and NUL kept as is).
    @Test func channelAndMatchingPatternGiveMessageThenPmessage() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let two = TestClient(id: 1), three = resp3Client(id: 2)
        for c in [two, three] {
            _ = hub.registry.psubscribe(c, pattern: buffer("a*"))
            _ = hub.registry.subscribe(c, channel: buffer("a"))
        }
        let payload: [UInt8] = Array("hi\r\n".utf8) + [0]
        #expect(hub.publish(channel: buffer("a"), payload: buffer(payload)) == 4)
        #expect(two.takeOutput() == Array("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\n".utf8) + payload
            + Array("\r\n*4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$5\r\n".utf8) + payload + Array("\r\n".utf8))
        #expect(three.takeOutput() == Array(">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\n".utf8) + payload
            + Array("\r\n>4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$5\r\n".utf8) + payload + Array("\r\n".utf8))
    }

    @Test func eachMatchingPatternDeliversOnce() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let c = TestClient()
        _ = hub.registry.psubscribe(c, pattern: buffer("n*"))
        _ = hub.registry.psubscribe(c, pattern: buffer("x*"))
        _ = hub.registry.psubscribe(c, pattern: buffer("ne?s"))
        #expect(hub.publish(channel: buffer("news"), payload: buffer("p")) == 2)
        #expect(c.frames.map { show(bytes($0)) } == [
            "*4\\r\\n$8\\r\\npmessage\\r\\n$2\\r\\nn*\\r\\n$4\\r\\nnews\\r\\n$1\\r\\np\\r\\n",
            "*4\\r\\n$8\\r\\npmessage\\r\\n$4\\r\\nne?s\\r\\n$4\\r\\nnews\\r\\n$1\\r\\np\\r\\n",
        ])
    }

    /// Exact subscribers first, then pattern subscribers, whatever the order of subscription.
    @Test func exactSubscribersBeforePatternSubscribers() {
        let log = DeliveryLog()
        let hub = PubSubHub<LoggingClient>(stats: RelayStats())
        let byPattern = LoggingClient(id: 1, log: log)
        let exact = LoggingClient(id: 2, log: log)
        _ = hub.registry.psubscribe(byPattern, pattern: buffer("*"))
        _ = hub.registry.subscribe(exact, channel: buffer("c"))
        hub.publish(channel: buffer("c"), payload: buffer("x"))
        #expect(log.ids == [2, 1])
    }

    /// Encode once, share the buffer: every RESP2 receiver gets the same storage, every RESP3
    /// receiver another one, and the bytes match.
    @Test func framesAreEncodedOnceAndShared() throws {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let twos = (1...3).map { TestClient(id: $0) }
        let threes = (4...5).map { resp3Client(id: $0) }
        for c in twos + threes {
            _ = hub.registry.subscribe(c, channel: buffer("ch"))
            _ = hub.registry.psubscribe(c, pattern: buffer("c*"))
        }
        #expect(hub.publish(channel: buffer("ch"), payload: buffer("payload")) == 10)
        for c in twos + threes { #expect(c.frames.count == 2) }
        for kind in 0..<2 {
            let twoAddresses = Set(twos.map { storageAddress($0.frames[kind]) })
            let threeAddresses = Set(threes.map { storageAddress($0.frames[kind]) })
            #expect(twoAddresses.count == 1, "RESP2 frame \(kind) encoded more than once")
            #expect(threeAddresses.count == 1, "RESP3 frame \(kind) encoded more than once")
            #expect(twoAddresses != threeAddresses)
            #expect(Set(twos.map { bytes($0.frames[kind]) }).count == 1)
        }
    }

    /// Redis's matcher never matches an empty channel, not even with `*`; a PUBLISH to `""`
    /// reaches only exact subscribers of `""`.
    @Test func emptyChannelMatchesNoPattern() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let p = TestClient(id: 1), e = TestClient(id: 2)
        _ = hub.registry.psubscribe(p, pattern: buffer("*"))
        #expect(hub.publish(channel: buffer(""), payload: buffer("x")) == 0)
        _ = hub.registry.subscribe(e, channel: buffer(""))
        #expect(hub.publish(channel: buffer(""), payload: buffer("x")) == 1)
        #expect(p.frames.isEmpty)
        #expect(show(e.takeOutput()) == show(Array("*3\r\n$7\r\nmessage\r\n$0\r\n\r\n$1\r\nx\r\n".utf8)))
    }

    @Test func nonMatchingSubscribersGetNothing() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = hub.registry.subscribe(a, channel: buffer("news"))
        _ = hub.registry.psubscribe(b, pattern: buffer("new"))
        #expect(hub.publish(channel: buffer("newsx"), payload: buffer("x")) == 0)
        #expect(a.frames.isEmpty && b.frames.isEmpty)
    }

    @Test func binaryChannelAndPayloadPassThrough() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let c = TestClient()
        let channel: [UInt8] = [0x00, 0xFF, 0x0D, 0x0A]
        let payload: [UInt8] = Array(0...255)
        _ = hub.registry.subscribe(c, channel: buffer(channel))
        #expect(hub.publish(channel: buffer(channel), payload: buffer(payload)) == 1)
        #expect(c.takeOutput() == Array("*3\r\n$7\r\nmessage\r\n$4\r\n".utf8) + channel
            + Array("\r\n$256\r\n".utf8) + payload + Array("\r\n".utf8))
    }

    @Test func statsAccumulate() {
        let hub = PubSubHub<TestClient>(stats: RelayStats())
        let a = TestClient(id: 1), b = TestClient(id: 2)
        _ = hub.registry.subscribe(a, channel: buffer("x"))
        _ = hub.registry.psubscribe(b, pattern: buffer("*"))
        hub.publish(channel: buffer("x"), payload: buffer("1"))
        hub.publish(channel: buffer("y"), payload: buffer("2"))
        #expect(hub.stats.counts.deliveries == 3)
        // Upstream deliveries count as messages from Redis, to the exact or the pattern entry only.
        #expect(hub.deliverUpstream(channel: buffer("x"), payload: UnsafeRawBufferPointer(start: nil, count: 0)) == 1)
        #expect(hub.deliverUpstream(pattern: buffer("*"), channel: UnsafeRawBufferPointer(start: nil, count: 0),
                                    payload: UnsafeRawBufferPointer(start: nil, count: 0)) == 1)
        #expect(hub.deliverUpstream(pattern: buffer("nobody*"), channel: UnsafeRawBufferPointer(start: nil, count: 0),
                                    payload: UnsafeRawBufferPointer(start: nil, count: 0)) == 0)
        #expect(hub.stats.counts.messagesFromRedis == 3)
        #expect(hub.stats.counts.deliveries == 5)
    }
}
