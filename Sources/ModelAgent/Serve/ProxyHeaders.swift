import NIOCore
import NIOHTTP1

/// How a request and its answer are rewritten on their way through the proxy: hop-by-hop
/// fields (those that describe one connection, not the message) are dropped, the body's
/// framing is restated for the next hop, and the X-Forwarded-* fields say where the
/// request came from. Every field kept is copied as it came, line by line.
enum ProxyHeaders {
    /// Writes the head sent to the model server: same method and target, HTTP/1.1 (so the
    /// connection can be kept), end-to-end fields, the body framed as it arrived, and
    /// `X-Forwarded-For` extended by the client's address. `X-Forwarded-Proto` and
    /// `-Host` are kept when a proxy in front (queue-proxy) set them, else they say what
    /// the agent saw. A request without `Host` (HTTP/1.0) names the server,
    /// `serverAuthority`.
    static func upstreamRequest(
        _ head: HTTP1RequestHead, clientAddress: String?, serverAuthority: String, into out: inout ByteBuffer
    ) {
        let fields = head.fields
        // A chunked body is re-chunked on the next hop; a length is restated as one field.
        let chunked = fields.contains(.transferEncoding)
        let restated = !chunked && fields.lengthNeedsRestating ? try? fields.contentLength() : nil
        var hasLength = false
        var hasProto = false
        var hasForwardedHost = false
        var host: Range<Int>?
        var forwardedFor: [Range<Int>] = []
        fields.withRaw { raw in
            out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[0..<head.targetEnd]))
            out.writeStaticString(" HTTP/1.1\r\n")
            for field in fields.fields {
                // The chain so far goes on, even if a client listed it in `Connection`.
                if field.name == .xForwardedFor && clientAddress != nil {
                    if !field.value.isEmpty { forwardedFor.append(field.value) }
                    continue
                }
                if fields.isHopByHop(field, raw: raw) { continue }
                switch field.name {
                case .contentLength:
                    if chunked { continue }
                    if let restated {
                        if !hasLength { writeField("Content-Length", String(restated), into: &out) }
                        hasLength = true
                        continue
                    }
                    hasLength = true
                case .xForwardedProto: hasProto = true
                case .xForwardedHost: hasForwardedHost = true
                case .host: host = field.value
                default: break
                }
                HTTP1Fields.copy(field, from: raw, into: &out)
            }
            if chunked {
                out.writeStaticString("Transfer-Encoding: chunked\r\n")
            } else if !hasLength && head.method.expectsBody {
                out.writeStaticString("Content-Length: 0\r\n")
            }
            if let clientAddress {
                out.writeStaticString("X-Forwarded-For: ")
                for previous in forwardedFor {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[previous]))
                    out.writeStaticString(", ")
                }
                out.writeString(clientAddress)
                out.writeStaticString("\r\n")
            }
            if !hasProto { out.writeStaticString("X-Forwarded-Proto: http\r\n") }
            if let host {
                if !hasForwardedHost {
                    out.writeStaticString("X-Forwarded-Host: ")
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[host]))
                    out.writeStaticString("\r\n")
                }
            } else {
                // An HTTP/1.0 request without one goes on as HTTP/1.1, which needs one.
                writeField("Host", serverAuthority, into: &out)
            }
            out.writeStaticString("\r\n")
        }
    }

    /// Writes the head sent back to the client and returns whether the connection closes
    /// after this answer. The body goes on as the server framed it: a length is kept, a
    /// chunked body stays chunked for HTTP/1.1 clients. An HTTP/1.0 client reads an
    /// unsized body until the connection closes, as does any client of a body that ends
    /// only with the server's close; so do clients that are not to be kept (`keepAlive`).
    static func downstreamResponse(
        _ head: HTTP1ResponseHead, framing: HTTP1BodyFraming, requestVersion: HTTPVersion, keepAlive: Bool,
        into out: inout ByteBuffer
    ) -> Bool {
        let fields = head.fields
        let informational = head.code < 200
        var closeAfter = !keepAlive
        var dropsLength = informational
        var keepsCodings = false
        var restated: Int64?
        if !informational {
            switch framing {
            case .chunked where requestVersion.minor == 1:
                keepsCodings = true
                dropsLength = true
            case .chunked, .untilClose:
                // A length beside a transfer coding is not the body's (RFC 9112 §6.3).
                dropsLength = true
                closeAfter = true
            case .length, .none:
                // No content at all (RFC 9110 §8.6); else a list of one length goes on as one.
                if head.code == 204 {
                    dropsLength = true
                } else if fields.lengthNeedsRestating {
                    restated = try? fields.contentLength()
                }
            }
            if requestVersion.minor == 0 && !fields.contains(.contentLength) && head.code != 204 && head.code != 304 {
                closeAfter = true
            }
        }
        fields.withRaw { raw in
            out.writeStaticString(requestVersion.minor == 0 ? "HTTP/1.0" : "HTTP/1.1")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[8..<head.statusLineEnd]))
            // The space before the reason phrase is required, even when the server sent none.
            out.writeStaticString(head.statusLineEnd == 12 ? " \r\n" : "\r\n")
            var lengthWritten = false
            for field in fields.fields {
                if fields.isHopByHop(field, raw: raw) {
                    // The codings, named as the server named them.
                    guard keepsCodings && field.name == .transferEncoding else { continue }
                } else if field.name == .contentLength {
                    if dropsLength || lengthWritten { continue }
                    if let restated {
                        writeField("Content-Length", String(restated), into: &out)
                        lengthWritten = true
                        continue
                    }
                }
                HTTP1Fields.copy(field, from: raw, into: &out)
            }
            if !informational {
                if closeAfter {
                    out.writeStaticString("Connection: close\r\n")
                } else if requestVersion.minor == 0 {
                    out.writeStaticString("Connection: keep-alive\r\n")
                }
            }
            out.writeStaticString("\r\n")
        }
        return closeAfter
    }

    private static func writeField(_ name: StaticString, _ value: String, into out: inout ByteBuffer) {
        out.writeStaticString(name)
        out.writeStaticString(": ")
        out.writeString(value)
        out.writeStaticString("\r\n")
    }
}

extension HTTPMethod {
    /// Methods whose requests carry a body by convention: these get an explicit empty one.
    fileprivate var expectsBody: Bool { self == .POST || self == .PUT || self == .PATCH }
}
