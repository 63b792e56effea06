import NIOCore

/// A small RESP value tree for static replies (COMMAND INFO/DOCS), encodable in either version.
public indirect enum RESPValue: Sendable, Equatable {
    case simple(String)
    case bulk(String)
    case integer(Int)
    case null
    case array([RESPValue])
    case set([RESPValue])
    case map([(RESPValue, RESPValue)])

    public static func == (a: RESPValue, b: RESPValue) -> Bool {
        switch (a, b) {
        case (.simple(let x), .simple(let y)), (.bulk(let x), .bulk(let y)): return x == y
        case (.integer(let x), .integer(let y)): return x == y
        case (.null, .null): return true
        case (.array(let x), .array(let y)), (.set(let x), .set(let y)): return x == y
        case (.map(let x), .map(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

extension ByteBuffer {
    public mutating func writeRESPValue(_ value: RESPValue, _ version: RESPVersion) {
        switch value {
        case .simple(let s): writeRESPSimpleString(s)
        case .bulk(let s): writeRESPBulk(s)
        case .integer(let n): writeRESPInteger(n)
        case .null: writeRESPNull(version)
        case .array(let items):
            writeRESPArrayHeader(items.count)
            for item in items { writeRESPValue(item, version) }
        case .set(let items):
            writeRESPSetHeader(items.count, version)
            for item in items { writeRESPValue(item, version) }
        case .map(let pairs):
            writeRESPMapHeader(pairs.count, version)
            for (k, v) in pairs {
                writeRESPValue(k, version)
                writeRESPValue(v, version)
            }
        }
    }
}
