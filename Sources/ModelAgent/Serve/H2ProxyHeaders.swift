import NIOHPACK

/// `ProxyHeaders` for HTTP/2 streams: pseudo-headers pass unchanged (the request goes to
/// the server as the client framed it), connection-specific headers (RFC 9113 §8.2.2)
/// are dropped, and the X-Forwarded-* headers are added as on HTTP/1.1.
enum H2ProxyHeaders {
    private static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    ]

    private static func keep(_ name: String, _ value: String) -> Bool {
        let lower = name.lowercased()
        if lower == "te" { return value.lowercased() == "trailers" }  // the one TE HTTP/2 allows; gRPC sends it
        return !connectionSpecific.contains(lower) && !lower.hasPrefix("proxy-")
    }

    /// Why a stream's request is refused (400), as over HTTP/1 (`HTTP1Parser`): its target
    /// must be a path (or `*` for OPTIONS), never a URL naming another host (RFC 9113
    /// §8.3.1), and the host it names, in `:authority` or `host`, once in each, valid
    /// (`HostField`) and the same in both.
    static func requestProblem(_ headers: HPACKHeaders) -> String? {
        let method = headers.first(name: ":method")
        if method != "CONNECT" {
            let path = headers.first(name: ":path") ?? ""
            guard path.hasPrefix("/") || (path == "*" && method == "OPTIONS") else {
                return "request target not a path"
            }
        }
        let authority = headers[":authority"]
        let host = headers["host"]
        if authority.count > 1 || host.count > 1 { return "more than one Host field" }
        for var value in authority + host where !value.withUTF8({ HostField.isValid(UnsafeRawBufferPointer($0)[...]) })
        {
            return "bad Host field"
        }
        if let a = authority.first, let h = host.first, a.lowercased() != h.lowercased() {
            return "Host differs from :authority"
        }
        return nil
    }

    static func upstreamRequest(_ headers: HPACKHeaders, clientAddress: String?) -> HPACKHeaders {
        var kept = HPACKHeaders()
        kept.reserveCapacity(headers.count + 3)
        var forwardedFor: [String] = []
        var hasProto = false
        var hasHost = false
        for (name, value, indexing) in headers where keep(name, value) {
            switch name.lowercased() {
            case "x-forwarded-for":
                forwardedFor.append(value)
                continue
            case "x-forwarded-proto": hasProto = true
            case "x-forwarded-host": hasHost = true
            default: break
            }
            kept.add(name: name, value: value, indexing: indexing)
        }
        if let clientAddress { forwardedFor.append(clientAddress) }
        if !forwardedFor.isEmpty { kept.add(name: "x-forwarded-for", value: forwardedFor.joined(separator: ", ")) }
        if !hasProto { kept.add(name: "x-forwarded-proto", value: "http") }
        if !hasHost, let authority = headers.first(name: ":authority") ?? headers.first(name: "host") {
            kept.add(name: "x-forwarded-host", value: authority)
        }
        return kept
    }

    static func downstreamResponse(_ headers: HPACKHeaders) -> HPACKHeaders {
        var kept = HPACKHeaders()
        kept.reserveCapacity(headers.count)
        for (name, value, indexing) in headers where keep(name, value) {
            kept.add(name: name, value: value, indexing: indexing)
        }
        return kept
    }
}
