import CLibpq
#if canImport(Glibc)
import Glibc
#endif

/// libpq, loaded with dlopen when the Postgres bridge is configured. Linking it into every relay
/// cost ~5 MB of idle RSS (its dependency tree: OpenSSL, GnuTLS, Kerberos, LDAP) in relays that
/// never use it; `CLibpq` gives the types, this table the functions.
struct Libpq: @unchecked Sendable {
    typealias Conn = OpaquePointer
    typealias Result = OpaquePointer

    let connectStartParams: @convention(c) (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?, Int32) -> Conn?
    let connectPoll: @convention(c) (Conn?) -> PostgresPollingStatusType
    let status: @convention(c) (Conn?) -> ConnStatusType
    let finish: @convention(c) (Conn?) -> Void
    let errorMessage: @convention(c) (Conn?) -> UnsafeMutablePointer<CChar>?
    let socket: @convention(c) (Conn?) -> Int32
    let setnonblocking: @convention(c) (Conn?, Int32) -> Int32
    let setNoticeProcessor: @convention(c) (Conn?, PQnoticeProcessor?, UnsafeMutableRawPointer?) -> PQnoticeProcessor?
    let escapeIdentifier: @convention(c) (Conn?, UnsafePointer<CChar>?, Int) -> UnsafeMutablePointer<CChar>?
    let freemem: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let sendQuery: @convention(c) (Conn?, UnsafePointer<CChar>?) -> Int32
    let flush: @convention(c) (Conn?) -> Int32
    let isBusy: @convention(c) (Conn?) -> Int32
    let consumeInput: @convention(c) (Conn?) -> Int32
    let getResult: @convention(c) (Conn?) -> Result?
    let resultStatus: @convention(c) (Result?) -> ExecStatusType
    let resultErrorMessage: @convention(c) (Result?) -> UnsafeMutablePointer<CChar>?
    let clear: @convention(c) (Result?) -> Void
    let notifies: @convention(c) (Conn?) -> UnsafeMutablePointer<PGnotify>?
    let conninfoParse: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> UnsafeMutablePointer<PQconninfoOption>?
    let conninfoFree: @convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void

    /// The process's libpq, loaded on first use; nil with the reason if it cannot be.
    static let shared: Swift.Result<Libpq, LoadError> = load()

    struct LoadError: Error, CustomStringConvertible {
        let description: String
    }

    private static func load() -> Swift.Result<Libpq, LoadError> {
        guard let handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            return .failure(LoadError(description: "cannot load libpq (apt-get install libpq5): \(why)"))
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, _: T.Type) -> T {
            guard let p = dlsym(handle, name) else {
                missing.append(name)
                // Never called: a table with a missing function is not returned.
                return unsafeBitCast(UnsafeRawPointer(bitPattern: 1)!, to: T.self)
            }
            return unsafeBitCast(p, to: T.self)
        }
        let pq = Libpq(
            connectStartParams: symbol("PQconnectStartParams", (@convention(c) (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?, Int32) -> Conn?).self),
            connectPoll: symbol("PQconnectPoll", (@convention(c) (Conn?) -> PostgresPollingStatusType).self),
            status: symbol("PQstatus", (@convention(c) (Conn?) -> ConnStatusType).self),
            finish: symbol("PQfinish", (@convention(c) (Conn?) -> Void).self),
            errorMessage: symbol("PQerrorMessage", (@convention(c) (Conn?) -> UnsafeMutablePointer<CChar>?).self),
            socket: symbol("PQsocket", (@convention(c) (Conn?) -> Int32).self),
            setnonblocking: symbol("PQsetnonblocking", (@convention(c) (Conn?, Int32) -> Int32).self),
            setNoticeProcessor: symbol("PQsetNoticeProcessor", (@convention(c) (Conn?, PQnoticeProcessor?, UnsafeMutableRawPointer?) -> PQnoticeProcessor?).self),
            escapeIdentifier: symbol("PQescapeIdentifier", (@convention(c) (Conn?, UnsafePointer<CChar>?, Int) -> UnsafeMutablePointer<CChar>?).self),
            freemem: symbol("PQfreemem", (@convention(c) (UnsafeMutableRawPointer?) -> Void).self),
            sendQuery: symbol("PQsendQuery", (@convention(c) (Conn?, UnsafePointer<CChar>?) -> Int32).self),
            flush: symbol("PQflush", (@convention(c) (Conn?) -> Int32).self),
            isBusy: symbol("PQisBusy", (@convention(c) (Conn?) -> Int32).self),
            consumeInput: symbol("PQconsumeInput", (@convention(c) (Conn?) -> Int32).self),
            getResult: symbol("PQgetResult", (@convention(c) (Conn?) -> Result?).self),
            resultStatus: symbol("PQresultStatus", (@convention(c) (Result?) -> ExecStatusType).self),
            resultErrorMessage: symbol("PQresultErrorMessage", (@convention(c) (Result?) -> UnsafeMutablePointer<CChar>?).self),
            clear: symbol("PQclear", (@convention(c) (Result?) -> Void).self),
            notifies: symbol("PQnotifies", (@convention(c) (Conn?) -> UnsafeMutablePointer<PGnotify>?).self),
            conninfoParse: symbol("PQconninfoParse", (@convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> UnsafeMutablePointer<PQconninfoOption>?).self),
            conninfoFree: symbol("PQconninfoFree", (@convention(c) (UnsafeMutablePointer<PQconninfoOption>?) -> Void).self))
        if !missing.isEmpty {
            return .failure(LoadError(description: "libpq lacks \(missing.joined(separator: ", ")) (libpq 10 or newer is needed)"))
        }
        return .success(pq)
    }
}
