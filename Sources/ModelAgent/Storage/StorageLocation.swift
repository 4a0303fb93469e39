/// A parsed `storageUri`.
enum StorageLocation: Sendable, Equatable, CustomStringConvertible {
    case http(url: String)
    case s3(bucket: String, key: String)
    case gcs(bucket: String, object: String)
    case local(path: String)

    static func parse(_ uri: String) throws(UnsupportedStorage) -> StorageLocation {
        if uri.isEmpty { throw UnsupportedStorage(uri: uri, reason: "there is no storageUri supplied") }
        // Control characters and NUL are never part of a usable URI or path (a NUL would cut
        // a path short in every system call).
        if uri.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw UnsupportedStorage(uri: uri, reason: "the URI holds control characters")
        }
        if uri.hasPrefix("/") { return .local(path: uri) }
        guard let schemeEnd = uri.firstRange(of: "://") else {
            throw UnsupportedStorage(uri: uri, reason: "there is no protocol specified for the storageUri")
        }
        let scheme = uri[..<schemeEnd.lowerBound].lowercased()
        let rest = String(uri[schemeEnd.upperBound...])
        switch scheme {
        case "http", "https":
            guard !rest.isEmpty else { throw UnsupportedStorage(uri: uri, reason: "the URL has no host") }
            guard !rest.contains(" ") else {
                throw UnsupportedStorage(uri: uri, reason: "the URL holds spaces; percent-encode them (%20)")
            }
            // A URL parser ends the authority at '?' or '#', so such characters in a password
            // would send it elsewhere (and show it in logs): they must be percent-encoded.
            let authority = rest[..<(rest.firstIndex(of: "/") ?? rest.endIndex)]
            if let at = authority.lastIndex(of: "@"), authority[..<at].contains(where: { $0 == "?" || $0 == "#" }) {
                throw UnsupportedStorage(
                    uri: uri, reason: "the URL's user-info holds '?' or '#'; percent-encode them (%3F, %23)")
            }
            if authority.filter({ $0 == "@" }).count > 1 {
                throw UnsupportedStorage(uri: uri, reason: "the URL's user-info holds '@'; percent-encode it (%40)")
            }
            let hostAndPort = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
            guard isHostAndPort(hostAndPort.prefix { $0 != "?" && $0 != "#" }) else {
                // Often a '/' in a password ("http://u:pa/ss@h/"), which ends the authority early.
                throw UnsupportedStorage(
                    uri: uri,
                    reason: "the URL's host[:port] is not valid (a port is 1-65535; a '/' in user-info is written %2F)")
            }
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
        case "pvc":
            // As KServe mounts it: pvc://<claim>/<path> is <path> on the claim, mounted at /mnt/pvc.
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard !parts[0].isEmpty else { throw UnsupportedStorage(uri: uri, reason: "the claim name is empty") }
            return .local(path: "/mnt/pvc" + (parts.count > 1 ? "/" + parts[1] : ""))
        default:
            throw UnsupportedStorage(
                uri: uri,
                reason:
                    "protocol \(scheme):// is not supported (supported: s3://, gs://, http://, https://, file://, pvc://, absolute paths)"
            )
        }
    }

    /// `host`, `host:port` or `[v6]:port`, with a numeric port.
    static func isHostAndPort(_ text: Substring) -> Bool {
        var host = text
        var port: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return false }
            host = text[...close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return false }
                port = after.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        // An empty port ("host:") means the default, as RFC 3986 allows.
        if let port, !port.isEmpty {
            guard port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(port),
                (1...65535).contains(number)
            else { return false }
        }
        // Internationalized names are left to libcurl (IDN); ASCII must be host characters.
        return !host.isEmpty
            && host.unicodeScalars.allSatisfy {
                !$0.isASCII || $0.properties.isAlphabetic || ("0"..."9").contains($0)
                    || "-._~%[]:".unicodeScalars.contains($0)
            }
    }

    var description: String {
        switch self {
        case .http(let url): return Redaction.uri(url)
        case .s3(let bucket, let key): return "s3://\(bucket)/\(key)"
        case .gcs(let bucket, let object): return "gs://\(bucket)/\(object)"
        case .local(let path): return path
        }
    }
}

struct UnsupportedStorage: Error, RetryClassifying, CustomStringConvertible {
    let uri: String
    let reason: String
    var isTransient: Bool { false }
    var description: String { "\(reason): \(Redaction.uri(uri))" }
}
