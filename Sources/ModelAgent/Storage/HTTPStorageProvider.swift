import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `http://` and `https://` artifacts: one file named after the URL's last path segment,
/// unpacked when it is a zip or tar(.gz) archive.
public struct HTTPStorageProvider: StorageProvider {
    let engine: TransferEngine
    let environment: [String: String]

    public init(engine: TransferEngine, environment: [String: String]) {
        self.engine = engine
        self.environment = environment
    }

    public func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .http(let url) = location, let parts = URLParts(url) else {
            throw UnsupportedStorage(uri: location.description, reason: "not an http(s) URL")
        }
        let fileName = try Self.fileName(of: parts, uri: url)
        let credentials = try HostHeaders.lookup(for: parts, in: environment)
        let download = try destination.scratchFile("download")
        let file = RemoteFile(displayName: Redaction.uri(url)) { range in
            var request = HTTPRequest(url: url, range: range)
            request.credentials = credentials
            return request
        }
        let result = try await engine.downloadReportingHeaders(file, to: download, logger: logger)
        if let format = ArchiveFormat.detect(fileName: fileName, contentType: result.headers["content-type"]) {
            logger.info("Extracting \(format) archive \(fileName)", metadata: ["bytes": "\(result.bytes)"])
            let report = try await BlockingExecutor.shared.run {
                let report = try ArchiveFormat.extract(format, archive: download, into: destination)
                try FileSystem.removeFile(download)
                return report
            }
            if report.files == 0 { throw ArchiveError("archive \(fileName) contains no files") }
            return report
        }
        try FileSystem.rename(download, to: try destination.path(for: fileName))
        return FetchReport(files: 1, bytes: result.bytes)
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
        let keys = [url.authority + "-headers", url.host + "-headers"]
        guard let key = keys.first(where: { environment[$0] != nil }), let raw = environment[key] else { return [] }
        guard let object = try? JSONDecoder().decode([String: String].self, from: Data(raw.utf8)) else {
            throw ConfigurationError("env \(key) must hold a JSON object of header names to string values")
        }
        return object.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
    }
}

/// The agent's environment or flags ask for something impossible.
public struct ConfigurationError: Error, RetryClassifying, CustomStringConvertible {
    public let description: String
    public var isTransient: Bool { false }
    public init(_ description: String) { self.description = description }
}
