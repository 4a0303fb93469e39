/// The pieces of an http(s) URL the agent needs, without Foundation's URL.
struct URLParts: Sendable, Equatable {
    var scheme: String
    /// host[:port], as written.
    var authority: String
    /// Path and query, starting with "/".
    var pathAndQuery: String

    init?(_ url: String) {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        scheme = url[..<schemeEnd.lowerBound].lowercased()
        let rest = url[schemeEnd.upperBound...]
        let slash = rest.firstIndex(where: { c in c == "/" || c == "?" || c == "#" }) ?? rest.endIndex
        authority = String(rest[..<slash])
        var tail = String(rest[slash...])
        if let hash = tail.firstIndex(of: "#") { tail = String(tail[..<hash]) }
        pathAndQuery = tail.hasPrefix("/") ? tail : "/" + tail
        if authority.isEmpty { return nil }
    }

    /// host[:port] without user-info, as written.
    var hostAndPort: String {
        guard let at = authority.lastIndex(of: "@") else { return authority }
        return String(authority[authority.index(after: at)...])
    }

    /// The host without port or user-info, lower-cased; IPv6 brackets kept.
    var host: String {
        var a = authority
        if let at = a.lastIndex(of: "@") { a = String(a[a.index(after: at)...]) }
        if a.hasPrefix("["), let close = a.firstIndex(of: "]") { return String(a[...close]).lowercased() }
        if let colon = a.lastIndex(of: ":") { a = String(a[..<colon]) }
        return a.lowercased()
    }

    /// The port, explicit or the scheme's default.
    var port: Int? {
        var a = authority
        if let at = a.lastIndex(of: "@") { a = String(a[a.index(after: at)...]) }
        if a.hasPrefix("["), let close = a.firstIndex(of: "]") { a = String(a[a.index(after: close)...]) }
        if let colon = a.lastIndex(of: ":"), let explicit = Int(a[a.index(after: colon)...]) { return explicit }
        switch scheme {
        case "http": return 80
        case "https": return 443
        default: return nil
        }
    }

    /// Scheme, host and port: what a browser calls the origin.
    var origin: String { "\(scheme)://\(host):\(port.map(String.init) ?? "")" }

    var path: String {
        String(pathAndQuery[..<(pathAndQuery.firstIndex(of: "?") ?? pathAndQuery.endIndex)])
    }

    var url: String { "\(scheme)://\(authority)\(pathAndQuery)" }

    /// Resolves a Location header against this URL.
    func resolve(_ location: String) -> String {
        if location.contains("://") { return location }
        if location.hasPrefix("//") { return scheme + ":" + location }
        if location.hasPrefix("/") { return "\(scheme)://\(authority)\(location)" }
        let directory = path[..<(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.endIndex)]
        return "\(scheme)://\(authority)\(directory)\(location)"
    }
}

/// Percent-decoding of a URL path segment.
func percentDecoded(_ text: Substring) -> String? {
    var out: [UInt8] = []
    var bytes = text.utf8[...]
    while let b = bytes.first {
        bytes = bytes.dropFirst()
        if b == UInt8(ascii: "%") {
            guard bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else {
                return nil
            }
            out.append(v)
            bytes = bytes.dropFirst(2)
        } else {
            out.append(b)
        }
    }
    return String(validating: out, as: UTF8.self)
}
