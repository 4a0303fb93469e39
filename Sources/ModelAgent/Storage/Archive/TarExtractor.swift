/// Unpacks a tar stream: ustar, pax extended headers (long names, sizes over 8 GiB) and
/// GNU long names. Sizes are honoured exactly; nothing is truncated.
///
/// Every number in a header comes from outside: sizes are checked to be non-negative
/// and to leave room for their padding, pax records are bounds-checked, and each
/// entry's size is charged to the extraction budget before a byte is written.
final class TarExtractor {
    private let source: any ByteSource
    private var block = [UInt8](repeating: 0, count: 512)
    private var copyBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init(source: any ByteSource) {
        self.source = source
    }

    func extract(into destination: StagingDirectory, budget: ExtractionBudget) throws -> FetchReport {
        var report = FetchReport(files: 0, bytes: 0)
        var paxPath: String?
        var paxSize: Int64?
        var longName: String?
        var sawEntry = false
        var entries = 0
        while true {
            try budget.checkCancelled()
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
            entries += 1
            guard entries <= ExtractionBudget.maximumEntries else {
                throw ArchiveError("tar archive has more than \(ExtractionBudget.maximumEntries) entries")
            }
            let type = block[156]
            let isMetadata = [UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K")].contains(type)
            var size = try number(at: 124, length: 12)
            // Pax attributes and GNU long names describe the next real entry, never another
            // metadata header.
            if !isMetadata, let paxSize { size = paxSize }
            var name: String
            if !isMetadata, let override = paxPath ?? longName {
                name = override
            } else {
                name = string(at: 0, length: 100)
                let prefix = string(at: 345, length: 155)
                if block[257..<262].elementsEqual("ustar".utf8), !prefix.isEmpty { name = prefix + "/" + name }
            }
            let mode = (try? number(at: 100, length: 8)) ?? 0o644

            switch type {
            case UInt8(ascii: "x"):
                let pax = try Self.parsePax(try readData(size))
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
                try budget.charge(size, entry: name)
                let file = try destination.createFile(name)
                try copy(size, to: file, budget: budget)
                if mode & 0o111 != 0 { try? FileSystem.setExecutable(file.path) }
                report.files += 1
                report.bytes += size
            case UInt8(ascii: "5"):
                // A directory has no data; a size here would only make the reader inflate
                // (and discard) whatever it declares.
                guard size == 0 else {
                    throw ArchiveError("tar directory entry \(JSONText.quoted(name)) declares \(size) bytes of data")
                }
                if (try? RelativePath.normalize(name)) != nil { try destination.makeDirectory(name) }
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
    /// (gzip's CRC-32 and length) is reached and verified. Writers pad to whole records
    /// (10 KiB by default); more than a few MiB after the end is not padding.
    private func drain() throws {
        var trailing = 0
        try copyBuffer.withUnsafeMutableBytes { buffer in
            while true {
                let n = try source.read(into: buffer)
                if n == 0 { return }
                trailing += n
                guard trailing <= Self.maximumTrailingBytes else {
                    throw ArchiveError("tar archive has more than \(Self.maximumTrailingBytes >> 20) MiB after its end")
                }
            }
        }
    }

    static let maximumTrailingBytes = 4 << 20

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

    /// Octal digits, or base-256 when the high bit of the first byte is set (GNU's
    /// negative base-256 numbers are refused, not wrapped).
    private func number(at offset: Int, length: Int) throws -> Int64 {
        let field = block[offset..<offset + length]
        if let first = field.first, first & 0x80 != 0 {
            guard first & 0x40 == 0 else { throw ArchiveError("tar header holds a negative number") }
            var value = Int64(first & 0x3f)
            for b in field.dropFirst() {
                guard value <= (Int64.max >> 8) else { throw ArchiveError("tar number field overflows") }
                value = value << 8 | Int64(b)
            }
            return value
        }
        // At most 12 octal digits: below 2^36, no overflow possible.
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

    /// `size` rounded up to whole 512-byte blocks, or an error when that does not fit.
    static func paddedSize(_ size: Int64) throws -> Int64 {
        guard size >= 0 else { throw ArchiveError("tar entry has a negative size") }
        let (padded, overflow) = size.addingReportingOverflow((512 - size % 512) % 512)
        guard !overflow else { throw ArchiveError("tar entry size \(size) is out of range") }
        return padded
    }

    private func readData(_ size: Int64) throws -> [UInt8] {
        guard size >= 0 else { throw ArchiveError("tar metadata entry has a negative size") }
        guard size <= 1 << 20 else { throw ArchiveError("tar metadata entry is too large") }
        var data = [UInt8](repeating: 0, count: Int(size))
        try data.withUnsafeMutableBytes { try source.readExactly(into: $0, what: "tar metadata") }
        try skipPadding(size)
        return data
    }

    /// Checks `budget` for cancellation between 1 MiB chunks.
    private func copy(_ size: Int64, to file: OpenFile, budget: ExtractionBudget) throws {
        _ = try Self.paddedSize(size)
        var remaining = size
        var offset: Int64 = 0
        try copyBuffer.withUnsafeMutableBytes { buffer in
            while remaining > 0 {
                try budget.checkCancelled()
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

    private func skipPadding(_ size: Int64) throws {
        let padding = Int((512 - size % 512) % 512)
        if padding > 0 {
            try block.withUnsafeMutableBytes {
                try source.readExactly(
                    into: UnsafeMutableRawBufferPointer(rebasing: $0[..<padding]), what: "tar padding")
            }
        }
    }

    /// Records are "<length> <key>=<value>\n", the length counting the whole record.
    static func parsePax(_ data: [UInt8]) throws -> (path: String?, size: Int64?) {
        var path: String?
        var size: Int64?
        var start = 0
        while start < data.count {
            guard let space = data[start...].firstIndex(of: 0x20), space > start, space - start <= 8,
                let parsed = decimal(data[start..<space]), let length = Int(exactly: parsed),
                length >= space - start + 2, length <= data.count - start,
                data[start + length - 1] == 0x0a
            else {
                throw ArchiveError("tar pax header is malformed")
            }
            let record = data[(space + 1)..<(start + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[..<equals], as: UTF8.self)
                let value = record[(equals + 1)...]
                if key == "path" { path = String(decoding: value, as: UTF8.self) }
                if key == "size" {
                    guard let parsed = decimal(value) else { throw ArchiveError("tar pax size is not a valid size") }
                    size = parsed
                }
            }
            start += length
        }
        return (path, size)
    }

    /// Unsigned decimal digits only (no sign, at most 18 digits), so it fits Int64.
    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int64? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value: Int64 = 0
        for b in digits {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            value = value * 10 + Int64(b - 0x30)
        }
        return value
    }
}
