/// `RELAY_PASSWORD` / `RELAY_PASSWORD_FILE`: the password of Redis's `default` user, as with
/// `requirepass`. Every connection, on every listener, must AUTH with it before anything but
/// AUTH, HELLO, QUIT and RESET (README, "Password").
public struct RelayPassword: Sendable, Equatable {
    public let bytes: [UInt8]

    /// The longest password a client can send before it is authenticated: Redis refuses a bulk
    /// over 16384 bytes from an unauthenticated client ("unauthenticated bulk length").
    public static let maxLength = 16384

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Whether `candidate` is the password, in time that depends on the candidate's length only
    /// (not on the password, nor on where the first difference is), so that answer times do not
    /// reveal how much of a guess was right.
    public func matches<C: Collection>(_ candidate: C) -> Bool where C.Element == UInt8 {
        var difference = UInt(bitPattern: bytes.count ^ candidate.count)
        if bytes.isEmpty { return false }
        var i = 0
        for byte in candidate {
            difference |= UInt(bytes[i % bytes.count] ^ byte)
            i &+= 1
        }
        return difference == 0
    }

    /// `AUTH user pass` / `HELLO … AUTH user pass`: the only user is `default` (no ACL).
    public func authenticates<U: Collection, P: Collection>(user: U, password: P) -> Bool where U.Element == UInt8, P.Element == UInt8 {
        let isDefault = user.elementsEqual("default".utf8)
        let right = matches(password)
        return isDefault && right
    }

    /// `RELAY_PASSWORD`'s value: taken byte for byte (not trimmed: spaces may be part of it).
    public static func fromVariable(_ value: String, variable: String = "RELAY_PASSWORD") throws(ConfigError) -> RelayPassword {
        try checked(Array(value.utf8), variable)
    }

    /// The first line of `RELAY_PASSWORD_FILE`'s contents, its `\n` (or `\r\n`) stripped.
    public static func fromFile(contents: [UInt8], path: String, variable: String = "RELAY_PASSWORD_FILE") throws(ConfigError) -> RelayPassword {
        var line = contents.prefix { $0 != UInt8(ascii: "\n") }
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        if line.isEmpty {
            throw ConfigError(variable, "\(path) starts with an empty line; put the password on its first line")
        }
        return try checked(Array(line), variable)
    }

    private static func checked(_ bytes: [UInt8], _ variable: String) throws(ConfigError) -> RelayPassword {
        guard bytes.count <= maxLength else {
            throw ConfigError(variable, "the password is \(bytes.count) bytes; at most \(maxLength) (a client cannot send more before it is authenticated)")
        }
        return RelayPassword(bytes)
    }
}

/// Failed AUTHs are logged at most once per interval: a client guessing in a loop must not
/// flood the journal. The first failure of a quiet period is logged at once; the ones after it
/// within the interval are counted and reported with the next line logged.
public struct AuthFailureLogLimiter: Sendable {
    public let intervalNanoseconds: UInt64
    private var lastLogged: UInt64?
    private var suppressed = 0

    public init(intervalNanoseconds: UInt64 = 1_000_000_000) {
        self.intervalNanoseconds = intervalNanoseconds
    }

    /// A failure at `now` (monotonic nanoseconds): nil to stay quiet, or how many failures were
    /// not logged since the last line.
    public mutating func failure(now: UInt64) -> Int? {
        if let last = lastLogged, now &- last < intervalNanoseconds {
            suppressed += 1
            return nil
        }
        lastLogged = now
        defer { suppressed = 0 }
        return suppressed
    }
}
