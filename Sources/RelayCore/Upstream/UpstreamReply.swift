import NIOCore

/// One reply from Redis on an upstream connection, typed by the I/O edge from hiredis's borrowed
/// reply. Pub/sub messages never take this form: the edge hands them to the hub directly (the hot
/// path), and they change nothing in the backplane's state.
public indirect enum UpstreamReply: Sendable, Equatable {
    case status(ByteBuffer)
    case error(ByteBuffer)
    case integer(Int)
    case bulk(ByteBuffer)
    case null
    case array([UpstreamReply])
    /// A `(p|s)subscribe`/`(p|s)unsubscribe` push on the subscriber connection.
    case confirmation(SubscriptionKind, subscribe: Bool, name: ByteBuffer)

    /// The kind of a confirmation push from its first element (`ssubscribe` → `.shard`,
    /// subscribe), or nil for any other word (`message`, `pong`…).
    public static func confirmationKind(_ word: some Collection<UInt8>) -> (SubscriptionKind, subscribe: Bool)? {
        for kind in SubscriptionKind.allCases {
            if word.elementsEqual(kind.subscribeWord.description.utf8) { return (kind, true) }
            if word.elementsEqual(kind.unsubscribeWord.description.utf8) { return (kind, false) }
        }
        return nil
    }

    public var isError: Bool {
        if case .error = self { return true }
        return false
    }

    /// The integer of an integer reply.
    public var integer: Int? {
        if case .integer(let n) = self { return n }
        return nil
    }

    /// The text of a status, error or bulk reply.
    public var text: String {
        switch self {
        case .status(let b), .error(let b), .bulk(let b): return String(buffer: b)
        case .integer(let n): return ":\(n)"
        case .null: return "(nil)"
        case .array(let a): return "array of \(a.count)"
        case .confirmation(let kind, let subscribe, let name):
            return "\(subscribe ? kind.subscribeWord : kind.unsubscribeWord) \(String(buffer: name))"
        }
    }

    /// This reply re-encoded for a local client.
    public func write(asRESP version: RESPVersion, into out: inout ByteBuffer) {
        switch self {
        case .status(let b):
            out.writeInteger(UInt8(ascii: "+"))
            out.writeImmutableBuffer(b)
            out.writeStaticString("\r\n")
        case .error(let b):
            out.writeInteger(UInt8(ascii: "-"))
            out.writeImmutableBuffer(b)
            out.writeStaticString("\r\n")
        case .integer(let n):
            out.writeRESPInteger(n)
        case .bulk(let b):
            out.writeRESPBulk(b)
        case .null:
            out.writeRESPNull(version)
        case .array(let elements):
            out.writeRESPArrayHeader(elements.count)
            for e in elements { e.write(asRESP: version, into: &out) }
        case .confirmation(let kind, let subscribe, let name):
            out.writeRESPArrayHeader(3)
            out.writeRESPBulk((subscribe ? kind.subscribeWord : kind.unsubscribeWord).description)
            out.writeRESPBulk(name)
            out.writeRESPInteger(0)
        }
    }
}
