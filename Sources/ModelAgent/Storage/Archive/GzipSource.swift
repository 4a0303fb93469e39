/// Decompresses a gzip stream (RFC 1952), possibly of several members, verifying each
/// member's CRC-32 and length.
final class GzipSource: ByteSource {
    private let input: BufferedInput
    private var inflater: Inflater?
    private var crc = CRC32.ieee()
    private var memberLength: UInt32 = 0
    private var members = 0
    private var ended = false

    init(_ source: any ByteSource) {
        input = BufferedInput(source)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while !ended {
            if inflater == nil {
                guard try startMember() else {
                    ended = true
                    break
                }
            }
            let n = try inflater!.read(into: buffer)
            if n > 0 {
                crc.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
                memberLength &+= UInt32(truncatingIfNeeded: n)
                return n
            }
            try finishMember()
        }
        return 0
    }

    /// Reads a member header; false at a clean end of input after at least one member.
    private func startMember() throws -> Bool {
        guard let id1 = try input.nextByte() else {
            if members == 0 { throw ArchiveError("gzip stream is empty") }
            return false
        }
        let id2 = try byte()
        guard id1 == 0x1f && id2 == 0x8b else {
            if members > 0 && id1 == 0 { return false }  // zero padding after the last member
            throw ArchiveError("not a gzip stream")
        }
        guard try byte() == 8 else { throw ArchiveError("gzip stream uses an unknown compression method") }
        let flags = try byte()
        for _ in 0..<6 { _ = try byte() }  // mtime, xfl, os
        if flags & 0x04 != 0 {
            let length = Int(try byte()) | Int(try byte()) << 8
            for _ in 0..<length { _ = try byte() }
        }
        if flags & 0x08 != 0 { while try byte() != 0 {} }
        if flags & 0x10 != 0 { while try byte() != 0 {} }
        if flags & 0x02 != 0 { _ = try byte(); _ = try byte() }
        inflater = Inflater(input: input)
        crc = CRC32.ieee()
        memberLength = 0
        members += 1
        return true
    }

    private func finishMember() throws {
        inflater!.returnUnusedInput()
        inflater = nil
        var trailer = [UInt8]()
        for _ in 0..<8 { trailer.append(try byte()) }
        let expectedCRC =
            UInt32(trailer[0]) | UInt32(trailer[1]) << 8 | UInt32(trailer[2]) << 16 | UInt32(trailer[3]) << 24
        let expectedLength =
            UInt32(trailer[4]) | UInt32(trailer[5]) << 8 | UInt32(trailer[6]) << 16 | UInt32(trailer[7]) << 24
        guard expectedCRC == crc.value else { throw ArchiveError("gzip data is corrupt: CRC-32 mismatch") }
        guard expectedLength == memberLength else { throw ArchiveError("gzip data is corrupt: length mismatch") }
    }

    private func byte() throws -> UInt8 {
        guard let b = try input.nextByte() else { throw ArchiveError("gzip stream is truncated") }
        return b
    }
}
