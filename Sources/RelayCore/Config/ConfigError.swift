/// A configuration value the relay cannot start with: names the variable, what was wrong and
/// what is accepted. Printed as one line; the process exits 78 (EX_CONFIG).
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var variable: String
    public var message: String

    public init(_ variable: String, _ message: String) {
        self.variable = variable
        self.message = message
    }

    public var description: String { "\(variable): \(message)" }
}
