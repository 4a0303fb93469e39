/// A parsed `storageUri`.
public enum StorageLocation: Sendable, Equatable, CustomStringConvertible {
    case http(url: String)
    case s3(bucket: String, key: String)
    case gcs(bucket: String, object: String)
    case local(path: String)

    public static func parse(_ uri: String) throws(UnsupportedStorage) -> StorageLocation {
        if uri.isEmpty { throw UnsupportedStorage(uri: uri, reason: "there is no storageUri supplied") }
        if uri.hasPrefix("/") { return .local(path: uri) }
        guard let schemeEnd = uri.firstRange(of: "://") else {
            throw UnsupportedStorage(uri: uri, reason: "there is no protocol specified for the storageUri")
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        let rest = String(uri[schemeEnd.upperBound...])
        switch scheme {
        case "http", "https":
            guard !rest.isEmpty else { throw UnsupportedStorage(uri: uri, reason: "the URL has no host") }
            return .http(url: uri)
        case "s3", "gs":
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let bucket = String(parts[0])
            guard !bucket.isEmpty else { throw UnsupportedStorage(uri: uri, reason: "the bucket name is empty") }
            let key = parts.count > 1 ? String(parts[1]) : ""
            return scheme == "s3" ? .s3(bucket: bucket, key: key) : .gcs(bucket: bucket, object: key)
        case "file":
            guard rest.hasPrefix("/") else {
                throw UnsupportedStorage(uri: uri, reason: "file:// URIs must hold an absolute path (file:///path)")
            }
            return .local(path: rest)
        default:
            throw UnsupportedStorage(
                uri: uri,
                reason:
                    "protocol \(scheme):// is not supported (supported: s3://, gs://, http://, https://, file://, absolute paths)"
            )
        }
    }

    public var description: String {
        switch self {
        case .http(let url): return Redaction.uri(url)
        case .s3(let bucket, let key): return "s3://\(bucket)/\(key)"
        case .gcs(let bucket, let object): return "gs://\(bucket)/\(object)"
        case .local(let path): return path
        }
    }
}

public struct UnsupportedStorage: Error, RetryClassifying, CustomStringConvertible {
    public let uri: String
    public let reason: String
    public var isTransient: Bool { false }
    public var description: String { "\(reason): \(Redaction.uri(uri))" }
}
