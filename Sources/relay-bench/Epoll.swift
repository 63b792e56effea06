// epoll for relay-bench. Swift's Glibc module does not import <sys/epoll.h>, and this target
// may not add a C module, so the three functions are resolved with dlsym and called through
// C function pointers; `struct epoll_event` is laid out by hand (packed on x86_64).

#if canImport(Glibc)
import Glibc
#endif

enum Epoll {
    static let IN: UInt32 = 0x001
    static let CTL_ADD: Int32 = 1
    static let CTL_DEL: Int32 = 2
    static let CLOEXEC: Int32 = 0o2000000

    #if arch(x86_64)
    static let eventSize = 12   // struct epoll_event is __attribute__((packed)) on x86-64
    #else
    static let eventSize = 16
    #endif
    static let dataOffset = eventSize - 8

    private typealias CreateFn = @convention(c) (Int32) -> Int32
    private typealias CtlFn = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias WaitFn = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

    private static func symbol<T>(_ name: String, as: T.Type) -> T {
        // RTLD_DEFAULT is ((void *) 0) in glibc.
        guard let p = dlsym(nil, name) else { fatalError("relay-bench: \(name) not found via dlsym") }
        return unsafeBitCast(p, to: T.self)
    }

    private static let createFn = symbol("epoll_create1", as: CreateFn.self)
    private static let ctlFn = symbol("epoll_ctl", as: CtlFn.self)
    private static let waitFn = symbol("epoll_wait", as: WaitFn.self)

    static func create() -> Int32 { createFn(CLOEXEC) }

    /// Adds `fd` for EPOLLIN (level-triggered) with `token` as the event data.
    static func add(_ epfd: Int32, _ fd: Int32, token: UInt64) -> Int32 {
        var ev = [UInt8](repeating: 0, count: eventSize)
        return ev.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: IN, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: dataOffset, as: UInt64.self)
            return ctlFn(epfd, CTL_ADD, fd, raw.baseAddress)
        }
    }

    static func remove(_ epfd: Int32, _ fd: Int32) {
        var ev = [UInt8](repeating: 0, count: eventSize)
        _ = ev.withUnsafeMutableBytes { ctlFn(epfd, CTL_DEL, fd, $0.baseAddress) }
    }

    /// Waits for events into `events` (capacity `max` events); returns the count (or -1).
    static func wait(_ epfd: Int32, _ events: UnsafeMutableRawPointer, max: Int32, timeoutMs: Int32) -> Int32 {
        waitFn(epfd, events, max, timeoutMs)
    }

    @inline(__always)
    static func token(_ events: UnsafeMutableRawPointer, _ k: Int) -> UInt64 {
        events.loadUnaligned(fromByteOffset: k * eventSize + dataOffset, as: UInt64.self)
    }
}
