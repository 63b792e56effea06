import NIOCore

/// A local client that can receive pub/sub frames. The hub hands it frames that are encoded once
/// and shared by every receiver of the same kind; the sink decides how to queue and flush them.
public protocol MessageSink: AnyObject {
    /// The protocol version the frame must be encoded in.
    var respVersion: RESPVersion { get }
    /// Queues one complete frame for this client (no flush: the edge flushes once per batch).
    /// `bytes` are the frame's readable bytes, valid for the call: a sink copies small frames
    /// from them and keeps a reference to `frame` for large ones. A sink that is closing drops
    /// the frame; one that reaches its output limit here marks itself closing and leaves its
    /// removal from the registry to `PubSubHub.whenNotFanningOut`.
    func deliver(_ frame: ByteBuffer, bytes: UnsafeRawBufferPointer)
}
