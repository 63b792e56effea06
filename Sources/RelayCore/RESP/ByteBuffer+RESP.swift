import NIOCore

/// The RESP protocol version a client speaks: 2 (default) or 3 (after `HELLO 3`).
public enum RESPVersion: Int, Sendable {
    case resp2 = 2
    case resp3 = 3
}

/// RESP encoding. Each function writes one complete frame (or a frame header) in the given version.
extension ByteBuffer {
    @inline(__always)
    mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A), endianness: .big)
    }

    @inline(__always)
    mutating func writeDecimal(_ value: Int) {
        if value >= 0 && value < 10 {
            writeInteger(UInt8(0x30 + value))
        } else {
            writeString(String(value))
        }
    }

    /// `+text\r\n`
    public mutating func writeRESPSimpleString(_ text: String) {
        writeInteger(UInt8(ascii: "+"))
        writeString(text)
        writeCRLF()
    }

    /// `:n\r\n`
    public mutating func writeRESPInteger(_ value: Int) {
        writeInteger(UInt8(ascii: ":"))
        writeDecimal(value)
        writeCRLF()
    }

    /// `$len\r\nbytes\r\n`
    public mutating func writeRESPBulk(_ bytes: ByteBuffer) {
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(bytes.readableBytes)
        writeCRLF()
        writeImmutableBuffer(bytes)
        writeCRLF()
    }

    public mutating func writeRESPBulk<S: Collection>(bytes: S) where S.Element == UInt8 {
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(bytes.count)
        writeCRLF()
        writeBytes(bytes)
        writeCRLF()
    }

    public mutating func writeRESPBulk(_ text: String) {
        writeRESPBulk(bytes: text.utf8)
    }

    /// Null: `$-1` in RESP2, `_` in RESP3.
    public mutating func writeRESPNull(_ version: RESPVersion) {
        switch version {
        case .resp2: writeStaticString("$-1\r\n")
        case .resp3: writeStaticString("_\r\n")
        }
    }

    /// `*n\r\n`
    public mutating func writeRESPArrayHeader(_ count: Int) {
        writeInteger(UInt8(ascii: "*"))
        writeDecimal(count)
        writeCRLF()
    }

    /// A push frame header: `>n` in RESP3, a plain array in RESP2.
    public mutating func writeRESPPushHeader(_ count: Int, _ version: RESPVersion) {
        writeInteger(version == .resp3 ? UInt8(ascii: ">") : UInt8(ascii: "*"))
        writeDecimal(count)
        writeCRLF()
    }

    /// A map header: `%n` in RESP3, an array of 2n in RESP2.
    public mutating func writeRESPMapHeader(_ pairs: Int, _ version: RESPVersion) {
        if version == .resp3 {
            writeInteger(UInt8(ascii: "%"))
            writeDecimal(pairs)
        } else {
            writeInteger(UInt8(ascii: "*"))
            writeDecimal(pairs * 2)
        }
        writeCRLF()
    }

    /// A set header: `~n` in RESP3, an array in RESP2.
    public mutating func writeRESPSetHeader(_ count: Int, _ version: RESPVersion) {
        writeInteger(version == .resp3 ? UInt8(ascii: "~") : UInt8(ascii: "*"))
        writeDecimal(count)
        writeCRLF()
    }

    /// Redis's `addReplyVerbatim(…, "txt")`: a bulk in RESP2, `=len\r\ntxt:…` in RESP3.
    public mutating func writeRESPVerbatimText(_ text: String, _ version: RESPVersion) {
        if version == .resp2 {
            writeRESPBulk(text)
            return
        }
        writeInteger(UInt8(ascii: "="))
        writeDecimal(text.utf8.count + 4)
        writeCRLF()
        writeStaticString("txt:")
        writeString(text)
        writeCRLF()
    }
}

extension ByteBuffer {
    /// A copy holding only the readable bytes, for a key kept beyond the request: a slice of a
    /// read buffer would keep the whole buffer alive.
    public func compacted() -> ByteBuffer {
        var copy = ByteBufferAllocator().buffer(capacity: readableBytes)
        copy.writeImmutableBuffer(self)
        return copy
    }
}
