import Synchronization

/// Computes a file's checksum while its ranged parts arrive out of order: whenever the
/// parts completed so far extend the hashed prefix, that stretch is read back (from the
/// page cache) and hashed, so verification mostly overlaps the download.
final class OrderedChecksum: Sendable {
    private struct State {
        var ready: [Int64: Int64] = [:]
        var hashed: Int64 = 0
        var running = false
    }

    private let state = Mutex(State())
    private let accumulator: Accumulator
    private let file: OpenFile
    let expected: Checksum

    init(expected: Checksum, file: OpenFile) {
        self.expected = expected
        self.file = file
        accumulator = Accumulator(expected)
    }

    /// Records that `range` is on disk and hashes whatever became contiguous.
    func completed(_ range: Range<Int64>) async throws {
        state.withLock { $0.ready[range.lowerBound] = range.upperBound }
        try await advance()
    }

    /// Hashes up to `size` and tells whether the result is the expected checksum.
    func matches(size: Int64) async throws -> Bool {
        while true {
            try await advance()
            let (hashed, running) = state.withLock { ($0.hashed, $0.running) }
            if hashed >= size && !running { break }
            if !running && hashed < size {
                throw IntegrityError(file: file.path, detail: "internal: parts missing before verification")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        return accumulator.matches(expected)
    }

    private func advance() async throws {
        while true {
            let region = state.withLock { s -> Range<Int64>? in
                guard !s.running else { return nil }
                var end = s.hashed
                while let next = s.ready.removeValue(forKey: end) { end = next }
                guard end > s.hashed else { return nil }
                s.running = true
                return s.hashed..<end
            }
            guard let region else { return }
            let (file, accumulator) = (self.file, self.accumulator)
            do {
                try await BlockingExecutor.shared.run { try accumulator.hash(file, region) }
            } catch {
                state.withLock { $0.running = false }
                throw error
            }
            state.withLock {
                $0.hashed = region.upperBound
                $0.running = false
            }
        }
    }

    /// The running digest. Only the one task that set `running` touches it.
    private final class Accumulator: @unchecked Sendable {
        private let md5: Digest?
        private var crc = CRC32.castagnoli()

        init(_ expected: Checksum) {
            if case .md5 = expected { md5 = Digest(.md5) } else { md5 = nil }
        }

        func hash(_ file: OpenFile, _ region: Range<Int64>) throws {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            var offset = region.lowerBound
            while offset < region.upperBound {
                let want = Int(min(Int64(buffer.count), region.upperBound - offset))
                let n = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
                if n == 0 { throw IntegrityError(file: file.path, detail: "file shorter than the parts written") }
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[..<n])
                if let md5 { md5.update(chunk) } else { crc.update(chunk) }
                offset += Int64(n)
            }
        }

        func matches(_ expected: Checksum) -> Bool {
            switch expected {
            case .md5(let hexValue): return md5.map { hex($0.finish()) } == hexValue
            case .crc32c(let value): return crc.value == value
            }
        }
    }
}
