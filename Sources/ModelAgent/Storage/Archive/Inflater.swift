/// A streaming raw-DEFLATE decoder (RFC 1951) that is read from like a file. Output is
/// produced into a 64 KiB ring holding the 32 KiB history that back-references need.
final class Inflater: ByteSource {
    private static let windowSize = 1 << 16
    private static let windowMask = windowSize - 1
    /// Decoding pauses once this much unread output is waiting.
    private static let batch = 16 << 10

    private static let lengthBase: [Int] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227,
        258,
    ]
    private static let lengthExtra: [Int] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ]
    private static let distanceBase: [Int] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
        6145, 8193, 12289, 16385, 24577,
    ]
    private static let distanceExtra: [Int] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
    ]
    private static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    private static let fixedTables: (HuffmanTable, HuffmanTable) = {
        var lengths = [UInt8](repeating: 8, count: 288)
        for i in 144..<256 { lengths[i] = 9 }
        for i in 256..<280 { lengths[i] = 7 }
        let distances = [UInt8](repeating: 5, count: 32)
        return (try! HuffmanTable(lengths: lengths[...]), try! HuffmanTable(lengths: distances[...]))
    }()

    private enum State {
        case blockHeader
        case stored(remaining: Int)
        case compressed(literals: HuffmanTable, distances: HuffmanTable)
        case done
    }

    private let input: BufferedInput
    private var bits: UInt64 = 0
    private var bitCount = 0
    /// Zero bytes fed past the end of the input; consuming them means truncation.
    private var phantomBytes = 0
    private var state = State.blockHeader
    private var finalBlock = false
    private var window = [UInt8](repeating: 0, count: windowSize)
    private var produced = 0
    private var consumed = 0
    private var pendingLength = 0
    private var pendingDistance = 0

    init(input: BufferedInput) {
        self.input = input
    }

    var isFinished: Bool {
        if case .done = state { return consumed == produced }
        return false
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while consumed == produced {
            if case .done = state { return 0 }
            try decodeBatch()
        }
        let available = produced - consumed
        let count = min(buffer.count, available)
        window.withUnsafeBytes { w in
            var copied = 0
            while copied < count {
                let start = (consumed + copied) & Self.windowMask
                let run = min(count - copied, Self.windowSize - start)
                (buffer.baseAddress! + copied).copyMemory(from: w.baseAddress! + start, byteCount: run)
                copied += run
            }
        }
        consumed += count
        return count
    }

    /// After the final block: gives the whole bytes read ahead back to the input, so a
    /// container format (gzip) can read its trailer.
    func returnUnusedInput() {
        bits >>= UInt64(bitCount & 7)
        bitCount -= bitCount & 7
        var bytes: [UInt8] = []
        while bitCount >= 8 {
            bytes.append(UInt8(truncatingIfNeeded: bits))
            bits >>= 8
            bitCount -= 8
        }
        let real = bytes.count - phantomBytes
        if real > 0 { input.unread(Array(bytes.prefix(real))) }
        phantomBytes = 0
    }

    @inline(__always)
    private func need(_ count: Int) throws {
        while bitCount < count {
            if let byte = try input.nextByte() {
                bits |= UInt64(byte) << UInt64(bitCount)
            } else {
                phantomBytes += 1
                if phantomBytes > 8 { throw ArchiveError("compressed data is truncated") }
            }
            bitCount += 8
        }
    }

    @inline(__always)
    private func take(_ count: Int) throws -> Int {
        if count == 0 { return 0 }
        try need(count)
        let value = Int(bits & ((1 << UInt64(count)) - 1))
        bits >>= UInt64(count)
        bitCount -= count
        try checkOverrun()
        return value
    }

    @inline(__always)
    private func checkOverrun() throws {
        if phantomBytes > 0 && bitCount < phantomBytes * 8 {
            throw ArchiveError("compressed data is truncated")
        }
    }

    @inline(__always)
    private func decodeSymbol(_ table: HuffmanTable) throws -> Int {
        try need(16)
        let (symbol, length) = try table.decode(bits)
        bits >>= UInt64(length)
        bitCount -= length
        try checkOverrun()
        return symbol
    }

    private func decodeBatch() throws {
        let target = produced + Self.batch
        try window.withUnsafeMutableBufferPointer { w in
            while produced < target {
                if pendingLength > 0 {
                    copyMatch(w)
                    continue
                }
                switch state {
                case .done:
                    return
                case .blockHeader:
                    if finalBlock {
                        state = .done
                        return
                    }
                    finalBlock = try take(1) == 1
                    switch try take(2) {
                    case 0:
                        bits >>= UInt64(bitCount & 7)
                        bitCount -= bitCount & 7
                        let length = try take(16)
                        let complement = try take(16)
                        guard length == (~complement & 0xffff) else {
                            throw ArchiveError("invalid deflate data: stored block length check failed")
                        }
                        state = .stored(remaining: length)
                    case 1:
                        state = .compressed(literals: Self.fixedTables.0, distances: Self.fixedTables.1)
                    case 2:
                        let (literals, distances) = try readDynamicTables()
                        state = .compressed(literals: literals, distances: distances)
                    default:
                        throw ArchiveError("invalid deflate data: reserved block type")
                    }
                case .stored(var remaining):
                    while remaining > 0 && produced < target {
                        w[produced & Self.windowMask] = UInt8(try take(8))
                        produced += 1
                        remaining -= 1
                    }
                    state = remaining == 0 ? .blockHeader : .stored(remaining: remaining)
                case .compressed(let literals, let distances):
                    while produced < target {
                        let symbol = try decodeSymbol(literals)
                        if symbol < 256 {
                            w[produced & Self.windowMask] = UInt8(symbol)
                            produced += 1
                            continue
                        }
                        if symbol == 256 {
                            state = .blockHeader
                            break
                        }
                        let lengthCode = symbol - 257
                        guard lengthCode < 29 else { throw ArchiveError("invalid deflate data: bad length code") }
                        let length = Self.lengthBase[lengthCode] + (try take(Self.lengthExtra[lengthCode]))
                        let distanceCode = try decodeSymbol(distances)
                        guard distanceCode < 30 else { throw ArchiveError("invalid deflate data: bad distance code") }
                        let distance = Self.distanceBase[distanceCode] + (try take(Self.distanceExtra[distanceCode]))
                        guard distance <= produced else {
                            throw ArchiveError("invalid deflate data: distance reaches before the start")
                        }
                        pendingLength = length
                        pendingDistance = distance
                        copyMatch(w)
                    }
                }
            }
        }
    }

    @inline(__always)
    private func copyMatch(_ w: UnsafeMutableBufferPointer<UInt8>) {
        var from = produced - pendingDistance
        let end = produced + pendingLength
        while produced < end {
            w[produced & Self.windowMask] = w[from & Self.windowMask]
            produced += 1
            from += 1
        }
        pendingLength = 0
    }

    private func readDynamicTables() throws -> (HuffmanTable, HuffmanTable) {
        let literalCount = try take(5) + 257
        let distanceCount = try take(5) + 1
        let codeLengthCount = try take(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else {
            throw ArchiveError("invalid deflate data: too many codes")
        }
        var codeLengths = [UInt8](repeating: 0, count: 19)
        for i in 0..<codeLengthCount { codeLengths[Self.codeLengthOrder[i]] = UInt8(try take(3)) }
        let codeLengthTable = try HuffmanTable(lengths: codeLengths[...])
        var lengths = [UInt8](repeating: 0, count: literalCount + distanceCount)
        var i = 0
        while i < lengths.count {
            let symbol = try decodeSymbol(codeLengthTable)
            switch symbol {
            case 0..<16:
                lengths[i] = UInt8(symbol)
                i += 1
            case 16:
                guard i > 0 else { throw ArchiveError("invalid deflate data: repeat with no previous length") }
                let count = 3 + (try take(2))
                guard i + count <= lengths.count else { throw ArchiveError("invalid deflate data: lengths overflow") }
                for _ in 0..<count {
                    lengths[i] = lengths[i - 1]
                    i += 1
                }
            default:
                let count = symbol == 17 ? 3 + (try take(3)) : 11 + (try take(7))
                guard i + count <= lengths.count else { throw ArchiveError("invalid deflate data: lengths overflow") }
                i += count
            }
        }
        guard lengths[256] > 0 else { throw ArchiveError("invalid deflate data: no end-of-block code") }
        return (
            try HuffmanTable(lengths: lengths[..<literalCount]),
            try HuffmanTable(lengths: lengths[literalCount...])
        )
    }
}
