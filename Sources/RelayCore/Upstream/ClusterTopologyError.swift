/// Why a `CLUSTER SHARDS` or `CLUSTER SLOTS` reply could not be read as a cluster's topology;
/// `message` is one line for the log, naming the command, the part of the reply and what was
/// expected.
public struct ClusterTopologyError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The node answered with an error (e.g. `ERR unknown subcommand` from a server too old
        /// for `CLUSTER SHARDS`, or `ERR This instance has cluster support disabled`).
        case errorReply
        /// A field is missing or of the wrong type, or the reply is not shaped as documented.
        case malformedReply
        /// A slot number outside 0…16383, or a range whose end is before its start.
        case slotOutOfRange
        /// One slot claimed by two masters, or one node listed twice.
        case overlappingSlots
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
