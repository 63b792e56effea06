#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers

/// One event per line on stderr: `text` (timestamped), `json`, or — when stderr is the journal
/// (`JOURNAL_STREAM` set) — without a timestamp and with a `<N>` syslog priority prefix so that
/// `journalctl -p warning` filters it.
public struct RelayLogHandler: LogHandler {
    public enum Format: Sendable { case text, json }

    public var metadata: Logger.Metadata = [:]
    /// One level for every logger of the process, so that a reload (SIGHUP) changes it at once.
    private static let level = NIOLockedValueBox(Logger.Level.info)

    public static func setLevel(_ level: Logger.Level) {
        Self.level.withLockedValue { $0 = level }
    }

    public var logLevel: Logger.Level {
        get { Self.level.withLockedValue { $0 } }
        set { Self.setLevel(newValue) }
    }
    private let label: String
    private let format: Format
    private let journald: Bool

    /// The level is process-wide: set it with `setLevel(_:)`.
    public init(label: String, format: Format, journald: Bool = getenv("JOURNAL_STREAM") != nil) {
        self.label = label
        self.format = format
        self.journald = journald
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }
        var line = journald ? Self.priority(event.level) : ""
        switch format {
        case .json:
            var parts: [String] = []
            if !journald { parts.append("\"ts\":\(Self.jsonString(Self.timestamp()))") }
            parts.append("\"level\":\(Self.jsonString("\(event.level)"))")
            parts.append("\"logger\":\(Self.jsonString(label))")
            parts.append("\"msg\":\(Self.jsonString("\(event.message)"))")
            for (k, v) in fields { parts.append("\(Self.jsonString(k)):\(Self.jsonString("\(v)"))") }
            line += "{" + parts.joined(separator: ",") + "}"
        case .text:
            if !journald { line += "\(Self.timestamp()) \(event.level) \(label): " }
            line += "\(event.message)"
            for (k, v) in fields { line += " \(k)=\(Self.quoteIfNeeded("\(v)"))" }
        }
        line += "\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }

    static func priority(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "<7>"
        case .info: return "<6>"
        case .notice: return "<5>"
        case .warning: return "<4>"
        case .error: return "<3>"
        case .critical: return "<2>"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    private static func quoteIfNeeded(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }) ? jsonString(s) : s
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &t)
        func pad(_ n: Int, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(Int(t.tm_year) + 1900, 4))-\(pad(Int(t.tm_mon) + 1, 2))-\(pad(Int(t.tm_mday), 2))T"
            + "\(pad(Int(t.tm_hour), 2)):\(pad(Int(t.tm_min), 2)):\(pad(Int(t.tm_sec), 2)).\(pad(ts.tv_nsec / 1_000_000, 3))Z"
    }
}
