import NIOCore
import Testing
@testable import RelayCore

@Suite struct PubSubFramesTests {
    @Test func messageFrames() {
        let channel = buffer("news"), payload = buffer([0x00, 0x0D, 0x0A])
        #expect(bytes(PubSubFrames.message(channel: channel, payload: payload, .resp2))
            == Array("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\n".utf8) + [0x00, 0x0D, 0x0A] + Array("\r\n".utf8))
        #expect(bytes(PubSubFrames.message(channel: channel, payload: payload, .resp3))
            == Array(">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\n".utf8) + [0x00, 0x0D, 0x0A] + Array("\r\n".utf8))
    }

    @Test func pmessageFrames() {
        let frame2 = PubSubFrames.pmessage(pattern: buffer("n*"), channel: buffer("news"), payload: buffer(""), .resp2)
        #expect(String(buffer: frame2) == "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$0\r\n\r\n")
        let frame3 = PubSubFrames.pmessage(pattern: buffer("n*"), channel: buffer("news"), payload: buffer("x"), .resp3)
        #expect(String(buffer: frame3) == ">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n")
    }

    /// A frame reads from its own start, whatever the reader index of the buffers it copies.
    @Test func framesCopyOnlyReadableBytes() {
        var channel = buffer("xxnews")
        channel.moveReaderIndex(forwardBy: 2)
        #expect(String(buffer: PubSubFrames.message(channel: channel, payload: buffer("p"), .resp2))
            == "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$1\r\np\r\n")
    }

    @Test func confirmationFrames() {
        var out = ByteBuffer()
        PubSubFrames.confirmation("subscribe", name: buffer("a"), count: 1, .resp2, into: &out)
        PubSubFrames.confirmation("punsubscribe", name: nil, count: 0, .resp2, into: &out)
        PubSubFrames.confirmation("unsubscribe", name: nil, count: 12, .resp3, into: &out)
        #expect(show(bytes(out)) == show(Array((
            "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
            + "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
            + ">3\r\n$11\r\nunsubscribe\r\n_\r\n:12\r\n").utf8)))
    }
}
