import NIOCore
import RelayCore

/// What one parser made of a byte stream: the requests (arguments copied out), whether each
/// was inline, the error that ended it if any, and the bytes left waiting for more input.
struct ParseRun {
    var requests: [[[UInt8]]] = []
    var inline: [Bool] = []
    var error: ProtocolError?
    var unparsed = 0

    static func whole(_ stream: [UInt8]) -> ParseRun {
        var run = ParseRun()
        var parser = RequestParser(limits: limits)
        var buffer = ByteBuffer(bytes: stream)
        run.drain(&parser, &buffer)
        run.unparsed = buffer.readableBytes
        return run
    }

    /// Feeds the stream as `ClientConnection.channelRead` feeds reads: unparsed bytes are kept
    /// and the next read is appended to them; with none kept, the next read is a new buffer.
    static func chunked(_ stream: [UInt8], sizes: [Int]) -> ParseRun {
        var run = ParseRun()
        var parser = RequestParser(limits: limits)
        var kept: ByteBuffer?
        var offset = 0
        var read = 0
        while offset < stream.count && run.error == nil {
            let end = min(stream.count, offset + sizes[read % sizes.count])
            let chunk = stream[offset..<end]
            var buffer: ByteBuffer
            if var query = kept {
                query.writeBytes(chunk)
                buffer = query
            } else {
                buffer = ByteBuffer(bytes: chunk)
            }
            run.drain(&parser, &buffer)
            kept = buffer.readableBytes > 0 ? buffer : nil
            offset = end
            read += 1
        }
        run.unparsed = kept?.readableBytes ?? 0
        return run
    }

    /// Takes every request the buffer holds, as `ClientConnection.process` does.
    private mutating func drain(_ parser: inout RequestParser, _ buffer: inout ByteBuffer) {
        while error == nil {
            let before = buffer.readerIndex
            let isMultibulk = buffer.readableBytesView.first == UInt8(ascii: "*")
            do {
                guard let args = try parser.next(from: &buffer) else {
                    check(buffer.readerIndex == before, "nil after consuming \(buffer.readerIndex - before) bytes")
                    return
                }
                check(buffer.readerIndex > before, "a request \(hex(args.map { Array($0.readableBytesView) })) consumed no bytes")
                requests.append(args.map { Array($0.readableBytesView) })
                inline.append(!isMultibulk)
            } catch {
                self.error = error
            }
        }
    }
}
