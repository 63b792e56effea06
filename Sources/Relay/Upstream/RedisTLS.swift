#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOSSL
import NIOTLS
import RelayCore

/// The TLS of a `rediss://` or `rediss-sentinel://` backplane (README, "Redis over TLS", "Redis
/// Sentinel"): the CA bundle and client certificate read from their files, the `NIOSSLContext`
/// built from them (TLS 1.2 or later, full certificate and host-name verification), and for each
/// new connection the handlers that run the handshake and say in plain words why one failed. The
/// context is shared by every connection; what the certificate must list is decided per
/// connection, from the host it goes to (the URL's host, a sentinel, or the master the sentinels
/// announced). Immutable: a reload builds a new one, which only connections opened afterwards use.
public final class RedisTLS: Sendable {
    public let options: RedisTLSOptions
    private let context: NIOSSLContext
    private let handshakeTimeout: TimeAmount
    /// One line for the logs: what is trusted, which client certificate, which name is checked.
    public let summary: String

    private init(options: RedisTLSOptions, context: NIOSSLContext, handshakeTimeout: TimeAmount, summary: String) {
        self.options = options
        self.context = context
        self.handshakeTimeout = handshakeTimeout
        self.summary = summary
    }

    /// Reads the files `config.redisTLS` names and builds the context; nil when the URL is not
    /// `rediss://` or `rediss-sentinel://`. A file that is missing, unreadable or not PEM is a
    /// `ConfigError` naming the variable and the file (exit 78 at start-up, an unchanged
    /// configuration on reload).
    public static func load(_ config: RelayConfig) throws(ConfigError) -> RedisTLS? {
        guard let url = config.redisURL, url.tls, let options = config.redisTLS else { return nil }
        if url.sentinel == nil, case .unix = url.address { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .fullVerification
        var described: [String] = []
        if let path = options.caFile {
            let certificates = try certificates(in: path, variable: RedisTLSOptions.caFileVariable)
            tls.trustRoots = .certificates(certificates)
            described.append("trusting \(certificates.count) CA certificate\(certificates.count == 1 ? "" : "s") from \(path)")
        } else {
            tls.trustRoots = .default
            described.append("trusting the system store")
        }
        if let certPath = options.certFile, let keyPath = options.keyFile {
            let chain = try certificates(in: certPath, variable: RedisTLSOptions.certFileVariable)
            tls.certificateChain = chain.map { .certificate($0) }
            tls.privateKey = .privateKey(try privateKey(in: keyPath))
            described.append("client certificate \(certPath)")
        }
        switch url.address {
        case .tcp where url.cluster != nil:
            // Cluster: the hosts are the seeds and the nodes as the cluster announces them.
            described.append(options.serverName.map { "checking the name \($0) on every node" }
                             ?? "checking each node's host as listed or as the cluster announces it (an IP address against the certificate's IP addresses)")
        case .tcp(let host, _) where url.sentinel == nil:
            described.append("checking \(identity(host: host, serverName: options.serverName).identity)")
        default:
            // Sentinel: the hosts are the listed sentinels and whatever master they announce
            // (usually an IP address, which the certificate must then list as an IP SAN).
            described.append(options.serverName.map { "checking the name \($0) on the sentinels and the master" }
                             ?? "checking each sentinel's and the announced master's host (an IP address against the certificate's IP addresses)")
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            // The files parsed, so what is left is a key that does not fit its certificate.
            if let keyPath = options.keyFile, let certPath = options.certFile {
                throw ConfigError(RedisTLSOptions.keyFileVariable, "the private key in \(keyPath) does not belong to the certificate in \(certPath) (the first certificate of \(RedisTLSOptions.certFileVariable) must be the key's)")
            }
            throw ConfigError(RedisTLSOptions.caFileVariable, "TLS cannot use the CA bundle: \(describeLoading(error))")
        }
        // Shorter than the link's reply deadline (also RELAY_REDIS_TIMEOUT, counted from the same
        // connect): a plaintext Redis on the port waits for a newline that a ClientHello never
        // sends, and that must be named as a TLS problem, not as a hung Redis. The sentinel
        // watcher's deadline is the same RELAY_REDIS_TIMEOUT, so the same holds there.
        let timeoutMs = Int64(config.redisTimeoutMilliseconds)
        let handshakeTimeout = TimeAmount.milliseconds(max(timeoutMs / 2, timeoutMs - 250))
        return RedisTLS(options: options, context: context, handshakeTimeout: handshakeTimeout,
                        summary: described.joined(separator: ", "))
    }

    /// What is sent as SNI and checked in the certificate of a connection to `host`:
    /// `RELAY_REDIS_TLS_SERVER_NAME` when set, else the host itself. For an IP address there is no
    /// SNI (it may not carry an address) and NIOSSL checks the peer's address against the
    /// certificate's IP addresses. `identity` is for messages: "the name redis.internal" or "the
    /// IP address 10.0.0.5".
    static func identity(host: String, serverName: String?) -> (serverHostname: String?, identity: String) {
        let isIPAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        let serverHostname = serverName ?? (isIPAddress ? nil : host)
        return (serverHostname, serverHostname.map { "the name \($0)" } ?? "the IP address \(host)")
    }

    /// What a plaintext connection's reason adds when Redis closed it without a word.
    static let plaintextCloseHint = "if that port is Redis's tls-port, use a rediss:// URL"
    /// The same for the connections of a `redis-sentinel://` URL (to a sentinel or the master).
    static let plaintextSentinelCloseHint = "if that port is a tls-port, use a rediss-sentinel:// URL"
    /// The same for the connections of a `redis-cluster://` URL.
    static let plaintextClusterCloseHint = "if that port is a tls-port, use a rediss-cluster:// URL"

    /// Adds the TLS handler for a connection to `host:port` and, behind it, the observer that
    /// turns its errors into plain words; the `RedisConnection` goes after them. Called in the
    /// channel initializer, on the loop.
    func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations, host: String, port: Int) throws {
        let (serverHostname, identity) = Self.identity(host: host, serverName: options.serverName)
        let peer = RedisURL.Sentinel.Endpoint(host: host, port: port).description
        let verdict = RedisTLSVerdict()
        // The per-certificate callback is deprecated in favour of callbacks that replace BoringSSL's
        // verification; it is the only hook that reports BoringSSL's own verdict on each certificate
        // while leaving the verification to it. It changes nothing: it returns what it was given.
        let handler = try NIOSSLClientHandler(context: context, serverHostname: serverHostname) { result, certificate in
            if case .failed = result, verdict.failure == nil { verdict.failure = RedisTLSVerdict.reason(certificate) }
            return result
        }
        try pipeline.addHandler(handler)
        try pipeline.addHandler(RedisTLSObserver(peer: peer, identity: identity, verdict: verdict,
                                                 handshakeTimeout: handshakeTimeout))
    }

    // MARK: Files

    private static func certificates(in path: String, variable: String) throws(ConfigError) -> [NIOSSLCertificate] {
        let bytes = try readPEM(path, variable: variable, what: "certificate")
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw ConfigError(variable, "\(path) is not a PEM certificate file (\(describeLoading(error))); expected -----BEGIN CERTIFICATE----- blocks")
        }
        guard !certificates.isEmpty else {
            throw ConfigError(variable, "\(path) holds no PEM certificate; expected -----BEGIN CERTIFICATE----- blocks")
        }
        return certificates
    }

    private static func privateKey(in path: String) throws(ConfigError) -> NIOSSLPrivateKey {
        let variable = RedisTLSOptions.keyFileVariable
        let bytes = try readPEM(path, variable: variable, what: "private key")
        if bytes.starts(with: Array("-----BEGIN ENCRYPTED PRIVATE KEY".utf8)) || String(decoding: bytes, as: UTF8.self).contains("ENCRYPTED") {
            throw ConfigError(variable, "\(path) is an encrypted private key; the relay reads unencrypted keys only (protect the file instead: LoadCredential= under systemd)")
        }
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw ConfigError(variable, "\(path) is not a PEM private key (\(describeLoading(error))); expected a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block")
        }
    }

    /// The file's bytes; missing, unreadable, empty or without a PEM block is an error naming it.
    private static func readPEM(_ path: String, variable: String, what: String) throws(ConfigError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(variable, "cannot read \(path) (\(String(cString: strerror(errno)))); give a readable PEM \(what) file")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw ConfigError(variable, "cannot read \(path) (\(String(cString: strerror(errno)))); give a readable PEM \(what) file")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 1 << 20 else {
                throw ConfigError(variable, "\(path) is larger than 1 MiB; expected a PEM \(what) file")
            }
        }
        guard String(decoding: bytes, as: UTF8.self).contains("-----BEGIN ") else {
            throw ConfigError(variable, "\(path) is not PEM (no -----BEGIN line); expected a PEM \(what) file")
        }
        return bytes
    }

    private static func describeLoading(_ error: Error) -> String {
        if case .sslError(let stack)? = error as? BoringSSLError { return RedisTLSObserver.reasons(stack).joined(separator: ", ") }
        if case .failedToLoadCertificate? = error as? NIOSSLError { return "BoringSSL could not parse it" }
        if case .failedToLoadPrivateKey? = error as? NIOSSLError { return "BoringSSL could not parse it" }
        return "\(error)"
    }
}

/// What the certificate check of one connection found: the first certificate BoringSSL refused,
/// told in words. Shared by the TLS handler's callback and the observer of that one connection.
final class RedisTLSVerdict {
    var failure: String?

    /// Why a certificate BoringSSL refused was refused, as far as the certificate itself tells.
    static func reason(_ certificate: NIOSSLCertificate) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        if now.tv_sec > certificate.notValidAfter { return "certificate has expired (valid until \(date(certificate.notValidAfter)))" }
        if now.tv_sec < certificate.notValidBefore { return "certificate is not yet valid (valid from \(date(certificate.notValidBefore)))" }
        return "certificate is not signed by a trusted CA (the CAs of \(RedisTLSOptions.caFileVariable), or the system store when it is unset)"
    }

    private static func date(_ t: time_t) -> String {
        var time = t
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)) UTC"
    }
}

/// A TLS failure on an upstream connection, said in plain words
/// (`TLS handshake with 127.0.0.1:6390 failed: certificate has expired (…)`).
struct RedisTLSError: Error, CustomStringConvertible {
    var description: String
}

/// Sits behind the `NIOSSLClientHandler`: turns NIOSSL's and BoringSSL's errors into a
/// `RedisTLSError` the `RedisConnection` reports as its reason, and fails a handshake that gets
/// no TLS answer in time. Errors after the first bytes from Redis are reported as TLS errors of
/// an established connection.
final class RedisTLSObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let peer: String
    private let identity: String
    private let verdict: RedisTLSVerdict
    private let handshakeTimeout: TimeAmount
    private var handshakeDone = false
    private var heardFromRedis = false
    private var timer: Scheduled<Void>?

    init(peer: String, identity: String, verdict: RedisTLSVerdict, handshakeTimeout: TimeAmount) {
        self.peer = peer
        self.identity = identity
        self.verdict = verdict
        self.handshakeTimeout = handshakeTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context)
        context.fireChannelActive()
    }

    private func startTimer(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let seconds = UpstreamRedisLink.format(Double(handshakeTimeout.nanoseconds) / 1e9)
        timer = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (observer, context) = loopBound.value
            guard !observer.handshakeDone else { return }
            context.fireErrorCaught(RedisTLSError(description: "TLS handshake with \(observer.peer) failed: no TLS answer within \(seconds) s (is that a plaintext port? then use redis://, or Redis's tls-port)"))
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent {
            handshakeDone = true
            timer?.cancel()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        heardFromRedis = true
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !(error is RedisTLSError) else { return context.fireErrorCaught(error) }
        let reason = describe(error)
        // TLS 1.3 finishes the client's handshake before the server has checked the client's
        // certificate: its refusal arrives as the first read, and is still the handshake failing.
        let message = heardFromRedis
            ? "TLS error on the connection to \(peer): \(reason)"
            : "TLS handshake with \(peer) failed: \(reason)"
        context.fireErrorCaught(RedisTLSError(description: message))
    }

    private func describe(_ error: Error) -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "certificate is not valid for \(identity) (set \(RedisTLSOptions.serverNameVariable) to a name it lists)"
        }
        if let ssl = error as? NIOSSLError {
            switch ssl {
            case .handshakeFailed(let boring), .shutdownFailed(let boring): return describe(boring)
            case .uncleanShutdown: return "Redis closed the connection without a TLS goodbye"
            default: return "\(ssl)"
            }
        }
        if let boring = error as? BoringSSLError { return describe(boring) }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return "\(error)"
    }

    private func describe(_ error: BoringSSLError) -> String {
        switch error {
        case .sslError(let stack), .unknownError(let stack):
            let reasons = Self.reasons(stack)
            if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
                return verdict.failure ?? "certificate verification failed"
            }
            if reasons.contains("WRONG_VERSION_NUMBER") || reasons.contains("PACKET_LENGTH_TOO_LONG")
                || reasons.contains("HTTP_REQUEST") || reasons.contains("RECORD_TOO_LARGE") {
                return "Redis did not answer in TLS (is that a plaintext port? then use redis://, or Redis's tls-port)"
            }
            if reasons.contains(where: { $0.hasSuffix("ALERT_CERTIFICATE_REQUIRED") }) {
                return "Redis requires a client certificate (set \(RedisTLSOptions.certFileVariable) and \(RedisTLSOptions.keyFileVariable); Redis has tls-auth-clients yes)"
            }
            if reasons.contains(where: { $0.hasSuffix("ALERT_UNKNOWN_CA") || $0.hasSuffix("ALERT_BAD_CERTIFICATE") }) {
                return "Redis refused the relay's client certificate (not signed by a CA in Redis's tls-ca-cert-file?)"
            }
            if reasons.contains(where: { $0.hasSuffix("ALERT_PROTOCOL_VERSION") || $0 == "UNSUPPORTED_PROTOCOL" }) {
                return "no TLS version in common (the relay requires TLS 1.2 or later)"
            }
            if reasons.contains(where: { $0.hasSuffix("ALERT_HANDSHAKE_FAILURE") || $0 == "NO_SHARED_CIPHER" }) {
                return "Redis refused the handshake (no cipher in common, or it wants a client certificate)"
            }
            return reasons.isEmpty ? "TLS error" : "TLS error " + reasons.joined(separator: ", ")
        case .syscallError: return "connection closed by Redis during TLS"
        case .zeroReturn: return "Redis closed the TLS session"
        default: return "\(error)"
        }
    }

    /// BoringSSL's reason names (`CERTIFICATE_VERIFY_FAILED`, `SSLV3_ALERT_…`) out of its error
    /// strings (`error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at …`).
    static func reasons(_ stack: NIOBoringSSLErrorStack) -> [String] {
        stack.compactMap { error in
            let text = error.description
            guard let range = text.firstRange(of: "OPENSSL_internal:") else { return nil }
            let rest = text[range.upperBound...]
            return String(rest.prefix { $0 != " " })
        }
    }
}

@available(*, unavailable)
extension RedisTLSObserver: Sendable {}

@available(*, unavailable)
extension RedisTLSVerdict: Sendable {}
