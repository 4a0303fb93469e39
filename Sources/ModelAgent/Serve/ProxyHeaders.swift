import NIOHTTP1

/// How a request and its answer are rewritten on their way through the proxy: hop-by-hop
/// headers (those that describe one connection, not the message) are dropped, the body's
/// framing is restated for the next hop, and the X-Forwarded-* headers say where the
/// request came from.
enum ProxyHeaders {
    /// RFC 9110 §7.6.1, plus the non-standard `Proxy-Connection`; every `Proxy-*` header goes.
    private static let hopByHop: Set<String> = [
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    private static let hopByHopBytes = hopByHop.map { Array($0.utf8) }

    /// Compared byte by byte, ASCII case folded: every header of every request passes here,
    /// and most are none of these.
    static func isHopByHop(_ name: String, listedIn connection: Set<String>) -> Bool {
        let bytes = name.utf8
        if bytes.count >= 6 && Self.equalFolded(bytes.prefix(6), "proxy-".utf8) { return true }
        for candidate in hopByHopBytes where candidate.count == bytes.count {
            if Self.equalFolded(bytes, candidate) { return true }
        }
        return !connection.isEmpty && connection.contains(name.lowercased())
    }

    /// Whether `bytes` equals the lowercase `lower`, ignoring the case of ASCII letters.
    private static func equalFolded(_ bytes: some Sequence<UInt8>, _ lower: some Sequence<UInt8>) -> Bool {
        var expected = lower.makeIterator()
        for byte in bytes {
            let folded = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            guard folded == expected.next() else { return false }
        }
        return expected.next() == nil
    }

    /// Header names the `Connection` header declares hop-by-hop for this message, except
    /// `Content-Length`: the body goes on with the length it came with, and a next hop told
    /// no length (or 0) would read the body as the next request (request smuggling).
    private static func connectionTokens(_ headers: HTTPHeaders) -> Set<String> {
        var tokens = Set<String>()
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                let trimmed = String(token).trimmingWhitespace().lowercased()
                if !trimmed.isEmpty && trimmed != "content-length" { tokens.insert(trimmed) }
            }
        }
        return tokens
    }

    private static func endToEnd(_ headers: HTTPHeaders) -> HTTPHeaders {
        let listed = connectionTokens(headers)
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count + 3)
        for (name, value) in headers where !isHopByHop(name, listedIn: listed) {
            kept.add(name: name, value: value)
        }
        return kept
    }

    /// The head sent to the model server: same method and target, HTTP/1.1 (so the
    /// connection can be kept), end-to-end headers, the body framed as it arrived, and
    /// `X-Forwarded-For` extended by the client's address. `X-Forwarded-Proto` and
    /// `-Host` are kept when a proxy in front (queue-proxy) set them, else they say what
    /// the agent saw.
    static func upstreamRequest(_ head: HTTPRequestHead, clientAddress: String?) -> HTTPRequestHead {
        var headers = endToEnd(head.headers)
        if head.headers["transfer-encoding"].contains(where: { !$0.isEmpty }) {
            // A chunked body is re-chunked on the next hop; a length, when given, is kept.
            headers.remove(name: "content-length")
            headers.add(name: "transfer-encoding", value: "chunked")
        } else if !headers.contains(name: "content-length") && head.method.expectsBody {
            headers.add(name: "content-length", value: "0")
        }
        if let clientAddress {
            let previous = head.headers["x-forwarded-for"].joined(separator: ", ")
            headers.replaceOrAdd(
                name: "X-Forwarded-For", value: previous.isEmpty ? clientAddress : previous + ", " + clientAddress)
        }
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "X-Forwarded-Proto", value: "http") }
        if !headers.contains(name: "x-forwarded-host"), let host = head.headers["host"].first {
            headers.add(name: "X-Forwarded-Host", value: host)
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// The head sent back to the client. NIO's encoder restates the framing: a length is
    /// kept, anything else is chunked for HTTP/1.1 clients; an HTTP/1.0 client reads an
    /// unsized body until the connection closes, so `closeAfter` is set.
    static func downstreamResponse(
        _ head: HTTPResponseHead, requestVersion: HTTPVersion, keepAlive: Bool
    ) -> (head: HTTPResponseHead, closeAfter: Bool) {
        var headers = endToEnd(head.headers)
        var closeAfter = !keepAlive
        let informational = head.status.code >= 100 && head.status.code < 200
        if !informational {
            if requestVersion.minor == 0 && !headers.contains(name: "content-length") && head.status.mayHaveBody {
                closeAfter = true
            }
            if closeAfter {
                headers.add(name: "Connection", value: "close")
            } else if requestVersion.minor == 0 {
                headers.add(name: "Connection", value: "keep-alive")
            }
        }
        return (HTTPResponseHead(version: requestVersion, status: head.status, headers: headers), closeAfter)
    }
}

extension HTTPMethod {
    /// Methods whose requests carry a body by convention: these get an explicit empty one.
    fileprivate var expectsBody: Bool { self == .POST || self == .PUT || self == .PATCH }
}

extension HTTPResponseStatus {
    fileprivate var mayHaveBody: Bool { code != 204 && code != 304 && code >= 200 }
}
