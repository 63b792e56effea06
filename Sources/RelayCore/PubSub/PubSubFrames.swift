import NIOCore

/// Encodes the push frames of pub/sub, each exactly as Redis writes it.
public enum PubSubFrames {
    /// `message channel payload` (`*3` in RESP2, `>3` in RESP3).
    public static func message(channel: ByteBuffer, payload: ByteBuffer, _ version: RESPVersion) -> ByteBuffer {
        message(channel: channel.readableBytesView, payload: payload.readableBytesView, version)
    }

    /// The same from any bytes (a reply hiredis parsed from the backplane).
    @inlinable
    public static func message<C: Collection, P: Collection>(channel: C, payload: P, _ version: RESPVersion) -> ByteBuffer
    where C.Element == UInt8, P.Element == UInt8 {
        push("$7\r\nmessage\r\n", channel: channel, payload: payload, version)
    }

    /// `smessage shardchannel payload` (`*3` in RESP2, `>3` in RESP3): an SPUBLISH's delivery.
    public static func smessage(channel: ByteBuffer, payload: ByteBuffer, _ version: RESPVersion) -> ByteBuffer {
        smessage(channel: channel.readableBytesView, payload: payload.readableBytesView, version)
    }

    @inlinable
    public static func smessage<C: Collection, P: Collection>(channel: C, payload: P, _ version: RESPVersion) -> ByteBuffer
    where C.Element == UInt8, P.Element == UInt8 {
        push("$8\r\nsmessage\r\n", channel: channel, payload: payload, version)
    }

    /// `kind channel payload`, `kind` given as its encoded bulk.
    @inlinable
    static func push<C: Collection, P: Collection>(_ kind: StaticString, channel: C, payload: P, _ version: RESPVersion) -> ByteBuffer
    where C.Element == UInt8, P.Element == UInt8 {
        var frame = ByteBufferAllocator().buffer(capacity: 32 + channel.count + payload.count)
        frame.writeRESPPushHeader(3, version)
        frame.writeStaticString(kind)
        frame.writeRESPBulk(bytes: channel)
        frame.writeRESPBulk(bytes: payload)
        return frame
    }

    /// `pmessage pattern channel payload` (`*4` in RESP2, `>4` in RESP3).
    public static func pmessage(pattern: ByteBuffer, channel: ByteBuffer, payload: ByteBuffer, _ version: RESPVersion) -> ByteBuffer {
        pmessage(pattern: pattern, channel: channel.readableBytesView, payload: payload.readableBytesView, version)
    }

    @inlinable
    public static func pmessage<C: Collection, P: Collection>(pattern: ByteBuffer, channel: C, payload: P, _ version: RESPVersion) -> ByteBuffer
    where C.Element == UInt8, P.Element == UInt8 {
        var frame = ByteBufferAllocator().buffer(capacity: 48 + pattern.readableBytes + channel.count + payload.count)
        frame.writeRESPPushHeader(4, version)
        frame.writeStaticString("$8\r\npmessage\r\n")
        frame.writeRESPBulk(pattern)
        frame.writeRESPBulk(bytes: channel)
        frame.writeRESPBulk(bytes: payload)
        return frame
    }

    /// A subscription confirmation: `kind name count`; a nil name is written as null.
    public static func confirmation(_ kind: StaticString, name: ByteBuffer?, count: Int, _ version: RESPVersion, into out: inout ByteBuffer) {
        out.writeRESPPushHeader(3, version)
        out.writeInteger(UInt8(ascii: "$"))
        out.writeDecimal(kind.utf8CodeUnitCount)
        out.writeCRLF()
        out.writeStaticString(kind)
        out.writeCRLF()
        if let name {
            out.writeRESPBulk(name)
        } else {
            out.writeRESPNull(version)
        }
        out.writeRESPInteger(count)
    }
}
