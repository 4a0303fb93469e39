/// Validation for paths that come from outside (object keys, archive entries): they
/// must stay inside the directory they are joined to.
enum RelativePath {
    /// Returns the path with empty and "." components removed, or throws if it is
    /// absolute, climbs with "..", holds a NUL byte or ends up empty.
    static func normalize(_ raw: String) throws(UnsafePath) -> String {
        if raw.hasPrefix("/") { throw UnsafePath(path: raw, reason: "absolute paths are not allowed") }
        if raw.utf8.contains(0) { throw UnsafePath(path: raw, reason: "contains a NUL byte") }
        var parts: [Substring] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw UnsafePath(path: raw, reason: "'..' components are not allowed") }
            if part.utf8.count > 255 { throw UnsafePath(path: raw, reason: "a component is longer than 255 bytes") }
            parts.append(part)
        }
        if parts.isEmpty { throw UnsafePath(path: raw, reason: "the path is empty") }
        return parts.joined(separator: "/")
    }
}

struct UnsafePath: Error, RetryClassifying, CustomStringConvertible {
    let path: String
    let reason: String
    var isTransient: Bool { false }
    var description: String {
        let shown = path.count > 256 ? String(path.prefix(256)) + "…" : path
        return "refusing path \(JSONText.quoted(shown)): \(reason)"
    }
}
