/// The relay's counters and state at one instant, copied off the client event loop for
/// `/metrics` and `/health`.
struct RelaySnapshot: Sendable {
    var isServing: Bool
    var socketPath: String
    var clients: Int
    var connectionsTotal: Int
    var commandsTotal: Int
    var channelSubscriptions: Int
    var patternSubscriptions: Int
    var messagesPublished: Int
    var deliveries: Int
    var droppedFrames: Int
    var unknownCommands: Int
    var rejectedCommands: Int
    var protocolErrors: [String: Int]
    var slowConsumerDisconnects: Int
    var queryBufferDisconnects: Int
    var securityDisconnects: Int

    static func statusLine(isServing: Bool, clients: Int) -> String {
        "\(isServing ? "serving" : "stopping") \(clients) clients; redis: not configured; postgres: not configured"
    }

    /// `/health`'s body.
    var healthJSON: String {
        "{\"status\":\"\(isServing ? "serving" : "stopping")\",\"clients\":\(clients),"
            + "\"socket\":\(RelayLogHandler.jsonString(socketPath)),"
            + "\"upstreams\":{\"redis\":\"not configured\",\"postgres\":\"not configured\"}}"
    }
}
