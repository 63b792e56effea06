import NIOCore
@testable import RelayCore

/// `resp`, one complete RESP2 reply as Redis sent it, as the `UpstreamReply` the I/O edge would
/// make of it: so that tests can feed replies captured from a real server verbatim.
func upstreamReply(_ resp: String) -> UpstreamReply {
    var bytes = Array(resp.utf8)[...]
    let reply = upstreamReply(&bytes)
    precondition(bytes.isEmpty, "trailing bytes after the reply")
    return reply
}

private func upstreamReply(_ bytes: inout ArraySlice<UInt8>) -> UpstreamReply {
    func line() -> String {
        let end = bytes.firstIndex(of: UInt8(ascii: "\r"))!
        let text = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
        bytes = bytes[(end + 2)...]
        return text
    }
    let type = bytes.removeFirst()
    let header = line()
    switch type {
    case UInt8(ascii: "+"): return .status(ByteBuffer(string: header))
    case UInt8(ascii: "-"): return .error(ByteBuffer(string: header))
    case UInt8(ascii: ":"): return .integer(Int(header)!)
    case UInt8(ascii: "$"):
        let n = Int(header)!
        if n < 0 { return .null }
        let body = ByteBuffer(bytes: bytes.prefix(n))
        bytes = bytes.dropFirst(n + 2)
        return .bulk(body)
    case UInt8(ascii: "*"):
        let n = Int(header)!
        if n < 0 { return .null }
        return .array((0..<n).map { _ in upstreamReply(&bytes) })
    default:
        preconditionFailure("not RESP2: \(type)")
    }
}
