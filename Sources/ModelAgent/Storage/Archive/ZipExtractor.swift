/// Unpacks a zip file from its central directory (zip64 included). Entries are stored
/// or deflated (zlib); each is checked against its CRC-32 and size.
///
/// Offsets and sizes come from the file: each is converted with `Int64(exactly:)`, every
/// sum is checked, and the declared sizes of all entries are charged to the extraction
/// budget before the first byte is written, so a zip bomb is refused up front.
final class ZipExtractor {
    private let file: OpenFile
    private let fileSize: Int64

    /// The central directory is read into memory; real ones are a few KiB per thousand entries.
    static let maximumDirectorySize: Int64 = 64 << 20

    private struct Entry {
        var name: String
        var method: UInt16
        var flags: UInt16
        var crc: UInt32
        var compressedSize: Int64
        var size: Int64
        var localHeaderOffset: Int64
        var isSymlink: Bool
    }

    init(file: OpenFile) throws {
        self.file = file
        fileSize = try file.size()
    }

    func extract(into destination: StagingDirectory, budget: ExtractionBudget) throws -> FetchReport {
        let entries = try centralDirectory()
        guard entries.count <= ExtractionBudget.maximumEntries else {
            throw ArchiveError("zip archive has more than \(ExtractionBudget.maximumEntries) entries")
        }
        for entry in entries where !entry.name.hasSuffix("/") {
            try budget.charge(entry.size, entry: entry.name)
        }
        var report = FetchReport(files: 0, bytes: 0)
        for entry in entries {
            try budget.checkCancelled()
            if entry.name.hasSuffix("/") {
                if (try? RelativePath.normalize(entry.name)) != nil { try destination.makeDirectory(entry.name) }
                continue
            }
            if entry.isSymlink {
                throw ArchiveError(
                    "zip entry \(JSONText.quoted(entry.name)) is a link; links are not supported in model archives")
            }
            if entry.flags & 1 != 0 { throw ArchiveError("zip entry \(JSONText.quoted(entry.name)) is encrypted") }
            let out = try destination.createFile(entry.name)
            try extract(entry, to: out, budget: budget)
            report.files += 1
            report.bytes += entry.size
        }
        return report
    }

    private func extract(_ entry: Entry, to out: OpenFile, budget: ExtractionBudget) throws {
        let local = try bytes(at: entry.localHeaderOffset, count: 30)
        guard le32(local, 0) == 0x0403_4b50 else {
            throw ArchiveError("zip entry \(JSONText.quoted(entry.name)) has no local header")
        }
        let headerLength = Int64(30 + Int(le16(local, 26)) + Int(le16(local, 28)))
        guard let dataOffset = sum(entry.localHeaderOffset, headerLength),
            let dataEnd = sum(dataOffset, entry.compressedSize), dataEnd <= fileSize
        else { throw ArchiveError("zip archive is truncated") }
        let raw = FileSpanSource(file: file, offset: dataOffset, length: entry.compressedSize)
        let source: any ByteSource
        switch entry.method {
        case 0: source = raw
        case 8: source = try ZlibInflater(raw, wrapper: .raw)
        default:
            throw ArchiveError(
                "zip entry \(JSONText.quoted(entry.name)) uses compression method \(entry.method); only stored and deflate are supported"
            )
        }
        var crc = CRC32.ieee()
        var written: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        try buffer.withUnsafeMutableBytes { raw in
            while true {
                try budget.checkCancelled()
                // Never read far past the declared size: a lying entry stops here, not at the disk's end.
                let left = entry.size - written
                let room = left >= Int64(raw.count) ? raw.count : Int(left) + 1
                let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<room]))
                if n == 0 { break }
                let chunk = UnsafeRawBufferPointer(rebasing: raw[..<n])
                written += Int64(n)
                if written > entry.size { break }
                crc.update(chunk)
                try out.write(chunk, at: written - Int64(n))
            }
        }
        guard written == entry.size else {
            throw ArchiveError(
                "zip entry \(JSONText.quoted(entry.name)) holds more or fewer bytes than the \(entry.size) it declares")
        }
        guard crc.value == entry.crc else {
            throw ArchiveError("zip entry \(JSONText.quoted(entry.name)) is corrupt: CRC-32 mismatch")
        }
    }

    private func centralDirectory() throws -> [Entry] {
        let tailLength = Int(min(fileSize, 65_557))
        let tail = try bytes(at: fileSize - Int64(tailLength), count: tailLength)
        guard tailLength >= 22,
            let eocd = stride(from: tailLength - 22, through: 0, by: -1).first(where: { le32(tail, $0) == 0x0605_4b50 })
        else {
            throw ArchiveError("not a zip archive (no end of central directory)")
        }
        var count = Int64(le16(tail, eocd + 10))
        var size = Int64(le32(tail, eocd + 12))
        var offset = Int64(le32(tail, eocd + 16))
        if eocd >= 20, le32(tail, eocd - 20) == 0x0706_4b50 {
            let recordOffset = try int64(le64(tail, eocd - 20 + 8), "zip64 end record offset")
            let record = try bytes(at: recordOffset, count: 56)
            guard le32(record, 0) == 0x0606_4b50 else { throw ArchiveError("zip64 end record is missing") }
            count = try int64(le64(record, 32), "zip64 entry count")
            size = try int64(le64(record, 40), "zip64 central directory size")
            offset = try int64(le64(record, 48), "zip64 central directory offset")
        }
        guard let end = sum(offset, size), end <= fileSize, count <= size / 46 + 1 else {
            throw ArchiveError("zip central directory is out of bounds")
        }
        guard size <= Self.maximumDirectorySize else {
            throw ArchiveError("zip central directory is larger than \(Self.maximumDirectorySize >> 20) MiB")
        }
        let directory = try bytes(at: offset, count: Int(size))
        var entries: [Entry] = []
        var p = 0
        for _ in 0..<count {
            guard p + 46 <= directory.count, le32(directory, p) == 0x0201_4b50 else {
                throw ArchiveError("zip central directory is corrupt")
            }
            let nameLength = Int(le16(directory, p + 28))
            let extraLength = Int(le16(directory, p + 30))
            let commentLength = Int(le16(directory, p + 32))
            guard p + 46 + nameLength + extraLength + commentLength <= directory.count else {
                throw ArchiveError("zip central directory is corrupt")
            }
            var entry = Entry(
                name: String(decoding: directory[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self),
                method: le16(directory, p + 10), flags: le16(directory, p + 8), crc: le32(directory, p + 16),
                compressedSize: Int64(le32(directory, p + 20)), size: Int64(le32(directory, p + 24)),
                localHeaderOffset: Int64(le32(directory, p + 42)),
                isSymlink: (le32(directory, p + 38) >> 16) & 0o170000 == 0o120000)
            var extra = p + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = le16(directory, extra)
                let length = Int(le16(directory, extra + 2))
                if id == 0x0001 {
                    // Only the fields whose 32-bit value is saturated are present, in this order.
                    var field = extra + 4
                    let fieldEnd = min(extra + 4 + length, extraEnd)
                    func next(_ what: String) throws -> Int64 {
                        guard field + 8 <= fieldEnd else { throw ArchiveError("zip64 extra field is too short") }
                        defer { field += 8 }
                        return try int64(le64(directory, field), what)
                    }
                    if entry.size == 0xffff_ffff { entry.size = try next("zip64 entry size") }
                    if entry.compressedSize == 0xffff_ffff {
                        entry.compressedSize = try next("zip64 compressed size")
                    }
                    if entry.localHeaderOffset == 0xffff_ffff {
                        entry.localHeaderOffset = try next("zip64 local header offset")
                    }
                }
                extra += 4 + length
            }
            entries.append(entry)
            p += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    private func int64(_ value: UInt64, _ what: String) throws -> Int64 {
        guard let result = Int64(exactly: value) else { throw ArchiveError("\(what) is out of range") }
        return result
    }

    private func sum(_ a: Int64, _ b: Int64) -> Int64? {
        let (result, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : result
    }

    private func bytes(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, let end = sum(offset, Int64(count)), end <= fileSize else {
            throw ArchiveError("zip archive is truncated")
        }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        try out.withUnsafeMutableBytes { raw in
            while done < count {
                let n = try file.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: raw[done...]), at: offset + Int64(done))
                if n == 0 { throw ArchiveError("zip archive is truncated") }
                done += n
            }
        }
        return out
    }
}

private func le16(_ b: [UInt8], _ i: Int) -> UInt16 {
    i >= 0 && i + 2 <= b.count ? UInt16(b[i]) | UInt16(b[i + 1]) << 8 : 0
}

private func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(le16(b, i)) | UInt32(le16(b, i + 2)) << 16
}

private func le64(_ b: [UInt8], _ i: Int) -> UInt64 {
    UInt64(le32(b, i)) | UInt64(le32(b, i + 4)) << 32
}
