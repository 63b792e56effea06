/// Quoting of names and values into SQL text, as libpq's `PQescapeIdentifier` and
/// `PQescapeLiteral` do it, for SQL that is printed rather than sent.
public enum SQLQuoting {
    /// PostgreSQL keeps 63 bytes of a name (NAMEDATALEN - 1) and silently cuts longer ones.
    public static let maxNameBytes = 63

    /// `"name"`, with embedded `"` doubled: always quoted, so case, spaces, dots and keywords
    /// survive exactly.
    public static func identifier(_ name: String) -> String {
        var out = "\""
        for ch in name.unicodeScalars {
            if ch == "\"" { out.unicodeScalars.append("\"") }
            out.unicodeScalars.append(ch)
        }
        out.unicodeScalars.append("\"")
        return out
    }

    /// `schema.name`, both quoted.
    public static func qualified(_ schema: String, _ name: String) -> String {
        identifier(schema) + "." + identifier(name)
    }

    /// `'text'` with `'` doubled; a value holding a backslash is written `E'…'` with `\` doubled,
    /// so it reads the same whatever `standard_conforming_strings` is.
    public static func literal(_ text: String) -> String {
        var body = ""
        var hasBackslash = false
        for ch in text.unicodeScalars {
            if ch == "'" { body.unicodeScalars.append("'") }
            if ch == "\\" {
                body.unicodeScalars.append("\\")
                hasBackslash = true
            }
            body.unicodeScalars.append(ch)
        }
        return (hasBackslash ? "E'" : "'") + body + "'"
    }

    /// `$tag$body$tag$` with a tag that does not occur in `body` (a channel or column name
    /// could hold `$pubsub_relay$` and would otherwise end the quoted text early).
    public static func dollarQuoted(_ body: String, tag: String = "pubsub_relay") -> String {
        var candidate = tag
        var n = 0
        let bytes = Array(body.utf8)
        while containsBytes(bytes, Array("$\(candidate)$".utf8)) {
            n += 1
            candidate = "\(tag)_\(n)"
        }
        return "$\(candidate)$\(body)$\(candidate)$"
    }

    /// Byte-wise search: PostgreSQL's lexer reads bytes, where `String.contains` compares
    /// characters (a `$` followed by a combining accent is another character, not for the lexer).
    private static func containsBytes(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) {
            return true
        }
        return false
    }

    /// The longest prefix of `text` of at most `maxBytes` UTF-8 bytes that ends on a character
    /// boundary (PostgreSQL cuts names the same way).
    static func prefix(_ text: String, maxBytes: Int) -> String {
        var out = String.UnicodeScalarView()
        var count = 0
        for ch in text.unicodeScalars {
            let width = UTF8.width(ch)
            if count + width > maxBytes { break }
            out.append(ch)
            count += width
        }
        return String(out)
    }

    /// 32-bit FNV-1a, as 8 lowercase hex digits: a short name suffix that is the same on every
    /// run and every machine (Swift's `Hasher` is seeded per process).
    static func fnv1aHex(_ bytes: some Sequence<UInt8>) -> String {
        var hash: UInt32 = 0x811c_9dc5
        for byte in bytes {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        let digits = Array("0123456789abcdef".unicodeScalars)
        var out = String.UnicodeScalarView()
        for shift in stride(from: 28, through: 0, by: -4) {
            out.append(digits[Int((hash >> UInt32(shift)) & 0xf)])
        }
        return String(out)
    }
}
