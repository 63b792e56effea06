/// Parses an env file in systemd's `EnvironmentFile=` syntax: `KEY=VALUE` lines, `#` and `;`
/// comments, single or double quotes (backslash escapes inside double quotes), a trailing
/// backslash continuing a line.
public enum EnvFile {
    public static func parse(_ text: String, path: String = "env file") throws(ConfigError) -> [(key: String, value: String)] {
        var result: [(String, String)] = []
        var logical: [(line: Int, text: String)] = []
        var pending = ""
        var pendingLine = 0
        // Split on the scalar: "\r\n" is one Character, so splitting on Character "\n" would miss it.
        for (index, raw) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(String.UnicodeScalarView(raw))
            if line.hasSuffix("\r") { line.removeLast() }
            if pending.isEmpty { pendingLine = index + 1 }
            if line.hasSuffix("\\") && !line.hasSuffix("\\\\") {
                pending += line.dropLast()
                continue
            }
            logical.append((pendingLine, pending + line))
            pending = ""
        }
        if !pending.isEmpty { logical.append((pendingLine, pending)) }

        for (number, line) in logical {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw ConfigError(path, "line \(number) is not KEY=VALUE: \(trimmed)")
            }
            let key = trimmed[..<eq].trimmingCharacters()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), key.first?.isNumber == false else {
                throw ConfigError(path, "line \(number) has an invalid variable name '\(key)'")
            }
            let value = try unquote(trimmed[trimmed.index(after: eq)...].trimmingCharacters(), path: path, line: number)
            result.append((key, value))
        }
        return result
    }

    private static func unquote(_ raw: String, path: String, line: Int) throws(ConfigError) -> String {
        guard let first = raw.first, first == "\"" || first == "'" else { return raw }
        guard raw.count >= 2, raw.last == first else {
            throw ConfigError(path, "line \(line) has an unterminated \(first == "\"" ? "double" : "single") quote")
        }
        let inner = raw.dropFirst().dropLast()
        if first == "'" { return String(inner) }
        var out = ""
        var escaped = false
        for ch in inner {
            if escaped {
                switch ch {
                case "n": out.append("\n")
                case "t": out.append("\t")
                default: out.append(ch)
                }
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else {
                out.append(ch)
            }
        }
        return out
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
