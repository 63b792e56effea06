import NIOCore
import Testing
@testable import RelayCore

@Suite struct UpstreamReplyScannerTests {
    let limits = UpstreamReplyScanner.Limits(maxElements: 10, maxBulkLength: 100, maxLineLength: 20)

    /// Scans `input` in chunks of `chunk` bytes; the violation, or nil.
    private func violation(_ input: String, chunk: Int = .max, limits: UpstreamReplyScanner.Limits? = nil) -> String? {
        violation(Array(input.utf8), chunk: chunk, limits: limits)
    }

    private func violation(_ bytes: [UInt8], chunk: Int = .max, limits: UpstreamReplyScanner.Limits? = nil) -> String? {
        var scanner = UpstreamReplyScanner(limits: limits ?? self.limits)
        do {
            var start = 0
            while start < bytes.count {
                let end = start + min(chunk, bytes.count - start)
                try bytes[start..<end].withUnsafeBytes { try scanner.scan($0) }
                start = end
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    static let valid = [
        "+OK\r\n", "-ERR no\r\n", ":42\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n", "$0\r\n\r\n",
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$100\r\n" + String(repeating: "x", count: 100) + "\r\n",
        "*2\r\n*10\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n:9\r\n:10\r\n$4\r\n\r\n\r\n\r\n",
    ]

    @Test(arguments: valid)
    func validRepliesPass(_ input: String) {
        for chunk in [1, 2, 3, 7, Int.max] {
            #expect(violation(input + input, chunk: chunk) == nil, "chunk \(chunk)")
        }
    }

    @Test func bulkContentsAreNotParsed() {
        // Bytes inside a bulk that look like headers are skipped.
        #expect(violation("$11\r\n*2147483647\r\n+PONG\r\n") == nil)
    }

    @Test func hugeArrayIsRefusedAtItsHeader() {
        // Refused as soon as the digits exceed the cap: the CRLF never needs to arrive.
        #expect(violation("*2147483647") == "reply declares an array of more than 10 elements")
        #expect(violation("*11\r\n", chunk: 1) == "reply declares an array of more than 10 elements")
        #expect(violation("*3\r\n*99999\r\n") != nil)
    }

    @Test func hugeBulkIsRefusedAtItsHeader() {
        #expect(violation("$1073741824\r\n") == "reply declares a bulk string of more than 100 bytes")
        #expect(violation("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$101\r\n") != nil)
    }

    @Test func endlessLineIsRefused() {
        #expect(violation("+" + String(repeating: "a", count: 19) + "\r\n") == nil)
        #expect(violation("-" + String(repeating: "a", count: 21), chunk: 4) == "reply line longer than 20 bytes")
    }

    @Test func notRESP2IsRefused() {
        #expect(violation("%1\r\n") == "reply starts with byte 0x25, not a RESP2 type")
        #expect(violation("*1x\r\n") != nil)
        #expect(violation("*\r\n") == "reply length header without digits")
        #expect(violation("$" + String(repeating: "0", count: 19) + "\r\n", limits: .init(maxElements: .max, maxBulkLength: .max)) != nil)
    }

    @Test func relayLimitsDeriveFromTheMessageLimit() {
        let small = UpstreamReplyScanner.Limits.relay(maxMessageBytes: 1024)
        #expect(small.maxBulkLength == 1 << 20)
        let large = UpstreamReplyScanner.Limits.relay(maxMessageBytes: 8 << 20)
        #expect(large.maxBulkLength == 16 << 20)
        #expect(large.maxElements == 4 << 20)
    }
}
