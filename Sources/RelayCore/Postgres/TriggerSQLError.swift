/// An option of `pubsub-relay sql trigger` that cannot make a working trigger: names the option,
/// what was wrong and what is accepted. Printed as one line; the process exits 64 (EX_USAGE).
public struct TriggerSQLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The command-line option at fault, e.g. `--table`.
    public var option: String
    public var message: String

    public init(_ option: String, _ message: String) {
        self.option = option
        self.message = message
    }

    public var description: String { "\(option): \(message)" }
}
