/// The password a connection string (`REDIS_URL`, `DATABASE_URL`) carries, found so that no
/// error, log line or INFO field prints it. One reading for both upstreams.
public enum ConnectionSecrets {
    /// In a URL: `user:password@`, or `secret@` when `bareCredentialIsPassword` (Redis clients
    /// read it so; libpq reads a user there), or a `password=` query parameter. In a libpq
    /// conninfo string: the `password=` value, quoted or not.
    public static func password(in text: String, bareCredentialIsPassword: Bool) -> String? {
        guard let scheme = text.firstRange(of: "://") else { return conninfoValue(text, "password") }
        let rest = text[scheme.upperBound...]
        let authority = rest[..<(rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex)]
        if let at = authority.lastIndex(of: "@") {
            let credentials = authority[..<at]
            if let colon = credentials.firstIndex(of: ":") {
                return String(credentials[credentials.index(after: colon)...])
            }
            if bareCredentialIsPassword { return String(credentials) }
        }
        guard let q = text.firstIndex(of: "?") else { return nil }
        for item in text[text.index(after: q)...].split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0] == "password" { return String(kv[1]) }
        }
        return nil
    }

    /// `text` with every occurrence of `secret` replaced by `***`.
    public static func masking(_ secret: String?, in text: String) -> String {
        guard let secret, !secret.isEmpty else { return text }
        return text.split(separator: secret, omittingEmptySubsequences: false).joined(separator: "***")
    }

    private static func conninfoValue(_ conninfo: String, _ key: String) -> String? {
        guard let found = conninfo.firstRange(of: key) else { return nil }
        var rest = conninfo[found.upperBound...].drop { $0 == " " }
        guard rest.first == "=" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " }
        if rest.first == "'" { return String(rest.dropFirst().prefix { $0 != "'" }) }
        return String(rest.prefix { $0 != " " })
    }
}
