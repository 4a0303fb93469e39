/// A running CRC-32 (the zip/gzip polynomial) over bytes that arrive in pieces.
struct CRC32: Sendable {
    private(set) var value: UInt32 = 0

    static func ieee() -> CRC32 { CRC32() }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        value = UInt32(truncatingIfNeeded: CRCAlgorithm.crc32.update(UInt64(value), bytes))
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }
}
