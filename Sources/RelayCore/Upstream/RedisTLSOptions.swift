/// How a `rediss://`, `rediss-sentinel://` or `rediss-cluster://` backplane connection is secured: the `RELAY_REDIS_TLS_*` variables, checked
/// for consistency (README, "Redis over TLS"). The files themselves are read at the I/O edge
/// (`RedisTLS` in the Relay module), at start-up and on every reload.
public struct RedisTLSOptions: Sendable, Equatable {
    /// PEM bundle of the CAs to trust instead of the system store; nil = the system store.
    public var caFile: String?
    /// PEM client certificate (chain) and its private key, for Redis's `tls-auth-clients yes`.
    public var certFile: String?
    public var keyFile: String?
    /// The name sent as SNI and checked in Redis's certificate; nil = the host connected to (an IP
    /// address is checked against the certificate's IP addresses and sends no SNI). With Sentinel
    /// that host is each sentinel of the URL and the master as the sentinels announce it, usually
    /// an IP address (README, "Redis Sentinel").
    public var serverName: String?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    public static let caFileVariable = "RELAY_REDIS_TLS_CA_FILE"
    public static let certFileVariable = "RELAY_REDIS_TLS_CERT_FILE"
    public static let keyFileVariable = "RELAY_REDIS_TLS_KEY_FILE"
    public static let serverNameVariable = "RELAY_REDIS_TLS_SERVER_NAME"
    public static let variables = [caFileVariable, certFileVariable, keyFileVariable, serverNameVariable]

    /// The options for `url` from the (trimmed, non-empty) values of the TLS variables; nil when
    /// the URL is not `rediss://`, `rediss-sentinel://` or `rediss-cluster://`. Throws when a TLS variable is set for a URL without TLS: a typo'd
    /// scheme (`redis://` for `rediss://`) would otherwise send the password in plaintext.
    public static func parse(_ value: (String) -> String?, url: RedisURL?) throws(ConfigError) -> RedisTLSOptions? {
        let options = RedisTLSOptions(caFile: value(caFileVariable), certFile: value(certFileVariable),
                                      keyFile: value(keyFileVariable), serverName: value(serverNameVariable))
        guard let url, url.tls else {
            if let name = variables.first(where: { value($0) != nil }) {
                let what = url.map { "REDIS_URL is \($0.redacted), without TLS" } ?? "REDIS_URL is not set"
                // The scheme with TLS of the form given (a cluster user told rediss:// would lose the cluster).
                let fix = url?.cluster != nil ? "use rediss-cluster://host1:port,host2:port… to reach the cluster's nodes over TLS"
                    : url?.sentinel != nil ? "use rediss-sentinel://… to connect over TLS"
                    : "use rediss://host:port, or rediss-sentinel://… for Sentinel or rediss-cluster://… for Redis Cluster, to connect over TLS"
                throw ConfigError(name, "set, but \(what); TLS settings apply only to a rediss://, rediss-sentinel:// or rediss-cluster:// URL (\(fix), or remove the RELAY_REDIS_TLS_* variables)")
            }
            return nil
        }
        if options.certFile != nil, options.keyFile == nil {
            throw ConfigError(keyFileVariable, "not set, but \(certFileVariable) is; a client certificate needs its private key (PEM)")
        }
        if options.keyFile != nil, options.certFile == nil {
            throw ConfigError(certFileVariable, "not set, but \(keyFileVariable) is; a private key needs its client certificate (PEM)")
        }
        if let name = options.serverName {
            try validateServerName(name)
        }
        return options
    }

    /// A DNS name (letters, digits, `-`, `_`, dot-separated labels of at most 63 bytes, at most 253
    /// bytes). Not an IP address: TLS never sends one as SNI, and an IP in the URL is already
    /// checked against the certificate's IP addresses.
    static func validateServerName(_ name: String) throws(ConfigError) {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let isName = name.utf8.count <= 253 && labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
        guard isName else {
            throw ConfigError(serverNameVariable, "'\(name)' is not a host name; expected the DNS name in Redis's certificate, e.g. redis.internal")
        }
        if labels.allSatisfy({ $0.allSatisfy(\.isNumber) }) {
            throw ConfigError(serverNameVariable, "'\(name)' is an IP address; give the DNS name in Redis's certificate (an IP address in REDIS_URL is checked against the certificate's IP addresses without this variable)")
        }
    }
}
