/// Unpacks a tar stream: ustar, pax extended headers (long names, sizes over 8 GiB) and
/// GNU long names. Sizes are honoured exactly; nothing is truncated.
final class TarExtractor {
    private let source: any ByteSource
    private var block = [UInt8](repeating: 0, count: 512)
    private var copyBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init(source: any ByteSource) {
        self.source = source
    }

    func extract(into destination: StagingDirectory) throws -> FetchReport {
        var report = FetchReport(files: 0, bytes: 0)
        var paxPath: String?
        var paxSize: Int64?
        var longName: String?
        var sawEntry = false
        while true {
            guard try readBlock() else {
                if sawEntry { return report }
                throw ArchiveError("tar archive is empty or truncated")
            }
            if block.allSatisfy({ $0 == 0 }) {
                try drain()
                return report
            }
            try verifyChecksum()
            sawEntry = true
            let type = block[156]
            var size = try number(at: 124, length: 12)
            if let paxSize { size = paxSize }
            var name: String
            if let override = paxPath ?? longName {
                name = override
            } else {
                name = string(at: 0, length: 100)
                let prefix = string(at: 345, length: 155)
                if block[257..<262].elementsEqual("ustar".utf8), !prefix.isEmpty { name = prefix + "/" + name }
            }
            let mode = (try? number(at: 100, length: 8)) ?? 0o644

            switch type {
            case UInt8(ascii: "x"):
                let records = try readData(size)
                let pax = Self.parsePax(records)
                paxPath = pax.path
                paxSize = pax.size
                continue
            case UInt8(ascii: "g"):
                _ = try readData(size)
                continue
            case UInt8(ascii: "L"):
                longName = String(decoding: try readData(size).prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "K"):
                _ = try readData(size)
                continue
            default:
                break
            }
            paxPath = nil
            paxSize = nil
            longName = nil

            switch type {
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                let file = try destination.createFile(name)
                try copy(size, to: file)
                if mode & 0o111 != 0 { try? FileSystem.setExecutable(file.path) }
                report.files += 1
                report.bytes += size
            case UInt8(ascii: "5"):
                if (try? RelativePath.normalize(name)) != nil { try destination.makeDirectory(name) }
                try skip(size)
            case UInt8(ascii: "1"), UInt8(ascii: "2"):
                throw ArchiveError(
                    "tar entry \(JSONText.quoted(name)) is a link; links are not supported in model archives")
            default:
                throw ArchiveError(
                    "tar entry \(JSONText.quoted(name)) has unsupported type '\(Character(Unicode.Scalar(type)))'")
            }
        }
    }

    /// Reads what follows the end-of-archive blocks, so a compressed stream's trailer
    /// (gzip's CRC-32 and length) is reached and verified.
    private func drain() throws {
        try copyBuffer.withUnsafeMutableBytes { buffer in
            while try source.read(into: buffer) > 0 {}
        }
    }

    private func readBlock() throws -> Bool {
        var done = 0
        try block.withUnsafeMutableBytes { raw in
            while done < 512 {
                let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[done...]))
                if n == 0 { break }
                done += n
            }
        }
        if done == 0 { return false }
        if done < 512 { throw ArchiveError("tar archive is truncated") }
        return true
    }

    private func verifyChecksum() throws {
        let stored = try number(at: 148, length: 8)
        var sum: Int64 = 0
        for (i, b) in block.enumerated() { sum += (148..<156).contains(i) ? 32 : Int64(b) }
        guard sum == stored else { throw ArchiveError("tar header checksum mismatch; the archive is corrupt") }
    }

    private func string(at offset: Int, length: Int) -> String {
        String(decoding: block[offset..<offset + length].prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Octal digits, or base-256 when the high bit of the first byte is set.
    private func number(at offset: Int, length: Int) throws -> Int64 {
        let field = block[offset..<offset + length]
        if let first = field.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x7f)
            for b in field.dropFirst() {
                guard value < (Int64.max >> 8) else { throw ArchiveError("tar number field overflows") }
                value = value << 8 | Int64(b)
            }
            return value
        }
        var value: Int64 = 0
        var seen = false
        for b in field {
            if b == 0 || b == 0x20 {
                if seen { break } else { continue }
            }
            guard b >= 0x30 && b <= 0x37 else { throw ArchiveError("tar header has a malformed number field") }
            seen = true
            value = value * 8 + Int64(b - 0x30)
        }
        return value
    }

    private func readData(_ size: Int64) throws -> [UInt8] {
        guard size <= 1 << 20 else { throw ArchiveError("tar metadata entry is too large") }
        var data = [UInt8](repeating: 0, count: Int(size))
        try data.withUnsafeMutableBytes { try source.readExactly(into: $0, what: "tar metadata") }
        try skipPadding(size)
        return data
    }

    private func copy(_ size: Int64, to file: OpenFile) throws {
        var remaining = size
        var offset: Int64 = 0
        try copyBuffer.withUnsafeMutableBytes { buffer in
            while remaining > 0 {
                let want = Int(min(Int64(buffer.count), remaining))
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<want])
                try source.readExactly(into: chunk, what: "tar entry data")
                try file.write(UnsafeRawBufferPointer(chunk), at: offset)
                offset += Int64(want)
                remaining -= Int64(want)
            }
        }
        try skipPadding(size)
    }

    private func skip(_ size: Int64) throws {
        var remaining = size + (512 - size % 512) % 512
        try copyBuffer.withUnsafeMutableBytes { buffer in
            while remaining > 0 {
                let want = Int(min(Int64(buffer.count), remaining))
                try source.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), what: "tar data")
                remaining -= Int64(want)
            }
        }
    }

    private func skipPadding(_ size: Int64) throws {
        let padding = Int((512 - size % 512) % 512)
        if padding > 0 {
            try block.withUnsafeMutableBytes {
                try source.readExactly(
                    into: UnsafeMutableRawBufferPointer(rebasing: $0[..<padding]), what: "tar padding")
            }
        }
    }

    /// Records are "<length> <key>=<value>\n".
    static func parsePax(_ data: [UInt8]) -> (path: String?, size: Int64?) {
        var path: String?
        var size: Int64?
        var rest = data[...]
        while let space = rest.firstIndex(of: 0x20), let length = Int(String(decoding: rest[..<space], as: UTF8.self)),
            length > 0, rest.startIndex + length <= rest.endIndex
        {
            let record = rest[rest.index(after: space)..<(rest.startIndex + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[..<equals], as: UTF8.self)
                let value = String(decoding: record[record.index(after: equals)...], as: UTF8.self)
                if key == "path" { path = value }
                if key == "size" { size = Int64(value) }
            }
            rest = rest[(rest.startIndex + length)...]
        }
        return (path, size)
    }
}
