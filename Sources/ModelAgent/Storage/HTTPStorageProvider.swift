import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `http://` and `https://` artifacts: one file named after the URL's last path segment,
/// unpacked when it is a zip or tar(.gz) archive.
struct HTTPStorageProvider: StorageProvider {
    let engine: TransferEngine
    let environment: [String: String]
    let limits: DownloadLimits

    init(engine: TransferEngine, environment: [String: String], limits: DownloadLimits = DownloadLimits()) {
        self.engine = engine
        self.environment = environment
        self.limits = limits
    }

    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .http(let url) = location, let parts = URLParts(url) else {
            throw UnsupportedStorage(uri: location.description, reason: "not an http(s) URL")
        }
        let fileName = try Self.fileName(of: parts, uri: url)
        let credentials = try HostHeaders.lookup(for: parts, in: environment)
        let download = try destination.scratchFile("download")
        // The body's size is known only once it arrives: bound it by the flag and by what
        // the volume can take, so an endless body fails instead of filling the disk.
        let writable = try DiskSpace.writableBytes(at: destination.root)
        var file = RemoteFile(displayName: Redaction.uri(url)) { range in
            var request = HTTPRequest(url: url, range: range)
            request.credentials = credentials
            return request
        }
        file.maximumSize = min(limits.maxDownloadBytes, writable)
        let result: TransferEngine.FetchedFile
        do {
            result = try await engine.download(file, to: download, logger: logger)
        } catch let failure as DownloadFailed {
            guard case TransferError.bodyTooLarge(let limit)? = failure.underlying as? TransferError else {
                throw failure
            }
            if limit < limits.maxDownloadBytes {
                throw InsufficientDiskSpace(
                    path: destination.root, needed: limit + 1,
                    available: try FileSystem.availableBytes(destination.root),
                    what: "\(Redaction.uri(url)) (still growing at \(limit) bytes)")
            }
            throw DownloadTooLarge(uri: url, limit: limit)
        }
        let limits = self.limits
        if let format = ArchiveFormat.detect(fileName: fileName, contentType: result.headers["content-type"]) {
            logger.info("Extracting \(format) archive \(fileName)", metadata: ["bytes": "\(result.bytes)"])
            // Extraction runs on a blocking thread: a cancellation (SIGTERM, a newer spec)
            // reaches it through the flag, checked between entries and 1 MiB chunks.
            let cancel = CancelFlag()
            let report = try await withTaskCancellationHandler {
                try await BlockingExecutor.shared.run {
                    let report = try ArchiveFormat.extract(
                        format, archive: download, into: destination, limits: limits, cancel: cancel)
                    try FileSystem.removeFile(download)
                    return report
                }
            } onCancel: {
                cancel.set()
            }
            if report.files == 0 { throw ArchiveError("archive \(fileName) contains no files") }
            var checked = report
            checked.checks.add(result.check)
            return checked
        }
        try FileSystem.rename(download, to: try destination.path(for: fileName))
        var report = FetchReport(files: 1, bytes: result.bytes)
        report.checks.add(result.check)
        return report
    }

    static func fileName(of url: URLParts, uri: String) throws -> String {
        let segment = url.path.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
        guard let name = percentDecoded(segment), !name.isEmpty else {
            throw UnsupportedStorage(uri: uri, reason: "the URL does not end with a file name")
        }
        guard !name.contains("/"), (try? RelativePath.normalize(name)) == name else {
            throw UnsafePath(path: name, reason: "not usable as a file name")
        }
        return name
    }
}

/// Extra request headers for one host, from the env var `<host>-headers` holding a JSON
/// object, as KServe's storage code reads them. The values are credentials: they never
/// appear in logs or errors.
enum HostHeaders {
    static func lookup(for url: URLParts, in environment: [String: String]) throws -> [(name: String, value: String)] {
        let keys = [url.hostAndPort + "-headers", url.host + "-headers"]
        guard let key = keys.first(where: { environment[$0] != nil }), let raw = environment[key] else { return [] }
        guard let object = decode(raw) else {
            throw ConfigurationError("env \(key) must hold a JSON object of header names to string values")
        }
        return object.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
    }

    static func decode(_ raw: String) -> [String: String]? {
        try? JSONDecoder().decode([String: String].self, from: Data(raw.utf8))
    }
}

/// An http(s) body grew past `--max-download-size`.
struct DownloadTooLarge: Error, RetryClassifying, CustomStringConvertible {
    let uri: String
    let limit: Int64
    var isTransient: Bool { false }
    var description: String {
        "\(Redaction.uri(uri)) is larger than \(limit) bytes, the --max-download-size limit; raise it if the file is right"
    }
}

/// The agent's environment or flags ask for something impossible.
struct ConfigurationError: Error, RetryClassifying, CustomStringConvertible {
    let description: String
    var isTransient: Bool { false }
    init(_ description: String) { self.description = description }
}
