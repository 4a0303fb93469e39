#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive `flock` on `<model-dir>/.model-agent.lock`, held for the life of the
/// process. Two agents on one model dir would delete each other's staging as leftovers,
/// write the same models and unload each other's on restart; the second one is refused.
/// The kernel releases the lock when the process ends, however it ends.
final class ModelDirLock: Sendable {
    static let fileName = ".model-agent.lock"
    private let fd: Int32

    init(modelDir: String) throws {
        let path = modelDir + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = Self.holder(fd)
            close(fd)
            if code == EWOULDBLOCK {
                throw StoreError(
                    "another model-agent\(holder.map { " (pid \($0))" } ?? "") already manages \(modelDir); "
                        + "only one agent may own a model dir")
            }
            throw SystemError("flock", path: path, code: code)
        }
        // The holder's pid, for the message a second agent prints.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit { close(fd) }

    private static func holder(_ fd: Int32) -> Int? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int(String(decoding: buffer[..<n], as: UTF8.self).trimmingWhitespace())
    }
}
