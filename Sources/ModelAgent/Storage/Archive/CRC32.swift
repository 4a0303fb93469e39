import CZlib

/// CRC-32 checksums. The zip/gzip polynomial (IEEE) is zlib's `crc32_z`; Castagnoli's
/// (CRC-32C, used by Google Cloud Storage), which zlib lacks, is table-driven here
/// (reflected, slicing by 8).
struct CRC32: Sendable {
    static let castagnoliPolynomial: UInt32 = 0x82F6_3B78

    private static let castagnoliTables = makeTables(castagnoliPolynomial)

    /// Nil for IEEE (zlib computes it).
    private let tables: [UInt32]?
    private(set) var value: UInt32 = 0

    static func ieee() -> CRC32 { CRC32(tables: nil) }
    static func castagnoli() -> CRC32 { CRC32(tables: castagnoliTables) }

    private init(tables: [UInt32]?) { self.tables = tables }

    private static func makeTables(_ polynomial: UInt32) -> [UInt32] {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<8 {
                let previous = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (previous >> 8) ^ t[Int(previous & 0xff)]
            }
        }
        return t
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let tables else {
            if let base = bytes.baseAddress, bytes.count > 0 {
                value = UInt32(
                    truncatingIfNeeded: crc32_z(
                        UInt(value), base.assumingMemoryBound(to: Bytef.self), bytes.count))
            }
            return
        }
        var crc = ~value
        tables.withUnsafeBufferPointer { t in
            guard var pointer = bytes.baseAddress else { return }
            var n = bytes.count
            while n >= 8 {
                let low =
                    crc
                    ^ (UInt32(pointer.load(as: UInt8.self))
                        | UInt32(pointer.load(fromByteOffset: 1, as: UInt8.self)) << 8
                        | UInt32(pointer.load(fromByteOffset: 2, as: UInt8.self)) << 16
                        | UInt32(pointer.load(fromByteOffset: 3, as: UInt8.self)) << 24)
                let high =
                    UInt32(pointer.load(fromByteOffset: 4, as: UInt8.self))
                    | UInt32(pointer.load(fromByteOffset: 5, as: UInt8.self)) << 8
                    | UInt32(pointer.load(fromByteOffset: 6, as: UInt8.self)) << 16
                    | UInt32(pointer.load(fromByteOffset: 7, as: UInt8.self)) << 24
                crc =
                    t[7 * 256 + Int(low & 0xff)] ^ t[6 * 256 + Int((low >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((low >> 16) & 0xff)] ^ t[4 * 256 + Int(low >> 24)]
                    ^ t[3 * 256 + Int(high & 0xff)] ^ t[2 * 256 + Int((high >> 8) & 0xff)]
                    ^ t[1 * 256 + Int((high >> 16) & 0xff)] ^ t[Int(high >> 24)]
                pointer += 8
                n -= 8
            }
            while n > 0 {
                crc = (crc >> 8) ^ t[Int((crc ^ UInt32(pointer.load(as: UInt8.self))) & 0xff)]
                pointer += 1
                n -= 1
            }
        }
        value = ~crc
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }
}
