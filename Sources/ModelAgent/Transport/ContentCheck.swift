/// Checks a downloaded file against the checksum its store published, while its parts
/// land on disk: each finished range is hashed (as it was written, or read back from the
/// page cache).
protocol ContentCheck: Sendable {
    var expected: Checksum { get }
    /// Records that `range` of the file is on disk, and hashes what it can. `hashed` is
    /// the CRC its transfer computed while writing it, if `runningCRC` gave one.
    func completed(_ range: Range<Int64>, hashed: RunningCRC?) async throws
    /// A CRC for a transfer to compute as it writes the part starting at `start` (nil:
    /// this check reads parts back).
    func runningCRC(startingAt start: Int64) -> RunningCRC?
    /// The checksum of the file's first `size` bytes, to compare with `expected`. Every
    /// range below `size` must have been reported.
    func computed(size: Int64) async throws -> Checksum
}

extension ContentCheck {
    func completed(_ range: Range<Int64>) async throws {
        try await completed(range, hashed: nil)
    }
}

extension Checksum {
    /// MD5 is one sequential state: it hashes the file front to back as the prefix grows.
    /// CRCs hash each range on its own, in parallel, and combine the results.
    func makeCheck(for file: OpenFile) -> any ContentCheck {
        switch self {
        case .md5: return OrderedMD5(expected: self, file: file)
        case .crc(let algorithm, _):
            return PartwiseCRC(expected: self, algorithm: algorithm, file: file)
        }
    }
}

extension OpenFile {
    /// Reads `region` in 1 MiB pieces, giving each to `body`.
    func scan(_ region: Range<Int64>, _ body: (UnsafeRawBufferPointer) -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset = region.lowerBound
        while offset < region.upperBound {
            let want = Int(min(Int64(buffer.count), region.upperBound - offset))
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
            if n == 0 { throw IntegrityError(file: path, detail: "file shorter than the parts written") }
            body(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            offset += Int64(n)
        }
    }
}
