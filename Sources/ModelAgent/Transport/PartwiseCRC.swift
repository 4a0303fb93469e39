import Synchronization

/// A whole-file CRC from ranges hashed independently, and combined in file order at the
/// end: a ranged part is hashed by its transfer as it is written (`RunningCRC`); any
/// other range (a stream, the head of a probed file, a part whose running CRC was
/// spoiled) is read back and hashed on a blocking thread as soon as it lands. Nothing
/// waits for the parts before it.
final class PartwiseCRC: ContentCheck {
    let expected: Checksum
    private let algorithm: CRCAlgorithm
    private let file: OpenFile
    /// Hashed ranges by start: end and CRC.
    private let ranges = Mutex<[Int64: (end: Int64, crc: UInt64)]>([:])

    init(expected: Checksum, algorithm: CRCAlgorithm, file: OpenFile) {
        self.expected = expected
        self.algorithm = algorithm
        self.file = file
    }

    func runningCRC(startingAt start: Int64) -> RunningCRC? {
        RunningCRC(algorithm: algorithm, start: start)
    }

    func completed(_ range: Range<Int64>, hashed: RunningCRC?) async throws {
        guard !range.isEmpty else { return }
        let crc: UInt64
        if let value = hashed?.value(covering: range) {
            crc = value
        } else {
            let (file, algorithm) = (self.file, self.algorithm)
            crc = try await BlockingExecutor.shared.run {
                var crc: UInt64 = 0
                try file.scan(range) { crc = algorithm.update(crc, $0) }
                return crc
            }
        }
        ranges.withLock { $0[range.lowerBound] = (range.upperBound, crc) }
    }

    func computed(size: Int64) async throws -> Checksum {
        let ranges = self.ranges.withLock { $0 }
        var offset: Int64 = 0
        var crc: UInt64 = 0
        while offset < size {
            guard let range = ranges[offset], range.end > offset else {
                throw IntegrityError(
                    file: file.path, detail: "internal: range at \(offset) not hashed before verification")
            }
            crc = algorithm.combine(crc, range.crc, secondLength: range.end - offset)
            offset = range.end
        }
        guard offset == size else {
            throw IntegrityError(file: file.path, detail: "internal: hashed ranges end at \(offset), not \(size)")
        }
        return .crc(algorithm, crc)
    }
}
