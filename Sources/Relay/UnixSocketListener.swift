#if canImport(Glibc)
import Glibc
#endif
import RelayCore

/// Prepares the filesystem side of the relay socket: refuses to steal a live socket, removes a
/// stale one, and arranges for the socket to carry its mode and group before anyone can connect
/// (it is bound inside a private 0700 directory, chmod/chowned there, then renamed into place).
struct UnixSocketListener {
    struct StartupError: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    let mode: UInt32
    let group: String?
    /// The variable named in errors.
    let variable: String

    /// Where to bind before the rename; nil when binding must happen at `path` directly.
    private(set) var stagingDirectory: String?
    /// The socket file we published (device, inode), so that exit removes only our own.
    private var published: (dev_t, ino_t)?

    init(path: String, mode: UInt32, group: String?, variable: String = "RELAY_SOCKET") {
        self.path = path
        self.mode = mode
        self.group = group
        self.variable = variable
    }

    /// Checks the existing file and parent directory; returns the path to bind.
    mutating func prepare() throws -> String {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var st = stat()
        if stat(directory, &st) != 0 {
            guard Self.makeDirectories(directory) else {
                throw StartupError(description: "\(variable): cannot create directory \(directory): \(String(cString: strerror(errno)))")
            }
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw StartupError(description: "\(variable): \(directory) is not a directory")
        }
        try removeStaleSocket()

        // Stage inside a private directory next to the final path (same filesystem: rename works).
        var template = Array("\(directory)/.pubsub-relay.XXXXXX".utf8CString)
        let staged = template.withUnsafeMutableBufferPointer { buf -> String? in
            guard let p = mkdtemp(buf.baseAddress!) else { return nil }
            return String(cString: p)
        }
        if let staged, (staged + "/s").utf8.count <= 107 {
            stagingDirectory = staged
            return staged + "/s"
        }
        if let staged { rmdir(staged) }
        // Path too long to stage: bind in place under a umask that yields the mode directly.
        stagingDirectory = nil
        return path
    }

    /// Runs the bind with the right umask when binding in place.
    func withBindUmask<T>(_ body: () throws -> T) rethrows -> T {
        guard stagingDirectory == nil else { return try body() }
        let old = umask(mode_t(0o777 & ~mode))
        defer { umask(old) }
        return try body()
    }

    /// Applies mode and group to the bound socket and moves it to its final path.
    mutating func publish(boundPath: String) throws {
        guard chmod(boundPath, mode_t(mode)) == 0 else {
            throw StartupError(description: "RELAY_SOCKET_MODE: chmod \(String(mode, radix: 8)) on \(boundPath) failed: \(String(cString: strerror(errno)))")
        }
        if let group {
            guard let gid = Self.groupID(group) else {
                throw StartupError(description: "RELAY_SOCKET_GROUP: no group named '\(group)' on this system")
            }
            guard chown(boundPath, uid_t.max, gid) == 0 else {
                throw StartupError(description: "RELAY_SOCKET_GROUP: chown to group '\(group)' failed: \(String(cString: strerror(errno)))")
            }
        }
        if let staging = stagingDirectory {
            guard rename(boundPath, path) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(boundPath)
                rmdir(staging)
                throw StartupError(description: "\(variable): cannot move the socket to \(path): \(reason)")
            }
            rmdir(staging)
        }
        var st = stat()
        if lstat(path, &st) == 0 { published = (st.st_dev, st.st_ino) }
    }

    /// Removes the staging directory after a failed bind.
    func abandon() {
        if let staging = stagingDirectory {
            unlink(staging + "/s")
            rmdir(staging)
        }
    }

    /// Removes the socket file on clean exit, if it is still ours (same inode we published):
    /// a file someone put there since is left alone.
    func remove() {
        var st = stat()
        guard let (dev, ino) = published, lstat(path, &st) == 0, st.st_dev == dev, st.st_ino == ino else { return }
        unlink(path)
    }

    private func removeStaleSocket() throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw StartupError(description: "\(variable): \(path) exists and is not a socket; refusing to replace it")
        }
        if Self.someoneListens(at: path) {
            throw StartupError(description: "\(variable): \(path) is in use by a running process (a connection to it succeeded); stop that process or choose another path")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw StartupError(description: "\(variable): cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func someoneListens(at path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }

    /// `mkdir -p` with mode 0755 for the directories it creates.
    static func makeDirectories(_ directory: String) -> Bool {
        var prefix = directory.hasPrefix("/") ? "/" : ""
        for part in directory.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
        }
        return true
    }

    static func groupID(_ name: String) -> gid_t? {
        if let numeric = gid_t(name) { return numeric }
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }
}
