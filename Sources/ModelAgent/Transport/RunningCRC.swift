import Synchronization

/// A part's CRC computed in the transfer's write callback, from the very bytes written,
/// so the part need not be read back from disk afterwards. Writes must arrive in file
/// order (a retry that resumes where the last attempt stopped does); any other write
/// spoils it, and the part is read back and hashed instead.
final class RunningCRC: Sendable {
    private struct State {
        var next: Int64
        var value: UInt64 = 0
        var spoiled = false
    }

    let algorithm: CRCAlgorithm
    let start: Int64
    private let state: Mutex<State>

    init(algorithm: CRCAlgorithm, start: Int64) {
        self.algorithm = algorithm
        self.start = start
        state = Mutex(State(next: start))
    }

    /// `bytes` were just written at `offset`.
    func absorb(_ bytes: UnsafeRawBufferPointer, at offset: Int64) {
        state.withLock { s in
            guard !s.spoiled, offset == s.next else {
                s.spoiled = true
                return
            }
            s.value = algorithm.update(s.value, bytes)
            s.next += Int64(bytes.count)
        }
    }

    /// The CRC of `range` if exactly its bytes were absorbed, in order.
    func value(covering range: Range<Int64>) -> UInt64? {
        state.withLock { s in
            !s.spoiled && start == range.lowerBound && s.next == range.upperBound ? s.value : nil
        }
    }
}
