import CGlibcMalloc
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore

/// glibc's allocator policy for the relay: one arena, a high trim threshold while busy, and a
/// trim when quiet (`IdleHeapTrim`).
public enum HeapPolicy {
    /// Fan-out allocates each subscriber's batch buffer in a tick and frees them all when the
    /// tick's writes complete; with glibc's default 128 KiB trim threshold the heap top went back
    /// to the kernel every tick and was faulted in again (8% of fan-out CPU, profiled).
    static let busyTrimThreshold: Int32 = 32 << 20

    /// Called once at start-up, before any thread but the main one exists.
    ///
    /// One arena (`M_ARENA_MAX` 1): `malloc_trim` returns the top of the main arena only, not
    /// of the per-thread arenas glibc gives the event loop threads — 20 MB of a burst stayed in
    /// one in about half the runs. The relay allocates on one busy thread, so the shared arena's
    /// lock is seldom contended, and small allocations come from each thread's cache anyway.
    public static func apply() {
        _ = mallopt(M_ARENA_MAX, 1)
        _ = mallopt(M_TRIM_THRESHOLD, busyTrimThreshold)
    }
}

/// Gives freed heap memory back to the kernel once the relay has been quiet for a few seconds.
/// The busy trim threshold (`HeapPolicy`) keeps up to 32 MiB of freed memory at the heap top
/// after a burst, and more in the free lists; `malloc_trim(0)` returns both (the free pages
/// inside the heap and its top). It runs when nothing happened for `quietSeconds` — checked by
/// a once-a-second timer on the event loop, never on the per-message path — once per quiet
/// period.
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
        let released = malloc_trim(0) == 1
        let took = NIODeadline.now() - started
        logger.debug("quiet: returned freed heap memory to the kernel", metadata: [
            "released": "\(released)", "heap_in_use_mb": "\(before.uordblks / 1_048_576)",
            "heap_free_mb": "\(before.fordblks / 1_048_576)", "took_us": "\(took.nanoseconds / 1000)",
        ])
    }
}

@available(*, unavailable)
extension IdleHeapTrim: Sendable {}
