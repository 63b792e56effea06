// Table and machine-readable RESULT lines.

#if canImport(Glibc)
import Glibc
#endif

enum Outcome {
    case fanout(FanoutResult)
    case latency(LatencyResult)
    case idle(IdleResult)
    case pg(PgResult)
    case skipped(String)
    case failed(String)

    var valid: Bool {
        switch self {
        case .fanout(let r): return r.valid
        case .latency(let r): return r.valid
        case .pg(let r): return r.valid
        case .idle, .skipped: return true
        case .failed: return false
        }
    }
}

func grouped(_ v: Int) -> String {
    let s = String(v.magnitude)
    var out = ""
    for (k, ch) in s.enumerated() {
        if k > 0 && (s.count - k) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (v < 0 ? "-" : "") + out
}

func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "NA" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded() / p
    var whole = String(Int(r))
    if digits > 0 {
        var frac = String(Int(((r - Double(Int(r))) * p).rounded()))
        while frac.count < digits { frac = "0" + frac }
        whole += "." + frac
    }
    return (v < 0 && r != 0 ? "-" : "") + whole
}

func percent(_ v: Double?) -> String { v.map { fixed($0 * 100, 1) + "%" } ?? "n/a" }

func pad(_ s: String, _ w: Int, right: Bool = false) -> String {
    let n = s.count
    if n >= w { return s }
    let sp = String(repeating: " ", count: w - n)
    return right ? sp + s : s + sp
}

struct Row {
    var scenario: String
    var metric: String
    var redis: String
    var relay: String
    var ratio: String
}

struct ResultLine {
    var name: String
    var redis: Double?
    var relay: Double?
    var withRatio: Bool
    /// What the two values are (the cluster scenarios compare other pairs than redis/relay).
    var labels = (first: "redis", second: "relay")

    var text: String {
        func f(_ v: Double?) -> String {
            guard let v else { return "NA" }
            if !v.isFinite { return "NA" }
            if (v == v.rounded() || abs(v) >= 1000) && abs(v) < 1e15 { return String(Int(v.rounded())) }
            return fixed(v, 3)
        }
        var s = "RESULT \(name) \(labels.first)=\(f(redis)) \(labels.second)=\(f(relay))"
        if withRatio {
            if let a = redis, let b = relay, a > 0 { s += " ratio=\(fixed(b / a, 3))" } else { s += " ratio=NA" }
        }
        return s
    }
}

final class Report {
    var rows: [Row] = []
    var results: [ResultLine] = []
    /// Headers of the two value columns and of the ratio (second / first).
    var columns = (first: "redis", second: "relay", ratio: "relay/redis")

    init() {}

    init(columns: (first: String, second: String, ratio: String)) { self.columns = columns }

    func row(_ scenario: String, _ metric: String, _ redis: String, _ relay: String, ratio: String = "") {
        rows.append(Row(scenario: scenario, metric: metric, redis: redis, relay: relay, ratio: ratio))
    }

    func result(_ name: String, _ redis: Double?, _ relay: Double?, ratio: Bool = true) {
        results.append(ResultLine(name: name, redis: redis, relay: relay, withRatio: ratio,
                                  labels: (columns.first, columns.second)))
    }

    static func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, a > 0 else { return "" }
        return fixed(b / a, 2) + "x"
    }

    func printTable() {
        let w0 = max(14, rows.map(\.scenario.count).max() ?? 0)
        let w1 = max(22, rows.map(\.metric.count).max() ?? 0)
        let w2 = max(14, rows.map(\.redis.count).max() ?? 0)
        let w3 = max(14, rows.map(\.relay.count).max() ?? 0)
        let w4 = max(11, columns.ratio.count)
        let header = pad("scenario", w0) + "  " + pad("metric", w1) + "  " + pad(columns.first, w2, right: true)
            + "  " + pad(columns.second, w3, right: true) + "  " + pad(columns.ratio, w4, right: true)
        out(header)
        out(String(repeating: "-", count: header.count))
        var last = ""
        for r in rows {
            if r.scenario != last && !last.isEmpty && !r.scenario.isEmpty { out("") }
            let scen = r.scenario == last ? "" : r.scenario
            if !r.scenario.isEmpty { last = r.scenario }
            out(pad(scen, w0) + "  " + pad(r.metric, w1) + "  " + pad(r.redis, w2, right: true) + "  "
                + pad(r.relay, w3, right: true) + "  " + pad(r.ratio, w4, right: true))
        }
    }

    func printResults() {
        for r in results { out(r.text) }
    }
}
