/// The Redis Cluster hash slot of a key or channel: Redis's `keyHashSlot` (`src/cluster.c`), byte
/// for byte, so that the relay sends each `SPUBLISH`/`SSUBSCRIBE` to the master that owns it.
public enum ClusterSlot {
    /// The number of hash slots of every Redis Cluster.
    public static let count = 16384

    /// The slot of `key`: CRC16-XMODEM of the key, or of its hash tag, modulo 16384. The tag is
    /// what lies between the first `{` and the first `}` after it, when that is not empty
    /// (`{user1}.a` and `{user1}.b` share a slot; `{}x`, `a{b` and `{{a}}`'s outer braces do not
    /// count as Redis reads them).
    @inlinable
    public static func of<C: Collection>(_ key: C) -> Int where C.Element == UInt8 {
        if let slot = key.withContiguousStorageIfAvailable({ of(bytes: $0) }) { return slot }
        return Array(key).withUnsafeBufferPointer { of(bytes: $0) }
    }

    @usableFromInline
    static func of(bytes key: UnsafeBufferPointer<UInt8>) -> Int {
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
           close > open + 1 {
            return Int(crc16(UnsafeBufferPointer(rebasing: key[(open + 1)..<close])) & 0x3FFF)
        }
        return Int(crc16(key) & 0x3FFF)
    }

    /// CRC16-CCITT in the XMODEM variant (polynomial 0x1021, initial value 0, no reflection), the
    /// checksum of Redis's `src/crc16.c`: "123456789" gives 0x31C3.
    static func crc16(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        table.withUnsafeBufferPointer { table in
            for b in bytes {
                crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ b)]
            }
        }
        return crc
    }

    /// The 256-entry table of `crc16.c`'s `crc16tab`, computed from the polynomial once rather than
    /// copied (the tests check it against the known CRC and against a real cluster's slots).
    private static let table: [UInt16] = (0..<256).map { byte in
        var crc = UInt16(byte) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
