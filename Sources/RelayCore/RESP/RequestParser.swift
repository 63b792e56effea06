import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Parses client requests (RESP multibulk and inline commands) exactly as Redis 7's
/// `processMultibulkBuffer` / `processInlineBuffer` do, including their error texts.
///
/// The parser never consumes a partial request: `next(from:)` returns `nil` and leaves the
/// buffer untouched until a whole request is present. It keeps its progress through that partial
/// request between calls (as Redis keeps `multibulklen`/`bulklen`), so a request arriving in many
/// small reads costs time linear in its bytes, not in their square. Between calls the caller may
/// only append to the buffer. Arguments are slices of the input buffer.
///
/// `RELAY_MAX_ARGUMENTS` and `RELAY_MAX_MESSAGE_BYTES` apply to inline requests as to multibulk
/// ones, with the same errors.
public struct RequestParser {
    /// Limits a peer cannot exceed; each maps to a Redis protocol error.
    public struct Limits: Sendable, Equatable {
        /// Largest argument (`RELAY_MAX_MESSAGE_BYTES`); Redis: `proto-max-bulk-len`.
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
    /// The client has not authenticated while a password is set (Redis's `authRequired`): a
    /// multibulk of more than 10 arguments or a bulk over 16384 bytes is then refused, as Redis
    /// refuses them, so that a client without the password cannot make the relay buffer much.
    /// The caller sets it before each `next` (AUTH runs between requests).
    public var unauthenticated = false
    /// Redis's limits on a request from an unauthenticated client.
    public static let unauthenticatedMaxArguments = 10
    public static let unauthenticatedMaxBulkLength = 16384
    private var progress = Progress()
    /// Bytes examined while looking for line ends, over the parser's life (the tests hold it to
    /// about one pass over the input, however it is split into reads).
    private(set) var bytesScanned = 0

    /// How far the parser got into the request at the front of the buffer. Offsets are relative
    /// to the buffer's reader index, which stays put until the request is complete.
    struct Progress {
        /// Readable bytes at the last call: fewer now means the caller started over.
        var seen = 0
        /// Bytes the buffer must hold before another attempt can get further (a large bulk
        /// arriving in many reads is not looked at until it is all there).
        var needed = 0
        /// Where the search for the current line's end resumes.
        var lineScan = 0
        /// A NUL ended the current line's search: C's `strchr` stops there, so Redis never finds
        /// this line's end (it waits, then refuses the request at the inline limit).
        var lineHitNul = false
        /// Multibulk arguments still to read; nil until the count line is parsed.
        var remaining: Int?
        /// Where the next argument's `$` line starts.
        var position = 0
        /// The arguments read so far, as offsets (no slices: they would share, and so copy on
        /// the caller's next append, the buffer being filled).
        var arguments: [(start: Int, length: Int)] = []
    }

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Returns the next request's arguments (possibly empty, which Redis ignores), `nil` when more
    /// bytes are needed, or throws a `ProtocolError` after which the connection must be closed.
    public mutating func next(from buffer: inout ByteBuffer) throws(ProtocolError) -> [ByteBuffer]? {
        let readable = buffer.readableBytes
        if readable < progress.seen { progress = Progress() }
        progress.seen = readable
        guard readable > 0, readable >= progress.needed else { return nil }
        progress.needed = 0
        let view = buffer.readableBytesView
        let consumed: Int?
        if view.first == UInt8(ascii: "*") {
            consumed = try parseMultibulk(view, buffer)
        } else {
            consumed = try parseInline(view, buffer)
        }
        guard let consumed else { return nil }
        let base = buffer.readerIndex
        let args: [ByteBuffer]
        if let words = inlineWords {
            args = words.map { ByteBuffer(bytes: $0) }
            inlineWords = nil
        } else {
            args = progress.arguments.map { buffer.getSlice(at: base + $0.start, length: $0.length)! }
        }
        progress = Progress()
        buffer.moveReaderIndex(forwardBy: consumed)
        return args
    }

    /// The words of a complete inline request, handed from `parseInline` to `next`.
    private var inlineWords: [[UInt8]]?

    /// `strchr(p, ch)` from the current line's start (`lineStart`, relative): the index of the
    /// first `ch`, or nil if a NUL or the end comes first. Resumes where the last call stopped.
    private mutating func findLineEnd(_ ch: UInt8, in buffer: ByteBuffer, lineStart: Int) -> Int? {
        if progress.lineHitNul { return nil }
        let from = max(progress.lineScan, lineStart)
        let found: Int? = buffer.withUnsafeReadableBytes { bytes in
            guard from < bytes.count, let base = bytes.baseAddress else { return nil }
            let count = bytes.count - from
            let start = base + from
            let hit = memchr(start, Int32(ch), count)
            let searched = hit.map { $0 - UnsafeMutableRawPointer(mutating: start) } ?? count
            // A NUL before the hit (or before the end) stops C's strchr there.
            if memchr(start, 0, searched) != nil {
                progress.lineHitNul = true
                return nil
            }
            bytesScanned &+= searched
            return hit == nil ? nil : from + searched
        }
        if let found {
            progress.lineScan = found
            return found
        }
        if !progress.lineHitNul { progress.lineScan = buffer.readableBytes }
        return nil
    }

    /// The bytes consumed by a complete multibulk request (its arguments in `progress`), or nil.
    private mutating func parseMultibulk(_ view: ByteBufferView, _ buffer: ByteBuffer) throws(ProtocolError) -> Int? {
        let base = view.startIndex
        let end = view.endIndex
        if progress.remaining == nil {
            guard let cr = findLineEnd(UInt8(ascii: "\r"), in: buffer, lineStart: 0).map({ base + $0 }) else {
                if end - base > limits.maxInlineLength { throw .tooBigMultibulkCount }
                return nil
            }
            // Redis refuses once more than 64 KiB sit without a '\r' (reading 16 KiB at a time),
            // so a longer count line is refused even when its '\r' came in the same read — the
            // same answer however the bytes were split into reads.
            if cr - base > limits.maxInlineLength { throw .tooBigMultibulkCount }
            // Redis only checks that one more byte follows the '\r' and skips it, whatever it is.
            if cr - base > (end - base) - 2 { return nil }
            guard let count = RedisInteger.parse(view[(base + 1)..<cr]), count <= Int64(Int32.max) else {
                throw .invalidMultibulkLength
            }
            if unauthenticated && count > Int64(Self.unauthenticatedMaxArguments) { throw .unauthenticatedMultibulkLength }
            let afterCount = cr + 2 - base
            if count <= 0 { return afterCount }
            if count > Int64(limits.maxArguments) { throw .tooManyArguments(Int(count), limit: limits.maxArguments) }
            progress.remaining = Int(count)
            progress.position = afterCount
            progress.arguments.reserveCapacity(min(Int(count), 1024))
        }
        while progress.remaining! > 0 {
            let lineStart = base + progress.position
            guard let lineEnd = findLineEnd(UInt8(ascii: "\r"), in: buffer, lineStart: progress.position).map({ base + $0 }) else {
                if end - lineStart > limits.maxInlineLength { throw .tooBigBulkCount }
                return nil
            }
            if lineEnd - lineStart > limits.maxInlineLength { throw .tooBigBulkCount }
            if lineEnd - lineStart > (end - lineStart) - 2 { return nil }
            let marker = view[lineStart]
            guard marker == UInt8(ascii: "$") else { throw .expectedDollar(got: marker) }
            guard let length = RedisInteger.parse(view[(lineStart + 1)..<lineEnd]), length >= 0 else {
                throw .invalidBulkLength
            }
            guard length <= Int64(limits.maxBulkLength) else {
                throw .bulkTooLarge(Int(clamping: length), limit: limits.maxBulkLength)
            }
            if unauthenticated && length > Int64(Self.unauthenticatedMaxBulkLength) { throw .unauthenticatedBulkLength }
            let dataStart = lineEnd + 2
            let bulk = Int(length)
            if end - dataStart < bulk + 2 {
                progress.needed = dataStart + bulk + 2 - base
                return nil
            }
            progress.arguments.append((dataStart - base, bulk))
            progress.position = dataStart + bulk + 2 - base
            progress.remaining! -= 1
        }
        return progress.position
    }

    /// The bytes consumed by a complete inline request (its words in `inlineWords`), or nil.
    private mutating func parseInline(_ view: ByteBufferView, _ buffer: ByteBuffer) throws(ProtocolError) -> Int? {
        let base = view.startIndex
        let end = view.endIndex
        guard let newline = findLineEnd(UInt8(ascii: "\n"), in: buffer, lineStart: 0).map({ base + $0 }) else {
            if end - base > limits.maxInlineLength { throw .tooBigInlineRequest }
            return nil
        }
        // Redis reads 16 KiB at a time and refuses once 64 KiB sit without a newline, so a line
        // longer than that is refused even when its newline arrived in the same read.
        if newline - base > limits.maxInlineLength { throw .tooBigInlineRequest }
        var lineEnd = newline
        if newline != base && view[newline - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        guard let words = InlineSplitter.split(view[base..<lineEnd]) else { throw .unbalancedQuotes }
        if words.count > limits.maxArguments { throw .tooManyArguments(words.count, limit: limits.maxArguments) }
        for word in words where word.count > limits.maxBulkLength {
            throw .bulkTooLarge(word.count, limit: limits.maxBulkLength)
        }
        inlineWords = words
        return newline + 1 - base
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
    /// Before AUTH (with a password set): more than 10 arguments, or a bulk over 16384 bytes.
    case unauthenticatedMultibulkLength
    case unauthenticatedBulkLength

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
        case .unauthenticatedMultibulkLength: return "ERR Protocol error: unauthenticated multibulk length"
        case .unauthenticatedBulkLength: return "ERR Protocol error: unauthenticated bulk length"
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
        "over_max_arguments", "unauthenticated_mbulk_length", "unauthenticated_bulk_length",
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
        case .unauthenticatedMultibulkLength: return "unauthenticated_mbulk_length"
        case .unauthenticatedBulkLength: return "unauthenticated_bulk_length"
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
