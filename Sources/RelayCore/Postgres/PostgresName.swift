/// Reads table and column names given on the command line the way PostgreSQL reads them in SQL:
/// a plain name is folded to lower case (`Orders` is `orders`), a double-quoted one is taken
/// exactly (`"My Table"`, with `""` for a quote inside it).
public enum PostgresName {
    /// `SCHEMA.TABLE` or `TABLE` (schema `public`).
    public static func parseQualified(_ text: String, option: String) throws(TriggerSQLError) -> (schema: String, name: String) {
        let expected = "expected SCHEMA.TABLE or TABLE (schema public), with double quotes around a name that has capitals, spaces or dots, e.g. '\"My Schema\".\"odd.table\"'"
        let names = try scan(text, separator: ".", option: option, expected: expected)
        switch names.count {
        case 1: return ("public", names[0])
        case 2: return (names[0], names[1])
        default:
            throw TriggerSQLError(option, "'\(text)' has \(names.count) dot-separated names; \(expected)")
        }
    }

    /// `a,b,"Mixed Case"`: a comma-separated list of names.
    public static func parseList(_ text: String, option: String) throws(TriggerSQLError) -> [String] {
        let expected = "expected a comma-separated list of column names, with double quotes around a name that has capitals, spaces or commas"
        return try scan(text, separator: ",", option: option, expected: expected)
    }

    private static func scan(_ text: String, separator: Unicode.Scalar, option: String, expected: String) throws(TriggerSQLError) -> [String] {
        let s = Array(text.unicodeScalars)
        var i = 0
        var names: [String] = []
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" }
        if s.allSatisfy(isSpace) {
            throw TriggerSQLError(option, "is empty; \(expected)")
        }
        while true {
            while i < s.count, isSpace(s[i]) { i += 1 }
            var name = String.UnicodeScalarView()
            if i < s.count, s[i] == "\"" {
                i += 1
                var closed = false
                while i < s.count {
                    if s[i] == "\"" {
                        if i + 1 < s.count, s[i + 1] == "\"" {
                            name.append("\"")
                            i += 2
                            continue
                        }
                        i += 1
                        closed = true
                        break
                    }
                    name.append(s[i])
                    i += 1
                }
                guard closed else {
                    throw TriggerSQLError(option, "'\(text)' has an unterminated double quote; \(expected) (write \"\" for a quote inside a quoted name)")
                }
                guard !name.isEmpty else {
                    throw TriggerSQLError(option, "'\(text)' has an empty quoted name \"\"; \(expected)")
                }
            } else {
                let start = i
                while i < s.count, s[i] != separator { i += 1 }
                var end = i
                while end > start, isSpace(s[end - 1]) { end -= 1 }
                let raw = String(String.UnicodeScalarView(s[start..<end]))
                guard !raw.isEmpty else {
                    throw TriggerSQLError(option, "'\(text)' has an empty name; \(expected)")
                }
                guard isPlain(raw) else {
                    throw TriggerSQLError(option, "'\(raw)' is not a plain name (letters, digits, _ and $, not starting with a digit or $); write it in double quotes as in SQL: \(SQLQuoting.identifier(raw))")
                }
                name = foldedToLowerCase(raw)
            }
            let folded = String(name)
            if folded.utf8.count > SQLQuoting.maxNameBytes {
                throw TriggerSQLError(option, "name '\(folded)' is \(folded.utf8.count) bytes; PostgreSQL names are at most \(SQLQuoting.maxNameBytes) bytes")
            }
            names.append(folded)
            while i < s.count, isSpace(s[i]) { i += 1 }
            if i == s.count { return names }
            guard s[i] == separator else {
                throw TriggerSQLError(option, "'\(text)' has '\(s[i])' after the quoted name \(SQLQuoting.identifier(folded)); \(expected)")
            }
            i += 1
        }
    }

    /// PostgreSQL's unquoted identifier: `[A-Za-z_\x80-]` then also digits and `$`.
    static func isPlain(_ name: String) -> Bool {
        var first = true
        for c in name.unicodeScalars {
            let v = c.value
            let letter = (v >= 0x41 && v <= 0x5a) || (v >= 0x61 && v <= 0x7a) || v == 0x5f || v >= 0x80
            let laterOnly = (v >= 0x30 && v <= 0x39) || v == 0x24
            if !(letter || (!first && laterOnly)) { return false }
            first = false
        }
        return !first
    }

    /// ASCII letters only, as PostgreSQL folds identifiers in a UTF-8 database.
    static func foldedToLowerCase(_ name: some StringProtocol) -> String.UnicodeScalarView {
        var out = String.UnicodeScalarView()
        for c in name.unicodeScalars {
            if c.value >= 0x41 && c.value <= 0x5a, let lower = Unicode.Scalar(c.value + 0x20) {
                out.append(lower)
            } else {
                out.append(c)
            }
        }
        return out
    }
}
