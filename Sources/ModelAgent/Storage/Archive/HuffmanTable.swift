/// A canonical Huffman code (RFC 1951 §3.2.2) prepared for decoding: codes of up to
/// `fastBits` bits resolve with one table lookup; longer ones by a search over lengths.
struct HuffmanTable {
    static let fastBits = 10
    static let fastMask: UInt64 = (1 << fastBits) - 1

    /// Indexed by the next `fastBits` input bits (least significant first):
    /// (length << 9) | symbol, or 0 when the code is longer.
    private(set) var fast: [UInt16]
    /// For each length, one past the last code of that length, shifted to 16 bits.
    private var limit16 = [UInt32](repeating: 0, count: 17)
    private var firstCode = [UInt32](repeating: 0, count: 17)
    private var firstIndex = [Int](repeating: 0, count: 17)
    private var symbols: [UInt16]

    init(lengths: ArraySlice<UInt8>) throws {
        fast = [UInt16](repeating: 0, count: 1 << Self.fastBits)
        symbols = [UInt16](repeating: 0, count: lengths.count)
        var counts = [Int](repeating: 0, count: 17)
        for length in lengths { counts[Int(length)] += 1 }
        counts[0] = 0
        var code: UInt32 = 0
        var index = 0
        var nextCode = [UInt32](repeating: 0, count: 17)
        for length in 1...16 {
            nextCode[length] = code
            firstCode[length] = code
            firstIndex[length] = index
            code += UInt32(counts[length])
            if counts[length] > 0 && code > (1 << length) {
                throw ArchiveError("invalid deflate data: over-subscribed Huffman code")
            }
            limit16[length] = code << (16 - length)
            code <<= 1
            index += counts[length]
        }
        limit16[16] = 1 << 16
        for (symbol, length8) in lengths.enumerated() {
            let length = Int(length8)
            guard length > 0 else { continue }
            let c = nextCode[length]
            nextCode[length] += 1
            symbols[firstIndex[length] + Int(c - firstCode[length])] = UInt16(symbol)
            if length <= Self.fastBits {
                var reversed = 0
                for bit in 0..<length where c & (1 << UInt32(length - 1 - bit)) != 0 { reversed |= 1 << bit }
                var slot = reversed
                while slot < (1 << Self.fastBits) {
                    fast[slot] = UInt16(length << 9 | symbol)
                    slot += 1 << length
                }
            }
        }
    }

    /// Decodes one symbol from `bits` (at least 16 valid bits); returns it and its length.
    @inline(__always)
    func decode(_ bits: UInt64) throws -> (symbol: Int, length: Int) {
        let entry = fast[Int(bits & Self.fastMask)]
        if entry != 0 { return (Int(entry & 511), Int(entry >> 9)) }
        var k: UInt32 = 0
        var b = UInt32(truncatingIfNeeded: bits & 0xffff)
        for _ in 0..<16 {
            k = (k << 1) | (b & 1)
            b >>= 1
        }
        var length = Self.fastBits + 1
        while length < 16 && k >= limit16[length] { length += 1 }
        if length >= 16 || k >= limit16[length] { throw ArchiveError("invalid deflate data: bad Huffman code") }
        let index = firstIndex[length] + Int((k >> UInt32(16 - length)) - firstCode[length])
        guard index < symbols.count else { throw ArchiveError("invalid deflate data: bad Huffman code") }
        return (Int(symbols[index]), length)
    }
}
