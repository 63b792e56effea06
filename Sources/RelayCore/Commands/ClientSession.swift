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
    /// Redis's `CLIENT_PUBSUB` flag: set by (P)SUBSCRIBE, cleared when the count drops to 0.
    public var inPubSubContext = false
    /// The full name of the last command (`client|info`), as CLIENT INFO shows it.
    public var lastCommand = "NULL"

    public init(id: Int) {
        self.id = id
    }
}

/// A local client connection as the command executor sees it.
public protocol RelayClient: MessageSink {
    var session: ClientSession { get set }
}
