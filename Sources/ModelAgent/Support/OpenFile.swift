import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes written outside preallocated space by every file of the process.
private let bytesWrittenByAllFiles = Atomic<Int64>(0)

/// An owned file descriptor for positional writes; closed on deinit. Positional writes
/// let parallel ranged parts land in one file without sharing a file offset.
final class OpenFile: @unchecked Sendable {
    // Immutable after init; pwrite on one descriptor from several threads is safe.
    let fd: Int32
    let path: String
    /// Blocks reserved by `preallocate`: writes inside them cannot fill the volume.
    private let reserved = Atomic<Int64>(0)

    /// How often writers look at the volume (bytes written by all files together):
    /// concurrent downloads of unknown size, extractions and many small files each passed
    /// a check at their start, so together they could still fill the volume.
    static let spaceCheckInterval: Int64 = 16 << 20

    init(creating path: String, mode: mode_t = 0o644) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        self.fd = fd
        self.path = path
    }

    init(reading path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws {
        let count = Int64(buffer.count)
        if offset + count > reserved.load(ordering: .relaxed) {
            let before = bytesWrittenByAllFiles.add(count, ordering: .relaxed).oldValue
            if before / Self.spaceCheckInterval != (before + count) / Self.spaceCheckInterval {
                try ensureVolumeNotFull()
            }
        }
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("write", path: path)
            }
            done += n
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns the count (0 at end of file).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        while true {
            let n = pread(fd, buffer.baseAddress, buffer.count, off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("read", path: path)
            }
            return n
        }
    }

    /// Reserves `length` bytes on disk up front, so a full disk fails here and not
    /// halfway through a download.
    func preallocate(_ length: Int64) throws {
        guard length > 0 else { return }
        defer { reserved.store(length, ordering: .relaxed) }
        let rc = posix_fallocate(fd, 0, off_t(length))
        if rc == EOPNOTSUPP || rc == EINVAL {
            // Filesystems without fallocate (some overlay setups): size it instead.
            if ftruncate(fd, off_t(length)) != 0 { throw SystemError("ftruncate", path: path) }
        } else if rc != 0 {
            throw SystemError("fallocate", path: path, code: rc)
        }
    }

    private func ensureVolumeNotFull() throws {
        guard let volume = try? FileSystem.volume(fd: fd, path: path) else { return }
        if volume.available < volume.floor { throw SystemError("write", path: path, code: ENOSPC) }
    }

    func truncate(_ length: Int64) throws {
        if ftruncate(fd, off_t(length)) != 0 { throw SystemError("ftruncate", path: path) }
    }

    func size() throws -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", path: path) }
        return Int64(st.st_size)
    }
}
