// Idle-client memory: open K connections that each send one PING (so the server has fully set
// the client up) and then sit idle; the server's RSS growth divided by K is the cost per idle
// client.

#if canImport(Glibc)
import Glibc
#endif

struct IdleResult {
    var clients = 0
    var rssBeforeKiB = 0
    var rssAfterKiB = 0
    var rssAfterCloseKiB: Int? = nil
    var kibPerClient: Double { clients > 0 ? Double(rssAfterKiB - rssBeforeKiB) / Double(clients) : 0 }
}

func runIdle(server: Server, clients: Int) throws -> IdleResult {
    guard server.pid > 0, let before = server.rssKiB else {
        throw BenchError("\(server.name): cannot read the server's RSS (PID unknown or /proc not readable)")
    }
    var fds: [Int32] = []
    fds.reserveCapacity(clients)
    defer { for fd in fds { close(fd) } }
    let ping = respCommand(["PING"])
    let pong = Array("+PONG\r\n".utf8)
    // Connect in batches: connect + PING a batch, then collect its PONGs, so the accept
    // backlog never holds too many connections at once.
    let batch = 500
    var done = 0
    while done < clients {
        let upto = min(clients, done + batch)
        for _ in done..<upto {
            let fd = try connectUnix(server.socketPath)
            fds.append(fd)
            setReceiveTimeout(fd, seconds: 10)
            try writeAll(fd, ping)
        }
        for k in done..<upto {
            let got = try readExactly(fds[k], pong.count)
            if got != pong {
                throw BenchError("\(server.name): idle client \(k): unexpected PING reply \"\(printable(got))\"")
            }
        }
        done = upto
    }
    usleep(300_000)
    guard let after = server.rssKiB else { throw BenchError("\(server.name): RSS unreadable") }
    var r = IdleResult(clients: clients, rssBeforeKiB: before, rssAfterKiB: after)
    for fd in fds { close(fd) }
    fds.removeAll()
    usleep(300_000)
    r.rssAfterCloseKiB = server.rssKiB
    return r
}
