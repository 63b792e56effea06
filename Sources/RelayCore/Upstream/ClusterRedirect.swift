/// Redis Cluster's redirections and transient errors, as the backplane reads them: it does not
/// follow a `-MOVED`'s address (the slot map is asked for again instead, which moves every name
/// of the slot at once), it only needs to know that the command is to be sent again.
public enum ClusterRedirect {
    /// A cluster error that means "ask for the slot map again and retry": the slot is elsewhere
    /// (`-MOVED`, `-ASK`), or the cluster is between masters (`-TRYAGAIN`, `-CLUSTERDOWN`).
    public static func asksToRetry(_ reply: UpstreamReply) -> Bool {
        guard case .error = reply else { return false }
        let text = reply.text
        return text.hasPrefix("MOVED ") || text.hasPrefix("ASK ") || text.hasPrefix("TRYAGAIN") || text.hasPrefix("CLUSTERDOWN")
    }
}
