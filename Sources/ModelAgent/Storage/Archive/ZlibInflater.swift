import CZlib

/// Decompresses DEFLATE data with zlib: raw streams (zip entries) or gzip members, where
/// zlib itself verifies each member's CRC-32 and length. Concatenated gzip members are
/// read one after the other; zero padding after the last one is accepted, anything else
/// is refused.
final class ZlibInflater: ByteSource {
    enum Wrapper {
        case raw, gzip
    }

    private let source: any ByteSource
    private let wrapper: Wrapper
    private let stream: UnsafeMutablePointer<z_stream>
    private let input: UnsafeMutableRawBufferPointer
    private var inputEnded = false
    private var finished = false
    /// Zero bytes followed a member: only more zeros may follow, whatever the buffering.
    private var padding = false

    init(_ source: any ByteSource, wrapper: Wrapper, bufferSize: Int = 256 << 10) throws {
        // zlib is set up before any stored property, so a failure here never reaches deinit.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15: the largest window; +16 asks zlib to expect (only) a gzip wrapper; negative: raw.
        let rc = czlib_inflate_init(stream, wrapper == .gzip ? 15 + 16 : -15)
        guard rc == Z_OK else {
            stream.deallocate()
            throw ArchiveError("zlib could not start inflating (error \(rc))")
        }
        self.stream = stream
        self.source = source
        self.wrapper = wrapper
        input = .allocate(byteCount: max(1, bufferSize), alignment: 16)
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
        input.deallocate()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard !finished, let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let capacity = min(buffer.count, Int(UInt32.max))
        stream.pointee.next_out = base.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = UInt32(capacity)
        while true {
            if stream.pointee.avail_in == 0 && !inputEnded { try refill() }
            let rc = inflate(stream, Z_NO_FLUSH)
            let produced = capacity - Int(stream.pointee.avail_out)
            switch rc {
            case Z_STREAM_END:
                if try !startNextMember() { finished = true }
                if produced > 0 || finished { return produced }
            case Z_OK, Z_BUF_ERROR:
                if produced > 0 { return produced }
                if stream.pointee.avail_in == 0 && inputEnded {
                    throw ArchiveError(wrapper == .gzip ? "gzip stream is truncated" : "deflate data is truncated")
                }
            case Z_NEED_DICT:
                throw ArchiveError("deflate data needs a preset dictionary, which archives never use")
            case Z_MEM_ERROR:
                throw ArchiveError("zlib ran out of memory")
            default:
                let detail = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw ArchiveError(
                    (wrapper == .gzip ? "gzip data is corrupt: " : "deflate data is corrupt: ") + detail)
            }
        }
    }

    private func refill() throws {
        let n = try source.read(into: input)
        if n == 0 {
            inputEnded = true
            return
        }
        stream.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_in = UInt32(n)
    }

    /// After a member ends: true if another gzip member follows (zlib is reset for it).
    /// Zeros after a member are padding (tar writers pad to whole records, gzip tools
    /// accept them); once padding starts, only zeros may follow.
    private func startNextMember() throws -> Bool {
        guard wrapper == .gzip else { return false }
        while true {
            if stream.pointee.avail_in == 0 {
                if inputEnded { return false }
                try refill()
                continue
            }
            let next = stream.pointee.next_in!
            if !padding && next[0] == 0x1f {
                guard inflateReset(stream) == Z_OK else { throw ArchiveError("zlib could not reset") }
                return true
            }
            // Skip the zeros at hand in one step; what follows them is examined next round.
            let available = Int(stream.pointee.avail_in)
            let zeros = UnsafeBufferPointer(start: next, count: available).prefix { $0 == 0 }.count
            guard zeros > 0 else {
                throw ArchiveError("gzip stream has trailing data that is not a gzip member")
            }
            padding = true
            stream.pointee.next_in = next + zeros
            stream.pointee.avail_in -= UInt32(zeros)
        }
    }
}
