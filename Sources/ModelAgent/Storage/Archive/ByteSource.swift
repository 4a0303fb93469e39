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

/// Buffers a source and lets a decoder hand back bytes it read ahead.
final class BufferedInput {
    private let source: any ByteSource
    private var buffer: [UInt8]
    private var position = 0
    private var end = 0
    private var pushedBack: [UInt8] = []
    private(set) var finished = false

    init(_ source: any ByteSource, capacity: Int = 256 << 10) {
        self.source = source
        buffer = [UInt8](repeating: 0, count: capacity)
    }

    /// The next byte, or nil at the end of the source.
    @inline(__always)
    func nextByte() throws -> UInt8? {
        if let b = pushedBack.popLast() { return b }
        if position == end {
            if finished { return nil }
            try refill()
            if position == end { return nil }
        }
        let b = buffer[position]
        position += 1
        return b
    }

    /// Copies up to `target.count` bytes; returns how many (0 at the end).
    func read(into target: UnsafeMutableRawBufferPointer) throws -> Int {
        if target.isEmpty { return 0 }
        if !pushedBack.isEmpty {
            var n = 0
            while n < target.count, let b = pushedBack.popLast() {
                target[n] = b
                n += 1
            }
            return n
        }
        if position == end {
            if finished { return 0 }
            try refill()
            if position == end { return 0 }
        }
        let n = min(target.count, end - position)
        buffer.withUnsafeBytes { source in
            target.baseAddress!.copyMemory(from: source.baseAddress! + position, byteCount: n)
        }
        position += n
        return n
    }

    /// Returns bytes (in stream order) so the next reads see them first.
    func unread(_ bytes: [UInt8]) {
        pushedBack.append(contentsOf: bytes.reversed())
    }

    private func refill() throws {
        let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
        position = 0
        end = n
        if n == 0 { finished = true }
    }
}

public struct ArchiveError: Error, RetryClassifying, CustomStringConvertible {
    public let description: String
    public var isTransient: Bool { false }
    init(_ description: String) { self.description = description }
}
