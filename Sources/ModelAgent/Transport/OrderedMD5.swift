import Synchronization

/// A file's MD5 while its ranged parts arrive out of order: MD5 is one sequential state,
/// so whenever the parts completed so far extend the hashed prefix, that stretch is read
/// back (from the page cache) and hashed; verification mostly overlaps the download.
final class OrderedMD5: ContentCheck {
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
        accumulator = Accumulator()
    }

    /// Records that `range` is on disk and hashes whatever became contiguous.
    func completed(_ range: Range<Int64>, hashed: RunningCRC?) async throws {
        state.withLock { $0.ready[range.lowerBound] = range.upperBound }
        try await advance()
    }

    func runningCRC(startingAt start: Int64) -> RunningCRC? { nil }

    /// Hashes up to `size` and gives the MD5.
    func computed(size: Int64) async throws -> Checksum {
        while true {
            try await advance()
            let (hashed, running) = state.withLock { ($0.hashed, $0.running) }
            if hashed >= size && !running { break }
            if !running && hashed < size {
                throw IntegrityError(file: file.path, detail: "internal: parts missing before verification")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        return .md5(hex: accumulator.finish())
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
        private let md5 = Digest(.md5)

        func hash(_ file: OpenFile, _ region: Range<Int64>) throws {
            try file.scan(region) { md5.update($0) }
        }

        func finish() -> String { hex(md5.finish()) }
    }
}
