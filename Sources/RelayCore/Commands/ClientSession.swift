/// The per-connection state Redis keeps in its `client` struct that the relay's commands touch.
public struct ClientSession: Sendable {
    public let id: Int
    public var resp: RESPVersion = .resp2
    /// CLIENT SETNAME / HELLO SETNAME; nil when unnamed.
    public var name: [UInt8]?
    public var libName: [UInt8]?
    public var libVersion: [UInt8]?
    /// SELECT is accepted (pub/sub ignores the database) and echoed in CLIENT INFO.
    public var db = 0
    /// Redis's `CLIENT_PUBSUB` flag: set by (P|S)SUBSCRIBE, cleared when the client's
    /// channels, patterns and shard channels all drop to 0.
    public var inPubSubContext = false
    /// The full name of the last command (`client|info`), as CLIENT INFO shows it.
    public var lastCommand = "NULL"
    /// Redis's `c->authenticated`: false until AUTH (or HELLO … AUTH) gives the password, when
    /// one is set; true from the start without one. RESET sets it back to the start value.
    public var authenticated: Bool

    public init(id: Int, authenticated: Bool = true) {
        self.id = id
        self.authenticated = authenticated
    }
}

/// A local client connection as the command executor sees it.
public protocol RelayClient: MessageSink {
    var session: ClientSession { get set }
}
