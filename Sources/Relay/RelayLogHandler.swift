import Foundation
import Logging

/// One event per line on stderr: `text` (timestamped), `json`, or — when stderr is the journal
/// (`JOURNAL_STREAM` set) — text without a timestamp and with a `<N>` syslog priority prefix so
/// that `journalctl -p warning` filters it.
public struct RelayLogHandler: LogHandler {
    public enum Format: Sendable { case text, json }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: Format
    private let journald: Bool

    public init(label: String, level: Logger.Level, format: Format, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.journald = environment["JOURNAL_STREAM"] != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let line: String
        switch format {
        case .json:
            var fields: [String: String] = ["level": "\(event.level)", "msg": "\(event.message)", "logger": label]
            if !journald { fields["ts"] = Self.timestamp() }
            for (k, v) in all { fields[k] = "\(v)" }
            let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data()
            line = (journald ? Self.priority(event.level) : "") + String(decoding: data, as: UTF8.self)
        case .text:
            let meta = all.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoteIfNeeded("\($0.value)"))" }.joined(separator: " ")
            let body = meta.isEmpty ? "\(event.message)" : "\(event.message) \(meta)"
            line = journald
                ? "\(Self.priority(event.level))\(body)"
                : "\(Self.timestamp()) \(event.level) \(label): \(body)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
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

    private static func quoteIfNeeded(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) ? "\"\(s.replacingOccurrences(of: "\"", with: "\\\""))\"" : s
    }

    private static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var tm = tm()
        var seconds = tv.tv_sec
        gmtime_r(&seconds, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, Int(tv.tv_usec) / 1000)
    }
}
