/// A Redis Cluster redirection error, `-MOVED <slot> <host>:<port>` or `-ASK <slot> <host>:<port>`,
/// read into where the command should go instead.
public struct ClusterRedirect: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The slot now lives on that node: update the topology, send there from now on.
        case moved
        /// The slot is migrating: send this one command there, after `ASKING`.
        case ask
    }

    public var kind: Kind
    public var slot: Int
    public var host: String
    public var port: Int

    public init(kind: Kind, slot: Int, host: String, port: Int) {
        self.kind = kind
        self.slot = slot
        self.host = host
        self.port = port
    }

    /// The redirect in an error reply's text (`MOVED 3999 127.0.0.1:6381`, with or without the
    /// leading `-` and the trailing CRLF); nil for any other error. The address may be
    /// `host:port`, `[v6]:port`, or an IPv6 address without brackets (as Redis writes it: the port
    /// is after the last colon). An empty or `?` host (Redis does not know the node's endpoint)
    /// is `replyingHost`, the host of the node that sent the error.
    public static func parse<C: Collection>(_ error: C, replyingHost: String) -> ClusterRedirect? where C.Element == UInt8 {
        var text = Substring(decoding: error, as: UTF8.self)
        if text.hasPrefix("-") { text = text.dropFirst() }
        while let last = text.last, last == "\r\n" || last == "\n" || last == "\r" { text = text.dropLast() }
        let words = text.split(separator: " ", omittingEmptySubsequences: false)
        guard words.count == 3 else { return nil }
        let kind: Kind
        switch words[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        guard let slot = Int(words[1]), slot >= 0, slot < ClusterSlot.count else { return nil }
        let address = words[2]
        guard let colon = address.lastIndex(of: ":"),
              let port = Int(address[address.index(after: colon)...]), port > 0, port < 65536 else { return nil }
        var host = address[..<colon]
        if host.hasPrefix("[") {
            guard host.hasSuffix("]") else { return nil }
            host = host.dropFirst().dropLast()
        }
        let resolved = host.isEmpty || host == "?" ? replyingHost : String(host)
        return ClusterRedirect(kind: kind, slot: slot, host: resolved, port: port)
    }
}

extension ClusterRedirect {
    /// A cluster error that means "ask for the slot map again and retry": the slot is elsewhere
    /// (`-MOVED`, `-ASK`), or the cluster is between masters (`-TRYAGAIN`, `-CLUSTERDOWN`).
    public static func asksToRetry(_ reply: UpstreamReply) -> Bool {
        guard case .error = reply else { return false }
        let text = reply.text
        return text.hasPrefix("MOVED ") || text.hasPrefix("ASK ") || text.hasPrefix("TRYAGAIN") || text.hasPrefix("CLUSTERDOWN")
    }
}
