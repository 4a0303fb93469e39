import CISAL

/// The CRCs object stores publish for whole objects (S3's additional checksums, GCS's
/// crc32c). All three are reflected with an all-ones initial value and final xor, so the
/// CRC of a file can be assembled from the CRCs of its parts, computed in any order.
enum CRCAlgorithm: String, Sendable, CaseIterable {
    /// CRC-32 (IEEE 802.3, the zip/gzip one).
    case crc32
    /// CRC-32C (Castagnoli).
    case crc32c
    /// CRC-64/NVME, S3's default for objects uploaded without a checksum of their own.
    case crc64nvme

    /// Width in bits: 32 or 64.
    var width: Int { self == .crc64nvme ? 64 : 32 }

    /// The reflected generator polynomial (bit 0 holds the highest power of x).
    fileprivate var reflectedPolynomial: UInt64 {
        switch self {
        case .crc32: return 0xEDB8_8320
        case .crc32c: return 0x82F6_3B78
        case .crc64nvme: return 0x9A6C_9329_AC4B_C9B5
        }
    }

    /// Continues `crc`, the CRC of the bytes before, over `bytes`. `update(0, all)` is
    /// the CRC of `all`.
    func update(_ crc: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        switch self {
        case .crc32:
            return UInt64(
                crc32_gzip_refl(
                    UInt32(truncatingIfNeeded: crc), base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count)))
        case .crc32c:
            // ISA-L's iSCSI routine neither inverts on entry nor on exit.
            var value = ~UInt32(truncatingIfNeeded: crc)
            var offset = 0
            while offset < bytes.count {
                let length = min(bytes.count - offset, 1 << 30)
                value = crc32_iscsi(
                    UnsafeMutablePointer(mutating: (base + offset).assumingMemoryBound(to: UInt8.self)), Int32(length),
                    value)
                offset += length
            }
            return UInt64(~value)
        case .crc64nvme:
            return CRC64NVMETable.update(crc, bytes)
        }
    }

    /// The CRC of A followed by B, from the CRC of A, the CRC of B and B's length:
    /// crc(A‖B) = crc(A)·x^(8·|B|) mod P ⊕ crc(B).
    func combine(_ first: UInt64, _ second: UInt64, secondLength: Int64) -> UInt64 {
        guard secondLength > 0 else { return first }
        return multiply(first, powerOfX(bytes: UInt64(secondLength))) ^ second
    }

    /// x^0 (the polynomial 1) in the reflected representation.
    private var one: UInt64 { 1 << (width - 1) }

    /// a·b mod P, both reflected.
    private func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var product: UInt64 = 0
        var b = b
        var bit = one
        while bit != 0 {
            if a & bit != 0 { product ^= b }
            b = b & 1 != 0 ? (b >> 1) ^ reflectedPolynomial : b >> 1
            bit >>= 1
        }
        return product
    }

    /// x^(8·bytes) mod P, by squaring: at most 2·64 multiplications.
    private func powerOfX(bytes: UInt64) -> UInt64 {
        var result = one
        var square = one >> 8  // x^8
        var n = bytes
        while n != 0 {
            if n & 1 != 0 { result = multiply(result, square) }
            square = multiply(square, square)
            n >>= 1
        }
        return result
    }
}

/// CRC-64/NVME table-driven, sixteen bytes per step (fewer dependent steps than eight):
/// ISA-L 2.30 (Debian 12) has no routine for this polynomial; 2.31 adds one.
private enum CRC64NVMETable {
    static let tables: [UInt64] = {
        let polynomial = CRCAlgorithm.crc64nvme.reflectedPolynomial
        var t = [UInt64](repeating: 0, count: 16 * 256)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for k in 1..<16 {
                let previous = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (previous >> 8) ^ t[Int(previous & 0xff)]
            }
        }
        return t
    }()

    static func update(_ crc: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var value = ~crc
        tables.withUnsafeBufferPointer { t in
            guard var pointer = bytes.baseAddress else { return }
            var n = bytes.count
            // Table k holds the effect of a byte followed by k zero bytes.
            func lookup(_ table: Int, _ word: UInt64, _ shift: UInt64) -> UInt64 {
                t[table &* 256 &+ Int(truncatingIfNeeded: (word >> shift) & 0xff)]
            }
            while n >= 16 {
                let low = value ^ UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self))
                let high = UInt64(littleEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                let first =
                    lookup(15, low, 0) ^ lookup(14, low, 8) ^ lookup(13, low, 16) ^ lookup(12, low, 24)
                    ^ lookup(11, low, 32) ^ lookup(10, low, 40) ^ lookup(9, low, 48) ^ lookup(8, low, 56)
                let second =
                    lookup(7, high, 0) ^ lookup(6, high, 8) ^ lookup(5, high, 16) ^ lookup(4, high, 24)
                    ^ lookup(3, high, 32) ^ lookup(2, high, 40) ^ lookup(1, high, 48) ^ lookup(0, high, 56)
                value = first ^ second
                pointer += 16
                n -= 16
            }
            while n > 0 {
                value = (value >> 8) ^ t[Int((value ^ UInt64(pointer.load(as: UInt8.self))) & 0xff)]
                pointer += 1
                n -= 1
            }
        }
        return ~value
    }
}
