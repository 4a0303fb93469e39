/// How many bytes one archive may write, decided before extraction starts: what the
/// staging filesystem can take (free space less headroom), `--max-archive-ratio` times
/// the archive's own size, and `--max-download-size`. Entries are charged as they are
/// declared (a zip's central directory up front, tar headers as they come), before any
/// of their bytes are written.
final class ExtractionBudget {
    enum Bound: Sendable, Equatable {
        case disk(available: Int64)
        case ratio(Int64)
        case maximum
    }

    let limit: Int64
    let bound: Bound
    private(set) var used: Int64 = 0
    /// Set when the download is cancelled (the model changed, SIGTERM): extraction stops at
    /// the next entry or chunk instead of writing out a large archive first.
    var cancel: CancelFlag?

    /// Entries one archive may hold: empty files cost no bytes, but each costs an inode.
    static let maximumEntries = 200_000

    init(limit: Int64, bound: Bound) {
        self.limit = max(0, limit)
        self.bound = bound
    }

    /// The budget for an archive of `archiveSize` bytes extracted under `directory`.
    static func forArchive(size archiveSize: Int64, at directory: String, limits: DownloadLimits) throws
        -> ExtractionBudget
    {
        let available = try FileSystem.availableBytes(directory)
        let disk = try DiskSpace.writableBytes(at: directory)
        let (product, overflow) = max(archiveSize, 1).multipliedReportingOverflow(by: Int64(limits.maxArchiveRatio))
        let ratio = overflow ? Int64.max : product
        let candidates: [(Int64, Bound)] = [
            (disk, .disk(available: available)), (ratio, .ratio(Int64(limits.maxArchiveRatio))),
            (limits.maxDownloadBytes, .maximum),
        ]
        let tightest = candidates.min { $0.0 < $1.0 }!
        return ExtractionBudget(limit: tightest.0, bound: tightest.1)
    }

    func checkCancelled() throws {
        if cancel?.isSet == true { throw CancellationError() }
    }

    func charge(_ bytes: Int64, entry: String) throws {
        try checkCancelled()
        guard bytes >= 0 else { throw ArchiveError("archive entry \(JSONText.quoted(entry)) has a negative size") }
        let (total, overflow) = used.addingReportingOverflow(bytes)
        guard !overflow, total <= limit else {
            switch bound {
            case .disk(let available):
                throw InsufficientDiskSpace(
                    path: "the staging directory", needed: overflow ? Int64.max : total, available: available,
                    what: "the archive's content (at entry \(JSONText.quoted(entry)))")
            case .ratio(let ratio):
                throw ArchiveError(
                    "archive expands to more than \(ratio)× its own size (at entry \(JSONText.quoted(entry))); "
                        + "refusing it as a possible decompression bomb (--max-archive-ratio)")
            case .maximum:
                throw ArchiveError(
                    "archive expands to more than \(limit) bytes (at entry \(JSONText.quoted(entry))), "
                        + "the --max-download-size limit")
            }
        }
        used = total
    }
}
