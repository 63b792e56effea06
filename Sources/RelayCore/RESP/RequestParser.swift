import NIOCore

/// Parses client requests (RESP multibulk and inline commands) exactly as Redis 7's
/// `processMultibulkBuffer` / `processInlineBuffer` do, including their error texts.
///
/// The parser never consumes a partial request: `next(from:)` returns `nil` and leaves the
/// buffer untouched until a whole request is present. Arguments are slices of the input buffer.
public struct RequestParser {
    /// Limits a peer cannot exceed; each maps to a Redis protocol error.
    public struct Limits: Sendable, Equatable {
        /// Largest bulk argument (`RELAY_MAX_MESSAGE_BYTES`); Redis: `proto-max-bulk-len`.
        public var maxBulkLength: Int
        /// Largest argument count of one request (`RELAY_MAX_ARGUMENTS`).
        public var maxArguments: Int
        /// Redis's `PROTO_INLINE_MAX_SIZE`: an inline request or a count line without its end.
        public var maxInlineLength: Int

        public init(maxBulkLength: Int = 1 << 20, maxArguments: Int = 1 << 20, maxInlineLength: Int = 64 * 1024) {
            self.maxBulkLength = maxBulkLength
            self.maxArguments = maxArguments
            self.maxInlineLength = maxInlineLength
        }
    }

    public var limits: Limits
    /// Bytes the buffer must hold before another parse attempt can succeed (a cheap skip for
    /// large bulks arriving in many reads).
    private var bytesNeeded = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Returns the next request's arguments (possibly empty, which Redis ignores), `nil` when more
    /// bytes are needed, or throws a `ProtocolError` after which the connection must be closed.
    public mutating func next(from buffer: inout ByteBuffer) throws(ProtocolError) -> [ByteBuffer]? {
        let readable = buffer.readableBytes
        guard readable > 0, readable >= bytesNeeded else { return nil }
        bytesNeeded = 0
        let view = buffer.readableBytesView
        let result: ParseResult
        if view.first == UInt8(ascii: "*") {
            result = try parseMultibulk(view, buffer)
        } else {
            result = try parseInline(view)
        }
        switch result {
        case .needMore(let atLeast):
            bytesNeeded = atLeast
            return nil
        case .request(let args, let consumed):
            buffer.moveReaderIndex(forwardBy: consumed)
            return args
        }
    }

    private enum ParseResult {
        case needMore(atLeast: Int)
        case request([ByteBuffer], consumed: Int)
    }

    /// `strchr(p, ch)`: the first `ch` from `start`, or nil if a NUL or the end comes first.
    @inline(__always)
    private static func cFind(_ ch: UInt8, in view: ByteBufferView, from start: Int) -> Int? {
        var i = start
        let end = view.endIndex
        while i < end {
            let b = view[i]
            if b == ch { return i }
            if b == 0 { return nil }
            i += 1
        }
        return nil
    }

    private func parseMultibulk(_ view: ByteBufferView, _ buffer: ByteBuffer) throws(ProtocolError) -> ParseResult {
        let base = view.startIndex
        let end = view.endIndex
        guard let cr = Self.cFind(UInt8(ascii: "\r"), in: view, from: base) else {
            if end - base > limits.maxInlineLength { throw .tooBigMultibulkCount }
            return .needMore(atLeast: 0)
        }
        // Redis only checks that one more byte follows the '\r' and skips it, whatever it is.
        if cr - base > (end - base) - 2 { return .needMore(atLeast: 0) }
        guard let count = RedisInteger.parse(view[(base + 1)..<cr]), count <= Int64(Int32.max) else {
            throw .invalidMultibulkLength
        }
        var pos = cr + 2
        if count <= 0 { return .request([], consumed: pos - base) }
        if count > Int64(limits.maxArguments) { throw .tooManyArguments(Int(count), limit: limits.maxArguments) }

        var args: [ByteBuffer] = []
        args.reserveCapacity(min(Int(count), 1024))
        var remaining = Int(count)
        while remaining > 0 {
            guard let lineEnd = Self.cFind(UInt8(ascii: "\r"), in: view, from: pos) else {
                if end - pos > limits.maxInlineLength { throw .tooBigBulkCount }
                return .needMore(atLeast: 0)
            }
            if lineEnd - pos > (end - pos) - 2 { return .needMore(atLeast: 0) }
            let marker = view[pos]
            guard marker == UInt8(ascii: "$") else { throw .expectedDollar(got: marker) }
            guard let length = RedisInteger.parse(view[(pos + 1)..<lineEnd]), length >= 0 else {
                throw .invalidBulkLength
            }
            guard length <= Int64(limits.maxBulkLength) else {
                throw .bulkTooLarge(Int(clamping: length), limit: limits.maxBulkLength)
            }
            let dataStart = lineEnd + 2
            let bulk = Int(length)
            if end - dataStart < bulk + 2 {
                return .needMore(atLeast: dataStart + bulk + 2 - base)
            }
            args.append(buffer.getSlice(at: dataStart, length: bulk)!)
            pos = dataStart + bulk + 2
            remaining -= 1
        }
        return .request(args, consumed: pos - base)
    }

    private func parseInline(_ view: ByteBufferView) throws(ProtocolError) -> ParseResult {
        let base = view.startIndex
        let end = view.endIndex
        guard let newline = Self.cFind(UInt8(ascii: "\n"), in: view, from: base) else {
            if end - base > limits.maxInlineLength { throw .tooBigInlineRequest }
            return .needMore(atLeast: 0)
        }
        // Redis reads 16 KiB at a time and refuses once 64 KiB sit without a newline, so a line
        // longer than that is refused even when its newline arrived in the same read.
        if newline - base > limits.maxInlineLength { throw .tooBigInlineRequest }
        var lineEnd = newline
        if newline != base && view[newline - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        guard let words = InlineSplitter.split(view[base..<lineEnd]) else { throw .unbalancedQuotes }
        let args = words.map { ByteBuffer(bytes: $0) }
        return .request(args, consumed: newline + 1 - base)
    }
}

/// A request the relay must answer with a Redis protocol error and then disconnect.
public enum ProtocolError: Error, Equatable, Sendable {
    case tooBigInlineRequest
    case unbalancedQuotes
    case tooBigMultibulkCount
    case invalidMultibulkLength
    case tooBigBulkCount
    case expectedDollar(got: UInt8)
    case invalidBulkLength
    /// A bulk within Redis's own limits but above `RELAY_MAX_MESSAGE_BYTES`.
    case bulkTooLarge(Int, limit: Int)
    /// More arguments than `RELAY_MAX_ARGUMENTS`.
    case tooManyArguments(Int, limit: Int)

    /// The error line sent to the client: byte for byte what Redis sends.
    public var replyText: String {
        switch self {
        case .tooBigInlineRequest: return "ERR Protocol error: too big inline request"
        case .unbalancedQuotes: return "ERR Protocol error: unbalanced quotes in request"
        case .tooBigMultibulkCount: return "ERR Protocol error: too big mbulk count string"
        case .invalidMultibulkLength, .tooManyArguments: return "ERR Protocol error: invalid multibulk length"
        case .tooBigBulkCount: return "ERR Protocol error: too big bulk count string"
        case .expectedDollar(let got):
            // Redis formats the byte with %c: the raw byte goes out as is.
            return "ERR Protocol error: expected '$', got '\(Character(Unicode.Scalar(got)))'"
        case .invalidBulkLength, .bulkTooLarge: return "ERR Protocol error: invalid bulk length"
        }
    }

    /// The bytes of the reply line, `-…\r\n`, with the raw byte for `expectedDollar`.
    public var replyBytes: [UInt8] {
        if case .expectedDollar(let got) = self {
            // addReplyErrorFormat turns CR and LF into spaces so the reply stays one line.
            let shown = (got == 0x0D || got == 0x0A) ? UInt8(ascii: " ") : got
            return Array("-ERR Protocol error: expected '$', got '".utf8) + [shown] + Array("'\r\n".utf8)
        }
        return Array("-\(replyText)\r\n".utf8)
    }

    /// Every `reason`, so that metrics can show each at zero before it first happens.
    public static let allReasons = [
        "inline_too_big", "unbalanced_quotes", "mbulk_count_too_big", "invalid_mbulk_length",
        "bulk_count_too_big", "expected_dollar", "invalid_bulk_length", "bulk_over_max_message_bytes",
        "over_max_arguments",
    ]

    /// A short stable name, used as the metric label and in the log line.
    public var reason: String {
        switch self {
        case .tooBigInlineRequest: return "inline_too_big"
        case .unbalancedQuotes: return "unbalanced_quotes"
        case .tooBigMultibulkCount: return "mbulk_count_too_big"
        case .invalidMultibulkLength: return "invalid_mbulk_length"
        case .tooBigBulkCount: return "bulk_count_too_big"
        case .expectedDollar: return "expected_dollar"
        case .invalidBulkLength: return "invalid_bulk_length"
        case .bulkTooLarge: return "bulk_over_max_message_bytes"
        case .tooManyArguments: return "over_max_arguments"
        }
    }

    /// What the log line says, naming the setting where one applies.
    public var logDescription: String {
        switch self {
        case .bulkTooLarge(let n, let limit):
            return "bulk of \(n) bytes exceeds RELAY_MAX_MESSAGE_BYTES=\(limit)"
        case .tooManyArguments(let n, let limit):
            return "request of \(n) arguments exceeds RELAY_MAX_ARGUMENTS=\(limit)"
        default:
            return replyText.dropFirst(4).description
        }
    }
}

/// Redis's `string2ll`: strict decimal, no '+', no leading zeros, no spaces, 64-bit range.
public enum RedisInteger {
    public static func parse<C: Collection>(_ bytes: C) -> Int64? where C.Element == UInt8 {
        let count = bytes.count
        if count == 0 || count >= 21 { return nil }
        var it = bytes.makeIterator()
        var first = it.next()!
        if count == 1 && first == UInt8(ascii: "0") { return 0 }
        var negative = false
        var remaining = count - 1
        if first == UInt8(ascii: "-") {
            negative = true
            if remaining == 0 { return nil }
            first = it.next()!
            remaining -= 1
        }
        guard first >= UInt8(ascii: "1"), first <= UInt8(ascii: "9") else { return nil }
        var value = UInt64(first - UInt8(ascii: "0"))
        while remaining > 0 {
            let b = it.next()!
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = a
            remaining -= 1
        }
        if negative {
            if value > UInt64(Int64.max) + 1 { return nil }
            return value == UInt64(Int64.max) + 1 ? Int64.min : -Int64(value)
        }
        if value > UInt64(Int64.max) { return nil }
        return Int64(value)
    }

    /// Parses a whole buffer's readable bytes.
    public static func parse(_ buffer: ByteBuffer) -> Int64? {
        parse(buffer.readableBytesView)
    }
}
