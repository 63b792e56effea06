import CHiredis
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import RelayCore

/// Owns one hiredis `redisReader`: the RESP2 reply parser of the upstream links. It does no I/O
/// (bytes are fed from NIO) and keeps hiredis's own limits on nesting and buffered bytes.
final class HiredisReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate: out of memory") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    struct ReaderError: Error, CustomStringConvertible {
        let description: String
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(ReaderError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw ReaderError(description: errorText)
        }
    }

    /// The next complete reply (the caller frees it with `freeReplyObject`), or nil when more
    /// bytes are needed.
    func next() throws(ReaderError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw ReaderError(description: errorText)
        }
        return raw.map { RedisReply($0.assumingMemoryBound(to: redisReply.self)) }
    }

    private var errorText: String {
        withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

@available(*, unavailable)
extension HiredisReader: Sendable {}

/// A borrowed view of a hiredis `redisReply` (valid until the top-level reply is freed).
struct RedisReply {
    let pointer: UnsafeMutablePointer<redisReply>

    init(_ pointer: UnsafeMutablePointer<redisReply>) {
        self.pointer = pointer
    }

    func free() {
        freeReplyObject(pointer)
    }

    var type: Int32 { pointer.pointee.type }
    var isArray: Bool { type == REDIS_REPLY_ARRAY }
    var isError: Bool { type == REDIS_REPLY_ERROR }
    var isInteger: Bool { type == REDIS_REPLY_INTEGER }
    var isStatus: Bool { type == REDIS_REPLY_STATUS }
    var isString: Bool { type == REDIS_REPLY_STRING }
    var integer: Int { Int(pointer.pointee.integer) }
    var count: Int { Int(pointer.pointee.elements) }

    /// The bytes of a string, status or error reply.
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: pointer.pointee.str, count: Int(pointer.pointee.len))
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    subscript(i: Int) -> RedisReply {
        precondition(isArray && i >= 0 && i < count, "reply element \(i) of \(count)")
        return RedisReply(pointer.pointee.element![i]!)
    }

    /// Whether this is a string equal to `ascii` (e.g. the kind of a pub/sub frame).
    func equals(_ ascii: StaticString) -> Bool {
        guard isString || isStatus, Int(pointer.pointee.len) == ascii.utf8CodeUnitCount else { return false }
        return memcmp(pointer.pointee.str, ascii.utf8Start, ascii.utf8CodeUnitCount) == 0
    }

    /// This reply re-encoded for a local client (arrays, bulks, integers, statuses, errors).
    func write(asRESP version: RESPVersion, into out: inout ByteBuffer) {
        switch type {
        case REDIS_REPLY_ARRAY:
            out.writeRESPArrayHeader(count)
            for i in 0..<count { self[i].write(asRESP: version, into: &out) }
        case REDIS_REPLY_INTEGER:
            out.writeRESPInteger(integer)
        case REDIS_REPLY_STRING:
            out.writeRESPBulk(bytes: bytes)
        case REDIS_REPLY_STATUS:
            out.writeInteger(UInt8(ascii: "+"))
            out.writeBytes(bytes)
            out.writeStaticString("\r\n")
        case REDIS_REPLY_ERROR:
            out.writeInteger(UInt8(ascii: "-"))
            out.writeBytes(bytes)
            out.writeStaticString("\r\n")
        default:
            out.writeRESPNull(version)
        }
    }
}

extension UpstreamReply {
    /// The typed copy of a hiredis reply (`onSubscriber`: pub/sub confirmations become
    /// `.confirmation`). Not for messages, which the link delivers from the borrowed reply.
    init(_ reply: RedisReply, onSubscriber: Bool) {
        switch reply.type {
        case REDIS_REPLY_STATUS: self = .status(ByteBuffer(bytes: reply.bytes))
        case REDIS_REPLY_ERROR: self = .error(ByteBuffer(bytes: reply.bytes))
        case REDIS_REPLY_INTEGER: self = .integer(reply.integer)
        case REDIS_REPLY_STRING: self = .bulk(ByteBuffer(bytes: reply.bytes))
        case REDIS_REPLY_ARRAY:
            if onSubscriber, reply.count == 3, reply[2].isInteger, let (kind, subscribe) = Self.confirmationKind(reply[0]) {
                self = .confirmation(kind, subscribe: subscribe, name: ByteBuffer(bytes: reply[1].bytes))
            } else {
                self = .array((0..<reply.count).map { UpstreamReply(reply[$0], onSubscriber: false) })
            }
        default: self = .null
        }
    }

    private static func confirmationKind(_ word: RedisReply) -> (SubscriptionKind, Bool)? {
        word.isString || word.isStatus ? UpstreamReply.confirmationKind(word.bytes) : nil
    }
}

/// Upstream commands as RESP multibulk, written with the project's own encoder: one pass over
/// the arguments (no recursion, no per-argument allocation), binary-safe, whatever their number.
enum RedisCommand {
    static func append(_ args: [ByteBuffer], to out: inout ByteBuffer) {
        var size = 16
        for arg in args { size += arg.readableBytes + 24 }
        out.reserveCapacity(minimumWritableBytes: size)
        out.writeRESPArrayHeader(args.count)
        for arg in args { out.writeRESPBulk(arg) }
    }
}
