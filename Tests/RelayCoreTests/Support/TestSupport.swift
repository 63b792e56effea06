import NIOCore
@testable import RelayCore

/// A buffer holding `text`'s UTF-8 bytes.
func buffer(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

/// A buffer holding exactly `bytes`.
func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    ByteBuffer(bytes: bytes)
}

/// The readable bytes of a buffer.
func bytes(_ b: ByteBuffer) -> [UInt8] {
    Array(b.readableBytesView)
}

/// The readable bytes of each buffer, for comparing parsed arguments.
func bytes(_ args: [ByteBuffer]) -> [[UInt8]] {
    args.map { Array($0.readableBytesView) }
}

/// The UTF-8 bytes of each string.
func utf8(_ strings: String...) -> [[UInt8]] {
    strings.map { Array($0.utf8) }
}

/// A RESP2 multibulk request, as a client library writes it.
func multibulk(_ args: [UInt8]...) -> [UInt8] {
    multibulk(args)
}

func multibulk(_ args: [[UInt8]]) -> [UInt8] {
    var out = Array("*\(args.count)\r\n".utf8)
    for a in args {
        out += Array("$\(a.count)\r\n".utf8) + a + Array("\r\n".utf8)
    }
    return out
}

func multibulk(_ args: String...) -> [UInt8] {
    multibulk(args.map { Array($0.utf8) })
}

/// Bytes shown readably in failure messages (`\r\n` and non-printables escaped).
func show(_ b: [UInt8]) -> String {
    var s = ""
    for c in b {
        switch c {
        case 0x0D: s += "\\r"
        case 0x0A: s += "\\n"
        case 0x20...0x7E: s.append(Character(Unicode.Scalar(c)))
        default: s += "\\x" + String(c, radix: 16)
        }
    }
    return s
}

/// A local client for the hub and the executor: it records every delivered frame, in order,
/// into one buffer (as the connection's output would hold them) and keeps each frame too, so
/// that a test can check that a frame was shared rather than re-encoded.
final class TestClient: RelayClient {
    var session: ClientSession
    var output = ByteBuffer()
    var frames: [ByteBuffer] = []

    init(id: Int = 1) {
        session = ClientSession(id: id)
    }

    var respVersion: RESPVersion { session.resp }

    func deliver(_ frame: ByteBuffer, bytes: UnsafeRawBufferPointer) {
        precondition(bytes.elementsEqual(frame.readableBytesView), "bytes must be the frame's readable bytes")
        frames.append(frame)
        output.writeBytes(bytes)
    }

    /// The delivered bytes so far, then forgets them.
    func takeOutput() -> [UInt8] {
        defer { output.clear(); frames.removeAll() }
        return Array(output.readableBytesView)
    }
}

/// Bytes from a hex field of the generated vector tables (`-` is empty).
func hex(_ field: Substring) -> [UInt8] {
    if field == "-" { return [] }
    var out: [UInt8] = []
    var i = field.startIndex
    while i < field.endIndex {
        let j = field.index(i, offsetBy: 2)
        out.append(UInt8(field[i..<j], radix: 16)!)
        i = j
    }
    return out
}
