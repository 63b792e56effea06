/// The relay's counters: plain integers on the event loop that owns the clients (no atomics on
/// the hot path). INFO and `/metrics` read a copy of `counts` (`RelayCounterTable` renders both).
public final class RelayStats {
    /// A value, so that INFO and a scrape copy every counter in one assignment.
    public var counts = Counts()

    public init() {}

    public struct Counts: Sendable, Equatable {
        public var connectionsReceived = 0
        public var commandsProcessed = 0
        /// PUBLISH commands taken in from local clients (delivered locally, or sent upstream).
        public var messagesPublished = 0
        /// Messages the Redis backplane delivered on the subscriber link (each `message` and
        /// `pmessage` frame counts once).
        public var messagesFromRedis = 0
        /// Postgres notifications delivered to local subscribers directly (no backplane, or degraded).
        public var messagesFromPostgres = 0
        public var deliveries = 0
        public var unknownCommands = 0
        public var rejectedCommands = 0
        /// Protocol errors by reason (`ProtocolError.reason`); each closed the client.
        public var protocolErrors: [String: Int] = [:]
        /// Clients cut off because their output buffer passed `RELAY_CLIENT_BUFFER_LIMIT`.
        public var slowConsumerDisconnects = 0
        /// Clients cut off because their unparsed input passed `RELAY_QUERY_BUFFER_LIMIT`.
        public var queryBufferDisconnects = 0
        /// Frames that reached a client already closing (QUIT, error, limit, shutdown).
        public var droppedFrames = 0
        /// `POST` / `Host:` lines (an HTTP request sent to the socket).
        public var securityDisconnects = 0
        /// accept(2) attempts on the relay socket refused for want of file descriptors (EMFILE,
        /// ENFILE) or kernel memory (ENOBUFS, ENOMEM); accepting pauses meanwhile.
        public var acceptErrorsFDLimit = 0
        public var acceptErrorsNoMemory = 0
        /// AUTH / HELLO AUTH refused (WRONGPASS).
        public var authFailures = 0

        public init() {}

        public var totalProtocolErrors: Int { protocolErrors.values.reduce(0, +) }
    }
}
