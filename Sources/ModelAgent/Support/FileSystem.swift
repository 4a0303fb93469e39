#if canImport(Glibc)
    import Glibc
#endif

/// Thin, explicit wrappers over POSIX file calls. The agent needs exact control over
/// symlinks (never followed when deleting), renames (same filesystem only) and errno
/// (ENOSPC must surface as such), which is why this does not go through FileManager.
enum FileSystem {
    enum Kind: Sendable, Equatable {
        case file, directory, symlink, other
    }

    /// The kind of `path` without following a final symlink, or nil when nothing is there.
    static func kind(_ path: String) -> Kind? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return kind(of: st.st_mode)
    }

    /// The kind of what `path` resolves to (symlinks followed), or nil.
    static func resolvedKind(_ path: String) -> Kind? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return kind(of: st.st_mode)
    }

    static func kind(of mode: mode_t) -> Kind {
        switch mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        default: return .other
        }
    }

    static func exists(_ path: String) -> Bool { kind(path) != nil }

    static func fileSize(_ path: String) throws -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
        return Int64(st.st_size)
    }

    /// Device and inode of what `path` resolves to: the identity of a file or directory.
    static func identity(_ path: String) throws -> FileIdentity {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    static func deviceID(_ path: String) throws -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
        return UInt64(st.st_dev)
    }

    /// Free space and size of a filesystem, and the floor writers leave free on it:
    /// 1 % of its size, at least 16 MiB, at most 1 GiB.
    struct Volume: Sendable {
        let available: Int64
        let total: Int64
        var floor: Int64 { max(16 << 20, min(total / 100, 1 << 30)) }
    }

    static func volume(_ path: String) throws -> Volume {
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { throw SystemError("statvfs", path: path) }
        return volume(vfs)
    }

    static func volume(fd: Int32, path: String) throws -> Volume {
        var vfs = statvfs()
        guard fstatvfs(fd, &vfs) == 0 else { throw SystemError("fstatvfs", path: path) }
        return volume(vfs)
    }

    /// Saturating, never trapping: some volumes (FUSE, CSI drivers) report UINT64_MAX.
    private static func volume(_ vfs: statvfs) -> Volume {
        let blockSize = Int64(clamping: vfs.f_frsize)
        func bytes(_ blocks: UInt) -> Int64 {
            let (value, overflow) = Int64(clamping: blocks).multipliedReportingOverflow(by: blockSize)
            return overflow ? .max : value
        }
        return Volume(available: bytes(vfs.f_bavail), total: bytes(vfs.f_blocks))
    }

    /// Bytes available to an unprivileged writer on the filesystem holding `path`.
    static func availableBytes(_ path: String) throws -> Int64 {
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { throw SystemError("statvfs", path: path) }
        // Some volumes (FUSE, CSI drivers) report UINT64_MAX: saturate, never trap.
        let (bytes, overflow) = Int64(clamping: vfs.f_bavail).multipliedReportingOverflow(
            by: Int64(clamping: vfs.f_frsize))
        return overflow ? .max : bytes
    }

    static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw SystemError("mkdir", path: path)
        }
        guard resolvedKind(path) == .directory else {
            throw SystemError("mkdir", path: path, code: ENOTDIR)
        }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if resolvedKind(path) == .directory { return }
        let parent = parentPath(path)
        if parent != path && !parent.isEmpty { try makeDirectories(parent, mode: mode) }
        try makeDirectory(path, mode: mode)
    }

    /// Names in a directory, without "." and "..", in no particular order.
    static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemError("opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Deletes `path` and everything below it. Symlinks are removed, never followed.
    /// A missing path is not an error.
    static func removeTree(_ path: String) throws {
        guard let k = kind(path) else { return }
        if k == .directory {
            for name in try listDirectory(path) {
                try removeTree(path + "/" + name)
            }
            if rmdir(path) != 0 && errno != ENOENT { throw SystemError("rmdir", path: path) }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw SystemError("unlink", path: path)
        }
    }

    /// The disk space `path` and everything below it take (allocated blocks, as `du`
    /// counts them; symlinks not followed), saturating. What cannot be read counts 0.
    static func treeBytes(_ path: String) -> Int64 {
        var total: Int64 = 0
        var pending = [path]
        while let next = pending.popLast() {
            var st = stat()
            guard lstat(next, &st) == 0 else { continue }
            let (bytes, overflow) = Int64(clamping: st.st_blocks).multipliedReportingOverflow(by: 512)
            let (sum, overflowed) = total.addingReportingOverflow(overflow ? .max : bytes)
            total = overflowed ? .max : sum
            if kind(of: st.st_mode) == .directory, let names = try? listDirectory(next) {
                pending += names.map { next + "/" + $0 }
            }
        }
        return total
    }

    static func rename(_ from: String, to: String) throws {
        if Glibc.rename(from, to) != 0 {
            throw SystemError("rename", path: "\(from) -> \(to)")
        }
    }

    static func removeFile(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw SystemError("unlink", path: path) }
    }

    /// Reads a regular file (symlinks followed) whole. Anything else is refused: opened
    /// without blocking, so a FIFO put in place of models.json or a marker cannot stall
    /// the agent, and never read, so a device cannot feed it endless bytes.
    static func readFile(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", path: path) }
        guard kind(of: st.st_mode) == .file else { throw NotARegularFile(path: path) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit { throw SystemError("read", path: path, code: EFBIG) }
        }
        return out
    }

    /// Writes `bytes` to a fresh file at `path` (which must not be in use by readers).
    static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        try writeAll(fd: fd, bytes, path: path)
    }

    /// Writes to `temporary` then renames onto `path`, so readers see the old or the
    /// new content, never a mix. Both paths must be on one filesystem.
    /// The temporary file is created anew (`O_EXCL`: never through a symlink or into a file
    /// someone else left there, in a directory other containers can write to).
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], temporary: String) throws {
        do {
            if unlink(temporary) != 0 && errno != ENOENT { throw SystemError("unlink", path: temporary) }
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SystemError("open", path: temporary) }
            defer { close(fd) }
            try writeAll(fd: fd, bytes, path: temporary)
            try rename(temporary, to: path)
        } catch {
            try? removeFile(temporary)
            throw error
        }
    }

    static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: path)
                }
                offset += n
            }
        }
    }

    /// Hard-links what `from` resolves to (a symlink is followed, not linked).
    static func hardLink(_ from: String, to: String) throws {
        if linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) != 0 {
            throw SystemError("link", path: "\(from) -> \(to)")
        }
    }

    /// Copies a regular file's bytes; the destination is created (mode 0644) or truncated.
    /// Returns the number of bytes copied.
    @discardableResult
    static func copyFile(_ from: String, to: String, mode: mode_t = 0o644) throws -> Int64 {
        let src = open(from, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw SystemError("open", path: from) }
        defer { close(src) }
        let dst = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard dst >= 0 else { throw SystemError("open", path: to) }
        defer { close(dst) }
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while true {
            let n = read(src, buffer, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: from)
            }
            if n == 0 { return total }
            var done = 0
            while done < n {
                let w = write(dst, buffer + done, n - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("write", path: to)
                }
                done += w
            }
            total += Int64(n)
        }
    }

    /// The canonical absolute path (symlinks, "." and ".." resolved), or nil if it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// An absolute path with "." and ".." resolved as text (no symlinks followed).
    static func lexicallyNormalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in absolute(path).split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Whether `path` is `directory` or lies below it (both canonical).
    static func isInside(_ path: String, _ directory: String) -> Bool {
        if directory == "/" { return path.hasPrefix("/") }
        return path == directory || path.hasPrefix(directory + "/")
    }

    static func parentPath(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func lastComponent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `path` made absolute against the working directory, with trailing slashes removed.
    static func absolute(_ path: String) -> String {
        var p = path
        if !p.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&buffer, buffer.count) != nil {
                let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                p = (cwd == "/" ? "" : cwd) + "/" + p
            }
        }
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}

struct FileIdentity: Hashable, Sendable {
    let device: UInt64
    let inode: UInt64
}

extension FileSystem {
    /// Adds execute permission where read permission is set (like `chmod +X` for files).
    static func setExecutable(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw SystemError("stat", path: path) }
        let mode = st.st_mode | ((st.st_mode & 0o444) >> 2)
        if chmod(path, mode) != 0 { throw SystemError("chmod", path: path) }
    }
}
