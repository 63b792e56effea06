/// Checks the bytes an upstream Redis sends, as they arrive and before hiredis parses them,
/// against caps on what one reply may declare. hiredis 0.14 allocates an aggregate's element
/// array from its header alone (`*2147483647` costs seconds to allocate and free) and buffers a
/// bulk string whole, so a broken or hostile peer could otherwise stall the event loop or take
/// unbounded memory. Past a cap the link is dropped and reconnected like any other failure.
///
/// Streaming and linear: constant state between reads, each byte of a header looked at once,
/// bulk contents skipped without being looked at. RESP2 only (the links speak RESP2).
public struct UpstreamReplyScanner: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Most elements one array may declare.
        public var maxElements: Int
        /// Longest bulk string.
        public var maxBulkLength: Int
        /// Longest status, error or integer line.
        public var maxLineLength: Int

        public init(maxElements: Int, maxBulkLength: Int, maxLineLength: Int = 64 * 1024) {
            self.maxElements = maxElements
            self.maxBulkLength = maxBulkLength
            self.maxLineLength = maxLineLength
        }

        /// The relay's caps: bulks up to twice `RELAY_MAX_MESSAGE_BYTES` (no relay publishes more
        /// than that; the margin lets a direct publisher's somewhat larger message through), at
        /// least 1 MiB; arrays up to 4 Mi elements (PUBSUB CHANNELS of a very busy Redis).
        public static func relay(maxMessageBytes: Int) -> Limits {
            Limits(maxElements: 4 << 20, maxBulkLength: max(2 * maxMessageBytes, 1 << 20))
        }
    }

    /// What the peer sent that exceeds a cap or is not RESP2.
    public struct Violation: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    private enum State: Equatable {
        /// Expecting a reply's type byte.
        case type
        /// Inside a `*` or `$` header: digits so far.
        case length(marker: UInt8, value: Int, digits: Int, negative: Bool)
        /// Inside a status, error or integer line.
        case line(length: Int)
        /// Inside a bulk string: bytes left, its CRLF included.
        case bulk(remaining: Int)
    }

    public let limits: Limits
    private var state = State.type

    public init(limits: Limits) {
        self.limits = limits
    }

    /// Scans the next bytes of the stream; throws at the first byte that exceeds a cap.
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) throws(Violation) {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .type:
                let marker = bytes[i]
                i += 1
                switch marker {
                case UInt8(ascii: "*"), UInt8(ascii: "$"):
                    state = .length(marker: marker, value: 0, digits: 0, negative: false)
                case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"):
                    state = .line(length: 0)
                default:
                    throw Violation(description: "reply starts with byte 0x\(String(marker, radix: 16)), not a RESP2 type")
                }
            case .length(let marker, var value, var digits, var negative):
                while i < n {
                    let b = bytes[i]
                    i += 1
                    if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                        if digits == 18 { throw Violation(description: "reply length header of more than 18 digits") }
                        digits += 1
                        value = value * 10 + Int(b - UInt8(ascii: "0"))
                        if !negative { try check(marker, value) }
                    } else if b == UInt8(ascii: "-") && digits == 0 && !negative {
                        negative = true
                    } else if b == UInt8(ascii: "\r") {
                        continue
                    } else if b == UInt8(ascii: "\n") {
                        if digits == 0 { throw Violation(description: "reply length header without digits") }
                        state = marker == UInt8(ascii: "$") && !negative ? .bulk(remaining: value + 2) : .type
                        break
                    } else {
                        throw Violation(description: "reply length header with byte 0x\(String(b, radix: 16))")
                    }
                }
                if case .length = state { state = .length(marker: marker, value: value, digits: digits, negative: negative) }
            case .line(var length):
                while i < n {
                    let b = bytes[i]
                    i += 1
                    if b == UInt8(ascii: "\n") {
                        state = .type
                        break
                    }
                    length += 1
                    if length > limits.maxLineLength {
                        throw Violation(description: "reply line longer than \(limits.maxLineLength) bytes")
                    }
                }
                if case .line = state { state = .line(length: length) }
            case .bulk(let remaining):
                let skip = min(remaining, n - i)
                i += skip
                state = remaining == skip ? .type : .bulk(remaining: remaining - skip)
            }
        }
    }

    private func check(_ marker: UInt8, _ value: Int) throws(Violation) {
        if marker == UInt8(ascii: "*"), value > limits.maxElements {
            throw Violation(description: "reply declares an array of more than \(limits.maxElements) elements")
        }
        if marker == UInt8(ascii: "$"), value > limits.maxBulkLength {
            throw Violation(description: "reply declares a bulk string of more than \(limits.maxBulkLength) bytes")
        }
    }
}
