/// COMMAND INFO / COMMAND DOCS entries for the commands the relay carries (Redis 7.0's own,
/// generated into `CommandDocs+Generated.swift`), plus `CLIENT SETINFO`, which Redis 7.2 added.
enum CommandDocs {
    /// A command's entry; `container|sub` finds a subcommand, as Redis's lookup does.
    static func info(named name: String) -> RESPValue? {
        guard let bar = name.firstIndex(of: "|") else { return allInfo.first { $0.0 == name }?.1 }
        guard case .array(let items)? = allInfo.first(where: { $0.0 == name[..<bar] })?.1,
              case .array(let subs) = items[9] else { return nil }
        return subs.first { entry in
            if case .array(let fields) = entry, case .bulk(let full) = fields[0] { return full == name }
            return false
        }
    }

    static func docs(named name: String) -> RESPValue? {
        guard let bar = name.firstIndex(of: "|") else { return docs.first { $0.0 == name }?.1 }
        guard case .map(let pairs)? = docs.first(where: { $0.0 == name[..<bar] })?.1,
              case .map(let subs)? = pairs.first(where: { $0.0 == .bulk("subcommands") })?.1 else { return nil }
        return subs.first { $0.0 == .bulk(name) }?.1
    }

    /// Redis 7.2's entry for `client|setinfo`, appended to CLIENT's subcommands.
    private static let setinfoInfo: RESPValue = .array([
        .bulk("client|setinfo"), .integer(4),
        .set([.simple("noscript"), .simple("loading"), .simple("stale")]),
        .integer(0), .integer(0), .integer(0),
        .set([.simple("@slow"), .simple("@connection")]),
        .set([.bulk("request_policy:all_nodes"), .bulk("response_policy:all_succeeded")]),
        .set([]), .set([]),
    ])

    static let allInfo: [(String, RESPValue)] = info.map { name, value in
        guard name == "client", case .array(var items) = value, case .array(var subs) = items[9] else {
            return (name, value)
        }
        subs.append(setinfoInfo)
        items[9] = .array(subs)
        return (name, .array(items))
    }
}
