/// One object of a bucket listing.
struct ListedObject: Sendable, Equatable {
    var key: String
    var size: Int64
    /// S3's ETag, sent as If-Match with each part.
    var etag: String?
    /// GCS's generation, pinned in each download request.
    var version: String?
    var checksum: Checksum?

    init(key: String, size: Int64, etag: String? = nil, version: String? = nil, checksum: Checksum? = nil) {
        self.key = key
        self.size = size
        self.etag = etag
        self.version = version
        self.checksum = checksum
    }
}

/// Where the objects under a storage prefix land inside the model's directory, with
/// the semantics of KServe's storage-initializer plus exact prefix matching:
/// `models/m1` takes the object `models/m1` itself (as `<name>/m1`) or everything
/// under `models/m1/`, never `models/m10/…`; folder markers (keys ending in `/`) are
/// skipped; a key that would climb out of the directory refuses the whole model.
enum ObjectLayout {
    static func plan(prefix: String, objects: [ListedObject]) throws -> [(object: ListedObject, path: String)] {
        var result: [(ListedObject, String)] = []
        var seen: [String: String] = [:]
        for object in objects where !object.key.hasSuffix("/") {
            let relative: Substring
            if prefix.isEmpty || prefix.hasSuffix("/") {
                guard object.key.hasPrefix(prefix) else { continue }
                relative = object.key.dropFirst(prefix.count)
            } else if object.key == prefix {
                relative = Substring(FileSystem.lastComponent(prefix))
            } else if object.key.hasPrefix(prefix + "/") {
                relative = object.key.dropFirst(prefix.count + 1)
            } else {
                continue
            }
            // A leading "/" in a key is an empty path component, not an absolute path.
            let path = try RelativePath.normalize(String(relative.drop { $0 == "/" }))
            if let other = seen[path] {
                throw UnsafePath(path: object.key, reason: "it lands on the same file (\(path)) as key \(other)")
            }
            seen[path] = object.key
            result.append((object, path))
        }
        return result
    }
}

/// A listing matched nothing: the URI is wrong or the objects are not there yet.
struct NoObjectsFound: Error, RetryClassifying, CustomStringConvertible {
    let uri: String
    var isTransient: Bool { false }
    var description: String { "no objects found at \(uri)" }
}
