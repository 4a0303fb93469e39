#if canImport(Glibc)
    import Glibc
#endif

/// A forward-only stream of bytes. `read` returns 0 only at the end.
protocol ByteSource: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteSource {
    /// Fills `buffer` completely or throws: archive structures have fixed sizes.
    func readExactly(into buffer: UnsafeMutableRawBufferPointer, what: @autoclosure () -> String) throws {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { throw ArchiveError("unexpected end of archive in \(what())") }
            done += n
        }
    }
}

/// A span of an open file, read with pread so several sources can share the file.
final class FileSpanSource: ByteSource {
    private let file: OpenFile
    private var offset: Int64
    private var remaining: Int64?

    init(file: OpenFile, offset: Int64 = 0, length: Int64? = nil) {
        self.file = file
        self.offset = offset
        self.remaining = length
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var want = buffer.count
        if let remaining { want = Int(min(Int64(want), remaining)) }
        if want == 0 { return 0 }
        let n = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
        if n == 0, let remaining, remaining > 0 {
            throw ArchiveError("archive is truncated (\(remaining) bytes missing)")
        }
        offset += Int64(n)
        if remaining != nil { remaining! -= Int64(n) }
        return n
    }
}

/// Bytes already in memory (fuzzing, tests).
final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        if n > 0 {
            bytes.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: n)
            }
            offset += n
        }
        return n
    }
}

struct ArchiveError: Error, RetryClassifying, CustomStringConvertible {
    let description: String
    var isTransient: Bool { false }
    /// Entry names come from the archive and may be a megabyte long: the reason is cut.
    init(_ description: String) {
        self.description = description.count > 1024 ? String(description.prefix(1024)) + "…" : description
    }
}
