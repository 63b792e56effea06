import NIOCore
import Testing
@testable import RelayCore

/// Runs the parser over `input` until it needs more bytes; returns the requests and how many
/// bytes are left unconsumed.
private func parseAll(
    _ input: [UInt8], limits: RequestParser.Limits = .init()
) throws(ProtocolError) -> (requests: [[[UInt8]]], unconsumed: Int) {
    var parser = RequestParser(limits: limits)
    var buf = buffer(input)
    var requests: [[[UInt8]]] = []
    while let args = try parser.next(from: &buf) {
        requests.append(bytes(args))
    }
    return (requests, buf.readableBytes)
}

/// The protocol error `input` ends in, or nil if it parses (possibly incompletely).
private func parseError(_ input: [UInt8], limits: RequestParser.Limits = .init()) -> ProtocolError? {
    do {
        _ = try parseAll(input, limits: limits)
        return nil
    } catch {
        return error
    }
}

/// Feeds `input` to one parser `chunk` bytes at a time, as socket reads would deliver it,
/// collecting every request returned along the way.
private func parseFed(_ input: [UInt8], chunk: Int, limits: RequestParser.Limits = .init()) throws(ProtocolError) -> [[[UInt8]]] {
    var parser = RequestParser(limits: limits)
    var buf = ByteBuffer()
    var requests: [[[UInt8]]] = []
    var offset = 0
    while offset < input.count {
        let end = min(offset + chunk, input.count)
        buf.writeBytes(input[offset..<end])
        offset = end
        while let args = try parser.next(from: &buf) {
            requests.append(bytes(args))
        }
    }
    #expect(buf.readableBytes == 0, "bytes left unconsumed after the last chunk")
    return requests
}

private let crlf = Array("\r\n".utf8)

@Suite struct RequestParserTests {
    // MARK: Complete requests

    @Test func multibulkRequestIsParsedAndConsumed() throws {
        let input = Array("*3\r\n$7\r\nPUBLISH\r\n$4\r\nnews\r\n$5\r\nhello\r\n".utf8)
        var parser = RequestParser()
        var buf = buffer(input)
        let args = try parser.next(from: &buf)
        #expect(args.map(bytes) == utf8("PUBLISH", "news", "hello"))
        #expect(buf.readableBytes == 0)
        #expect(try parser.next(from: &buf) == nil)
    }

    @Test func emptyBulkArgument() throws {
        let result = try parseAll(Array("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n".utf8))
        #expect(result.requests == [utf8("ECHO", "")])
        #expect(result.unconsumed == 0)
    }

    @Test func inlineRequestWithCRLF() throws {
        let result = try parseAll(Array("PING\r\n".utf8))
        #expect(result.requests == [utf8("PING")])
        #expect(result.unconsumed == 0)
    }

    @Test func inlineRequestWithBareLF() throws {
        let result = try parseAll(Array("subscribe news  weather\n".utf8))
        #expect(result.requests == [utf8("subscribe", "news", "weather")])
        #expect(result.unconsumed == 0)
    }

    @Test func inlineRequestWithQuotesAndEscapes() throws {
        let result = try parseAll(Array("PUBLISH \"my chan\" \"a\\x41\\n\" 'b c'\r\n".utf8))
        #expect(result.requests == [utf8("PUBLISH", "my chan", "aA\n", "b c")])
    }

    /// Redis's "Handle an empty query" (tests/unit/protocol.tcl): an empty line is an empty request.
    @Test func emptyInlineLinesAreEmptyRequests() throws {
        let result = try parseAll(Array("\r\n\n   \r\n\t\r\nPING\r\n".utf8))
        #expect(result.requests == [[], [], [], [], utf8("PING")])
        #expect(result.unconsumed == 0)
    }

    /// `*0` and `*-1` (and protocol.tcl's "Negative multibulk length" `*-10`) are empty requests
    /// that consume their line, after which the next request parses normally.
    @Test(arguments: ["*0\r\n", "*-1\r\n", "*-10\r\n"])
    func nonPositiveMultibulkCountIsAnEmptyRequest(_ header: String) throws {
        let input = Array(header.utf8) + multibulk("PING")
        var parser = RequestParser()
        var buf = buffer(input)
        let first = try parser.next(from: &buf)
        #expect(first.map(bytes) == [])
        #expect(buf.readableBytes == input.count - header.utf8.count)
        #expect(try parser.next(from: &buf).map(bytes) == utf8("PING"))
    }

    // MARK: Incomplete requests

    static let validRequests: [[UInt8]] = [
        multibulk("PUBLISH", "news", "hello"),
        multibulk("SUBSCRIBE", "a", "", "bb"),
        multibulk([Array("PUBLISH".utf8), [0x00, 0x0D, 0x0A], [0x2A, 0x24, 0x0D, 0x0A, 0x00, 0xFF]]),
        Array("*0\r\n".utf8),
        Array("PING\r\n".utf8),
        Array("PUBLISH \"a b\" 'c d'\n".utf8),
    ]

    /// Every strict prefix of a valid request yields nil and leaves the buffer untouched.
    @Test(arguments: validRequests)
    func everyIncompletePrefixNeedsMoreBytes(_ request: [UInt8]) throws {
        for split in 0..<request.count {
            var parser = RequestParser()
            var buf = buffer(Array(request[..<split]))
            let readerIndex = buf.readerIndex
            let args = try parser.next(from: &buf)
            #expect(args == nil, "prefix of \(split) bytes: \(show(Array(request[..<split])))")
            #expect(buf.readerIndex == readerIndex && buf.readableBytes == split, "prefix of \(split) bytes was consumed")
        }
    }

    /// The same request split in two reads at every point, on one parser (which remembers how
    /// many bytes it is waiting for), is returned once, whole, after the second read.
    @Test(arguments: validRequests)
    func requestSplitAcrossTwoReadsAtEveryPoint(_ request: [UInt8]) throws {
        let expected = try parseAll(request).requests
        #expect(expected.count == 1)
        for split in 0...request.count {
            var parser = RequestParser()
            var buf = buffer(Array(request[..<split]))
            let early = try parser.next(from: &buf)
            if split < request.count {
                #expect(early == nil)
                buf.writeBytes(request[split...])
                let args = try parser.next(from: &buf)
                #expect(args.map(bytes) == expected[0], "split at \(split)")
            } else {
                #expect(early.map(bytes) == expected[0])
            }
            #expect(buf.readableBytes == 0, "split at \(split)")
        }
    }

    @Test func requestFedOneByteAtATime() throws {
        let input = Self.validRequests.reduce([], +)
        let requests = try parseFed(input, chunk: 1)
        let whole = try parseAll(input)
        #expect(requests == whole.requests)
        #expect(requests.count == Self.validRequests.count)
    }

    // MARK: Pipelining

    @Test func pipelinedRequestsAreReturnedOneByOne() throws {
        let first = multibulk("SUBSCRIBE", "a")
        let second = Array("PING\r\n".utf8)
        let third = multibulk("PUBLISH", "a", "x")
        var parser = RequestParser()
        var buf = buffer(first + second + third + Array("*2\r\n$4\r\nECHO".utf8))
        #expect(try parser.next(from: &buf).map(bytes) == utf8("SUBSCRIBE", "a"))
        #expect(buf.readableBytes == second.count + third.count + 12)
        #expect(try parser.next(from: &buf).map(bytes) == utf8("PING"))
        #expect(try parser.next(from: &buf).map(bytes) == utf8("PUBLISH", "a", "x"))
        #expect(try parser.next(from: &buf) == nil)
        #expect(buf.readableBytes == 12)
    }

    // MARK: Binary safety

    @Test func bulkPayloadsAreBinarySafe() throws {
        let payload: [UInt8] = [0x00, 0x0D, 0x0A, 0x24, 0x2A, 0x0D, 0xFF, 0x80, 0x00, 0x0A]
        let channel: [UInt8] = [0x63, 0x00, 0x68]
        let result = try parseAll(multibulk(Array("PUBLISH".utf8), channel, payload))
        #expect(result.requests == [[Array("PUBLISH".utf8), channel, payload]])
        #expect(result.unconsumed == 0)
    }

    /// Redis does not check the two bytes after a bulk, nor the byte after a header's `\r`: it
    /// skips them, so `PINGxx` ends the bulk as well as `PING\r\n` does.
    @Test func bytesAfterBulkAndAfterHeaderCRAreSkippedUnchecked() throws {
        let result = try parseAll(Array("*1\r\n$4\r\nPINGxx*1\rX$4\rYPING\r\n".utf8))
        #expect(result.requests == [utf8("PING"), utf8("PING")])
        #expect(result.unconsumed == 0)
    }

    /// An inline line is read as a C string: a NUL hides the newline behind it, so Redis waits.
    @Test func inlineNulHidesTheNewline() throws {
        let result = try parseAll(Array("PI\u{0}NG\r\nPING\r\n".utf8))
        #expect(result.requests.isEmpty)
        #expect(result.unconsumed == 13)
    }

    @Test func argumentsAreCorrectWhenTheBufferDoesNotStartAtZero() throws {
        var parser = RequestParser()
        var buf = buffer(Array("junk".utf8) + multibulk("ECHO", "hello"))
        buf.moveReaderIndex(forwardBy: 4)
        #expect(try parser.next(from: &buf).map(bytes) == utf8("ECHO", "hello"))
    }

    // MARK: Protocol errors (tests/unit/protocol.tcl vectors, Redis's exact reply bytes)

    static let errorCases: [(input: String, error: ProtocolError, reply: String)] = [
        ("*3000000000\r\n", .invalidMultibulkLength, "-ERR Protocol error: invalid multibulk length\r\n"),
        ("*abc\r\n", .invalidMultibulkLength, "-ERR Protocol error: invalid multibulk length\r\n"),
        ("*+1\r\n", .invalidMultibulkLength, "-ERR Protocol error: invalid multibulk length\r\n"),
        ("*01\r\n", .invalidMultibulkLength, "-ERR Protocol error: invalid multibulk length\r\n"),
        ("*\r\n", .invalidMultibulkLength, "-ERR Protocol error: invalid multibulk length\r\n"),
        ("*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", .expectedDollar(got: UInt8(ascii: "f")),
         "-ERR Protocol error: expected '$', got 'f'\r\n"),
        ("*1\r\nfoo\r\n", .expectedDollar(got: UInt8(ascii: "f")), "-ERR Protocol error: expected '$', got 'f'\r\n"),
        ("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", .invalidBulkLength, "-ERR Protocol error: invalid bulk length\r\n"),
        ("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", .invalidBulkLength, "-ERR Protocol error: invalid bulk length\r\n"),
        ("*1\r\n$-0\r\n", .invalidBulkLength, "-ERR Protocol error: invalid bulk length\r\n"),
        ("*1\r\n$+1\r\n", .invalidBulkLength, "-ERR Protocol error: invalid bulk length\r\n"),
        ("*1\r\n$\r\n", .invalidBulkLength, "-ERR Protocol error: invalid bulk length\r\n"),
        ("set \"\"\"test-key\"\"\" test-value\r\nping\r\n", .unbalancedQuotes,
         "-ERR Protocol error: unbalanced quotes in request\r\n"),
        ("ECHO \"ab\"c\r\n", .unbalancedQuotes, "-ERR Protocol error: unbalanced quotes in request\r\n"),
        ("ECHO \"\r\nPING\r\n", .unbalancedQuotes, "-ERR Protocol error: unbalanced quotes in request\r\n"),
        ("PUBLISH 'it''s' x\r\n", .unbalancedQuotes, "-ERR Protocol error: unbalanced quotes in request\r\n"),
    ]

    @Test(arguments: errorCases)
    func protocolErrorWithRedisReply(_ c: (input: String, error: ProtocolError, reply: String)) {
        let error = parseError(Array(c.input.utf8))
        #expect(error == c.error, "\(show(Array(c.input.utf8)))")
        #expect(error.map { show($0.replyBytes) } == show(Array(c.reply.utf8)))
    }

    @Test func requestsBeforeAnErrorAreReturnedFirst() throws {
        var parser = RequestParser()
        var buf = buffer(multibulk("PING") + Array("*1\r\nfoo\r\n".utf8))
        #expect(try parser.next(from: &buf).map(bytes) == utf8("PING"))
        #expect(throws: ProtocolError.expectedDollar(got: UInt8(ascii: "f"))) {
            _ = try parser.next(from: &buf)
        }
    }

    /// `%c` writes the raw byte; Redis turns CR and LF into spaces so the reply stays one line.
    @Test func expectedDollarShowsTheRawByte() {
        #expect(parseError(Array("*1\r\n\r\n".utf8)) == .expectedDollar(got: 0x0D))
        #expect(ProtocolError.expectedDollar(got: 0x0D).replyBytes == Array("-ERR Protocol error: expected '$', got ' '\r\n".utf8))
        #expect(parseError(Array("*1\r\n\n\r\n".utf8)) == .expectedDollar(got: 0x0A))
        #expect(ProtocolError.expectedDollar(got: 0x0A).replyBytes == Array("-ERR Protocol error: expected '$', got ' '\r\n".utf8))
        #expect(parseError(Array("*1\r\n".utf8) + [0xE9, 0x0D, 0x0A]) == .expectedDollar(got: 0xE9))
        #expect(ProtocolError.expectedDollar(got: 0xE9).replyBytes
            == Array("-ERR Protocol error: expected '$', got '".utf8) + [0xE9] + Array("'\r\n".utf8))
    }

    // MARK: Unterminated lines (PROTO_INLINE_MAX_SIZE = 64 KiB)

    @Test func inlineRequestWithoutNewlineUpTo64KiBWaits() throws {
        let result = try parseAll([UInt8](repeating: UInt8(ascii: "A"), count: 64 * 1024))
        #expect(result.requests.isEmpty)
        #expect(result.unconsumed == 64 * 1024)
    }

    @Test func inlineRequestWithoutNewlineOver64KiBIsTooBig() {
        let error = parseError([UInt8](repeating: UInt8(ascii: "A"), count: 64 * 1024 + 1))
        #expect(error == .tooBigInlineRequest)
        #expect(error?.replyBytes == Array("-ERR Protocol error: too big inline request\r\n".utf8))
    }

    /// protocol.tcl's "Protocol desync regression test" sequences: a NUL followed by a stream
    /// without newline ends in a protocol error rather than an ever-growing buffer.
    @Test(arguments: [
        ("\u{0}", ProtocolError.tooBigInlineRequest, "-ERR Protocol error: too big inline request\r\n"),
        ("*\u{0}", ProtocolError.tooBigMultibulkCount, "-ERR Protocol error: too big mbulk count string\r\n"),
        ("$\u{0}", ProtocolError.tooBigInlineRequest, "-ERR Protocol error: too big inline request\r\n"),
    ])
    func protocolDesyncRegression(_ c: (String, ProtocolError, String)) {
        var parser = RequestParser()
        var buf = buffer(c.0)
        var error: ProtocolError?
        var sent = 0
        let payload = Array(String(repeating: "A", count: 1024).utf8) + [0x0A]
        while error == nil && sent < 200 * 1024 {
            buf.writeBytes(payload)
            sent += payload.count
            do {
                while try parser.next(from: &buf) != nil {}
            } catch let e {
                error = e
            }
        }
        #expect(error == c.1)
        #expect(error.map { show($0.replyBytes) } == show(Array(c.2.utf8)))
        #expect(sent > 64 * 1024, "an error before 64 KiB were buffered")
    }

    @Test func multibulkCountLineWithoutCR() throws {
        let digits = [UInt8](repeating: UInt8(ascii: "1"), count: 64 * 1024 - 1)
        let exact = try parseAll([UInt8(ascii: "*")] + digits)
        #expect(exact.requests.isEmpty && exact.unconsumed == 64 * 1024)
        let error = parseError([UInt8(ascii: "*")] + digits + [UInt8(ascii: "1")])
        #expect(error == .tooBigMultibulkCount)
        #expect(error?.replyBytes == Array("-ERR Protocol error: too big mbulk count string\r\n".utf8))
    }

    /// An over-long count line gets the same error whether its '\r' came in the same read or
    /// later (found by the fuzzer: the answer depended on how reads split the line).
    @Test func overLongCountLinesAreRefusedWhateverTheReads() throws {
        let limits = RequestParser.Limits(maxInlineLength: 256)
        let count = Array("*".utf8) + [UInt8](repeating: UInt8(ascii: "1"), count: 300) + Array("\r\n".utf8)
        #expect(parseError(count, limits: limits) == .tooBigMultibulkCount)
        #expect(throws: ProtocolError.tooBigMultibulkCount) { try parseFed(count, chunk: 15, limits: limits) }
        let bulk = Array("*1\r\n$".utf8) + [UInt8](repeating: UInt8(ascii: "4"), count: 300) + Array("\r\n".utf8)
        #expect(parseError(bulk, limits: limits) == .tooBigBulkCount)
        #expect(throws: ProtocolError.tooBigBulkCount) { try parseFed(bulk, chunk: 9, limits: limits) }
    }

    @Test func bulkCountLineWithoutCR() throws {
        let head = Array("*2\r\n$4\r\nECHO\r\n".utf8)
        let digits = [UInt8](repeating: UInt8(ascii: "1"), count: 64 * 1024 - 1)
        let exact = try parseAll(head + [UInt8(ascii: "$")] + digits)
        #expect(exact.requests.isEmpty && exact.unconsumed == head.count + 64 * 1024)
        let error = parseError(head + [UInt8(ascii: "$")] + digits + [UInt8(ascii: "1")])
        #expect(error == .tooBigBulkCount)
        #expect(error?.replyBytes == Array("-ERR Protocol error: too big bulk count string\r\n".utf8))
    }

    // MARK: Limits

    @Test func maxArgumentsLimit() throws {
        let limits = RequestParser.Limits(maxArguments: 3)
        #expect(try parseAll(multibulk("PUBLISH", "a", "b"), limits: limits).requests == [utf8("PUBLISH", "a", "b")])
        // Refused at the header, before the arguments arrive.
        let error = parseError(Array("*4\r\n".utf8), limits: limits)
        #expect(error == .tooManyArguments(4, limit: 3))
        #expect(error?.replyBytes == Array("-ERR Protocol error: invalid multibulk length\r\n".utf8))
        #expect(error?.reason == "over_max_arguments")
    }

    @Test func maxBulkLengthLimit() throws {
        let limits = RequestParser.Limits(maxBulkLength: 5)
        #expect(try parseAll(multibulk("ECHO", "12345"), limits: limits).requests == [utf8("ECHO", "12345")])
        // Refused at the bulk header, before the data arrives.
        let error = parseError(Array("*2\r\n$4\r\nECHO\r\n$6\r\n".utf8), limits: limits)
        #expect(error == .bulkTooLarge(6, limit: 5))
        #expect(error?.replyBytes == Array("-ERR Protocol error: invalid bulk length\r\n".utf8))
        #expect(error?.logDescription == "bulk of 6 bytes exceeds RELAY_MAX_MESSAGE_BYTES=5")
    }

    @Test func inlineRequestsHaveTheSameLimits() throws {
        let limits = RequestParser.Limits(maxBulkLength: 7, maxArguments: 3)
        #expect(try parseAll(Array("PUBLISH a 1234567\r\n".utf8), limits: limits).requests == [utf8("PUBLISH", "a", "1234567")])
        let long = parseError(Array("PUBLISH a 12345678\r\n".utf8), limits: limits)
        #expect(long == .bulkTooLarge(8, limit: 7))
        #expect(long?.replyBytes == Array("-ERR Protocol error: invalid bulk length\r\n".utf8))
        // The limit is on the argument after unquoting, as for a bulk.
        #expect(try parseAll(Array("ECHO \"\\x41\\x42\\x43\\x44\\x45\\x46\\x47\"\r\n".utf8), limits: limits).requests == [utf8("ECHO", "ABCDEFG")])
        let many = parseError(Array("SUBSCRIBE a b c\r\n".utf8), limits: limits)
        #expect(many == .tooManyArguments(4, limit: 3))
        #expect(many?.replyBytes == Array("-ERR Protocol error: invalid multibulk length\r\n".utf8))
    }

    @Test func partialRequestIsNotParsedAgainFromItsStart() throws {
        // 20 000 small arguments (~300 KB) arriving 100 bytes at a time: every byte is examined
        // about once, not once per read (which would be ~3000 passes).
        let args = ["SUBSCRIBE"] + (0..<20_000).map { "channel:\($0)" }
        let input = multibulk(args.map { Array($0.utf8) })
        var parser = RequestParser()
        var buf = ByteBuffer()
        var requests: [[ByteBuffer]] = []
        var offset = 0
        while offset < input.count {
            let end = min(offset + 100, input.count)
            buf.writeBytes(input[offset..<end])
            offset = end
            if let request = try parser.next(from: &buf) { requests.append(request) }
        }
        #expect(requests.count == 1 && requests[0].count == args.count)
        #expect(bytes(requests[0]) == args.map { Array($0.utf8) })
        #expect(parser.bytesScanned < 2 * input.count, "scanned \(parser.bytesScanned) bytes of \(input.count)")
    }

    @Test func oneMebibyteBulkAtTheLimitIsAccepted() throws {
        let mib = 1 << 20
        let payload = (0..<mib).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let input = multibulk(Array("PUBLISH".utf8), Array("big".utf8), payload)
        let result = try parseAll(input, limits: .init(maxBulkLength: mib))
        #expect(result.requests.count == 1)
        #expect(result.requests.first?[2] == payload)
        #expect(result.unconsumed == 0)
        // The same request arriving in 16 KiB reads.
        let fed = try parseFed(input, chunk: 16 * 1024, limits: .init(maxBulkLength: mib))
        #expect(fed.count == 1 && fed.first?[2] == payload)
    }

    @Test func bulkOneByteOverTheLimitIsRejected() {
        let mib = 1 << 20
        let input = multibulk(Array("PUBLISH".utf8), Array("big".utf8), [UInt8](repeating: 7, count: mib + 1))
        let error = parseError(input, limits: .init(maxBulkLength: mib))
        #expect(error == .bulkTooLarge(mib + 1, limit: mib))
        #expect(error?.replyBytes == Array("-ERR Protocol error: invalid bulk length\r\n".utf8))
    }

    @Test func defaultLimitsAreRedisAndDesignDefaults() {
        let limits = RequestParser.Limits()
        #expect(limits.maxBulkLength == 1 << 20)
        #expect(limits.maxInlineLength == 64 * 1024)
    }
}

/// Before AUTH (a password set), Redis 7.0 refuses a multibulk of more than 10 arguments and a
/// bulk over 16384 bytes (checked against `redis-server --requirepass`).
@Suite struct RequestParserUnauthenticatedTests {
    private func error(_ input: [UInt8], unauthenticated: Bool = true, limits: RequestParser.Limits = .init()) -> ProtocolError? {
        var parser = RequestParser(limits: limits)
        parser.unauthenticated = unauthenticated
        var buffer = ByteBuffer(bytes: input)
        do {
            while try parser.next(from: &buffer) != nil {}
            return nil
        } catch {
            return error
        }
    }

    @Test func moreThanTenArguments() {
        #expect(error(Array("*11\r\n".utf8)) == .unauthenticatedMultibulkLength)
        #expect(error(Array("*10\r\n".utf8)) == nil)
        #expect(error(Array("*11\r\n".utf8), unauthenticated: false) == nil)
        #expect(ProtocolError.unauthenticatedMultibulkLength.replyBytes == Array("-ERR Protocol error: unauthenticated multibulk length\r\n".utf8))
        // Redis checks the count's syntax first.
        #expect(error(Array("*2147483648\r\n".utf8)) == .invalidMultibulkLength)
    }

    @Test func bulkOver16384Bytes() {
        #expect(error(Array("*2\r\n$4\r\nAUTH\r\n$16385\r\n".utf8)) == .unauthenticatedBulkLength)
        #expect(error(Array("*2\r\n$4\r\nAUTH\r\n$16384\r\n".utf8)) == nil)
        #expect(error(Array("*2\r\n$4\r\nAUTH\r\n$16385\r\n".utf8), unauthenticated: false) == nil)
        #expect(ProtocolError.unauthenticatedBulkLength.replyBytes == Array("-ERR Protocol error: unauthenticated bulk length\r\n".utf8))
        // Over RELAY_MAX_MESSAGE_BYTES comes first, as proto-max-bulk-len does in Redis.
        #expect(error(Array("*2\r\n$4\r\nAUTH\r\n$20000\r\n".utf8), limits: .init(maxBulkLength: 17000))
            == .bulkTooLarge(20000, limit: 17000))
    }

    /// Inline requests have no such limit in Redis (only the 64 KiB line).
    @Test func inlineRequestsAreNotLimited() {
        let words = (0..<20).map { "w\($0)" }.joined(separator: " ")
        #expect(error(Array("\(words)\r\n".utf8)) == nil)
    }
}

@Suite struct RedisIntegerTests {
    /// `string2ll`'s rules: strict decimal, no sign but '-', no leading zeros, no spaces,
    /// at most 20 characters, 64-bit range.
    @Test(arguments: [
        ("0", Int64(0)), ("1", 1), ("-1", -1), ("10", 10), ("123456789", 123_456_789),
        ("9223372036854775807", Int64.max), ("-9223372036854775808", Int64.min),
        ("-9223372036854775807", -Int64.max),
    ])
    func valid(_ c: (String, Int64)) {
        #expect(RedisInteger.parse(Array(c.0.utf8)) == c.1)
        #expect(RedisInteger.parse(buffer(c.0)) == c.1)
    }

    @Test(arguments: [
        "", "-", "+", "+1", "-0", "00", "01", "-01", " 1", "1 ", "1a", "a1", "1.0", "0x10", "1e3",
        "9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
        "99999999999999999999", "--1", "1-",
        "000000000000000000001",
    ])
    func invalid(_ text: String) {
        #expect(RedisInteger.parse(Array(text.utf8)) == nil, "'\(text)'")
    }

    @Test func embeddedNulIsNotANumber() {
        #expect(RedisInteger.parse([UInt8(ascii: "1"), 0, UInt8(ascii: "2")]) == nil)
    }

    /// The whole-buffer overload reads only the readable bytes.
    @Test func bufferOverloadReadsReadableBytes() {
        var b = buffer("xx42")
        b.moveReaderIndex(forwardBy: 2)
        #expect(RedisInteger.parse(b) == 42)
    }
}
