/// The archive formats the HTTP provider unpacks.
enum ArchiveFormat: Sendable, Equatable {
    case zip, tar, tarGzip

    /// By file name first (what the user wrote), then by the response's Content-Type
    /// (what KServe's agent goes by). Nil means "a plain file".
    static func detect(fileName: String, contentType: String?) -> ArchiveFormat? {
        let name = fileName.lowercased()
        if name.hasSuffix(".zip") { return .zip }
        if name.hasSuffix(".tar") { return .tar }
        if name.hasSuffix(".tar.gz") || name.hasSuffix(".tgz") { return .tarGzip }
        guard let type = contentType?.lowercased() else { return nil }
        if type.contains("application/zip") || type.contains("application/x-zip") { return .zip }
        if type.contains("application/x-tar") { return .tar }
        if type.contains("application/gzip") || type.contains("application/x-gzip")
            || type.contains("application/x-gtar")
            || type.contains("application/x-tgz")
        {
            return .tarGzip
        }
        return nil
    }

    /// Tar and gzipped tar are told apart by the gzip magic number, not by headers:
    /// servers label a .tar.gz as `application/x-tar` with `Content-Encoding: gzip`.
    static func sniff(_ format: ArchiveFormat, _ file: OpenFile) -> ArchiveFormat {
        guard format != .zip else { return .zip }
        var magic = [UInt8](repeating: 0, count: 2)
        let count = (try? magic.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }) ?? 0
        return count == 2 && magic == [0x1f, 0x8b] ? .tarGzip : .tar
    }

    /// Unpacks the archive at `path` into `destination`, refusing entries that would land
    /// outside it, links and devices. Entry sizes are not capped one by one; together they
    /// must fit the extraction budget (free disk, `--max-archive-ratio`, `--max-download-size`).
    static func extract(
        _ format: ArchiveFormat, archive path: String, into destination: StagingDirectory,
        limits: DownloadLimits = DownloadLimits(), cancel: CancelFlag? = nil
    ) throws -> FetchReport {
        let file = try OpenFile(reading: path)
        let budget = try ExtractionBudget.forArchive(size: try file.size(), at: destination.root, limits: limits)
        budget.cancel = cancel
        switch sniff(format, file) {
        case .zip:
            return try ZipExtractor(file: file).extract(into: destination, budget: budget)
        case .tar:
            return try TarExtractor(source: FileSpanSource(file: file)).extract(into: destination, budget: budget)
        case .tarGzip:
            return try TarExtractor(source: ZlibInflater(FileSpanSource(file: file), wrapper: .gzip))
                .extract(into: destination, budget: budget)
        }
    }
}
