import CGlibcMalloc
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// glibc's trimming policy for the relay: high while busy, and a trim when quiet.
public enum HeapPolicy {
    /// Fan-out allocates each subscriber's batch buffer in a tick and frees them all when the
    /// tick's writes complete; with glibc's default 128 KiB trim threshold the heap top went back
    /// to the kernel every tick and was faulted in again (8% of fan-out CPU, profiled).
    static let busyTrimThreshold: Int32 = 32 << 20
    /// While trimming a quiet relay: glibc's default.
    static let quietTrimThreshold: Int32 = 128 << 10

    /// Sets the busy threshold; called once at start-up, before the event loops exist.
    public static func apply() {
        _ = mallopt(M_TRIM_THRESHOLD, busyTrimThreshold)
    }
}

/// Gives freed heap memory back to the kernel once the relay has been quiet for a few seconds.
/// The busy trim threshold (`HeapPolicy`) keeps up to 32 MiB of freed memory mapped at the top
/// of each arena after a burst, and more in the free lists. When nothing happened for
/// `quietSeconds` (checked by a once-a-second timer on the event loop, never on the per-message
/// path) it is returned, once per quiet period:
///
/// * `malloc_trim(0)` releases the free pages inside every arena and the main arena's top;
/// * the top of the event loop's own arena — where fan-out allocates — is released only by a
///   `free` in that arena while the threshold is low (glibc's `heap_trim`), so the threshold is
///   lowered, one 96 KiB block (above glibc's 64 KiB consolidation size, below its 128 KiB mmap
///   size, so it comes from the arena) is allocated and freed on this thread, and the threshold
///   goes back up.
final class IdleHeapTrim {
    /// Seconds without activity before trimming.
    static let quietSeconds = 2

    /// What changes when anything happens: commands, messages in, connections coming and going.
    struct Activity: Equatable {
        var commands: Int
        var messagesIn: Int
        var connections: Int
        var clients: Int
    }

    private var last: Activity?
    private var quietFor = 0
    /// Nothing to give back until something has happened since the last trim.
    private var trimmedSinceActivity = true
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called once a second with the current activity; trims after `quietSeconds` without change.
    func tick(_ now: Activity) {
        if now != last {
            last = now
            quietFor = 0
            trimmedSinceActivity = false
            return
        }
        quietFor += 1
        guard !trimmedSinceActivity, quietFor >= Self.quietSeconds else { return }
        trimmedSinceActivity = true
        // mallinfo2 needs no file descriptor (this may run at the open-file limit).
        let before = mallinfo2()
        let started = NIODeadline.now()
        _ = mallopt(M_TRIM_THRESHOLD, HeapPolicy.quietTrimThreshold)
        free(malloc(96 << 10))
        let released = malloc_trim(0) == 1
        _ = mallopt(M_TRIM_THRESHOLD, HeapPolicy.busyTrimThreshold)
        let took = NIODeadline.now() - started
        logger.debug("quiet: returned freed heap memory to the kernel", metadata: [
            "released": "\(released)", "heap_in_use_mb": "\(before.uordblks / 1_048_576)",
            "heap_free_mb": "\(before.fordblks / 1_048_576)", "took_us": "\(took.nanoseconds / 1000)",
        ])
    }
}

@available(*, unavailable)
extension IdleHeapTrim: Sendable {}
