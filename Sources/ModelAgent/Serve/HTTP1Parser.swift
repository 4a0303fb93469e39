import NIOCore
import NIOHTTP1

/// Why bytes from a peer are not an HTTP/1.1 message we forward; `status` is what a client
/// gets when its request is refused.
struct HTTP1ParseError: Error, Equatable {
    var status: HTTPResponseStatus
    var reason: String

    static func malformed(_ reason: String) -> Self { .init(status: .badRequest, reason: reason) }
    static let headTooLarge = Self(status: .requestHeaderFieldsTooLarge, reason: "request head too large")
}

/// How a message's body is delimited (RFC 9112 §6).
enum HTTP1BodyFraming: Equatable {
    case none
    case length(Int64)
    case chunked
    /// A response without a length: its body ends when the server closes the connection.
    case untilClose
}

/// The proxy's HTTP/1.x parser: it finds a message's head and the end of its body, so the
/// body's bytes can be passed on as they arrived, without being decoded and encoded again.
/// Everything is checked as it is read (framing by RFC 9112, strictly: CRLF line ends, no
/// folded or unnamed header lines, one consistent length, chunked only as the last coding),
/// so what it forwards is what any conforming parser after it reads. It never traps.
enum HTTP1Parser {
    static let maxHeadBytes = 64 << 10
    static let maxHeaderLines = 256
    /// A chunk-size line, extensions included.
    static let maxChunkLineBytes = 4096
    static let maxTrailerBytes = 16 << 10

    /// The head at the start of `buffer`, consumed; nil while it is incomplete. Leading
    /// empty lines before a request line are skipped (RFC 9112 §2.2). `scanned`: how far
    /// earlier calls looked without finding the head's end (0 for a new head), so a head
    /// that arrives a byte at a time is not searched from its start each time.
    static func requestHead(_ buffer: inout ByteBuffer, scanned: inout Int) throws(HTTP1ParseError) -> HTTPRequestHead?
    {
        var skipped = 0
        while buffer.readableBytes - skipped >= 2,
            buffer.getInteger(at: buffer.readerIndex + skipped, as: UInt16.self)
                == 0x0D0A
        {
            skipped += 2
            if skipped > 64 { throw .malformed("empty lines before the request") }
        }
        if skipped > 0 {
            buffer.moveReaderIndex(forwardBy: skipped)
            scanned = 0
        }
        return try takeHead(&buffer, scanned: &scanned, parseRequest)
    }

    /// The head of a response at the start of `buffer`, consumed; nil while incomplete.
    static func responseHead(
        _ buffer: inout ByteBuffer, scanned: inout Int
    ) throws(HTTP1ParseError) -> HTTPResponseHead? {
        try takeHead(&buffer, scanned: &scanned, parseResponse)
    }

    /// The head at the start of `buffer`, parsed by `parse` and consumed once its blank
    /// line has arrived.
    private static func takeHead<Head>(
        _ buffer: inout ByteBuffer, scanned: inout Int,
        _ parse: (UnsafeRawBufferPointer) throws(HTTP1ParseError) -> Head
    ) throws(HTTP1ParseError) -> Head? {
        guard let end = try headEnd(buffer, scanned: &scanned) else { return nil }
        let head = try buffer.withUnsafeReadableBytes { raw throws(HTTP1ParseError) -> Head in
            try parse(UnsafeRawBufferPointer(rebasing: raw[0..<(end - buffer.readerIndex)]))
        }
        buffer.moveReaderIndex(to: end)
        scanned = 0
        return head
    }

    /// The absolute index just past the blank line ending the head, or nil when it has not
    /// arrived; throws when `maxHeadBytes` came without one.
    private static func headEnd(_ buffer: ByteBuffer, scanned: inout Int) throws(HTTP1ParseError) -> Int? {
        let from = max(0, min(scanned, buffer.readableBytes) - 3)
        let found = buffer.withUnsafeReadableBytes { raw -> Int? in
            let count = min(raw.count, maxHeadBytes)
            var index = from
            // A blank line is CR LF CR LF; look for the LF pairs and check around them.
            while index + 3 < count {
                let byte = raw[index + 3]
                if byte == 0x0A {
                    if raw[index] == 0x0D && raw[index + 1] == 0x0A && raw[index + 2] == 0x0D { return index + 4 }
                    index += 1
                } else if byte == 0x0D {
                    index += 1
                } else {
                    index += 4
                }
            }
            return nil
        }
        guard let found else {
            if buffer.readableBytes >= maxHeadBytes { throw .headTooLarge }
            scanned = buffer.readableBytes
            return nil
        }
        return buffer.readerIndex + found
    }

    // MARK: Heads

    private static func parseRequest(_ bytes: UnsafeRawBufferPointer) throws(HTTP1ParseError) -> HTTPRequestHead {
        var lines = LineReader(bytes)
        guard let line = lines.next() else { throw .malformed("no request line") }
        guard let firstSpace = line.firstIndex(of: 0x20), firstSpace > line.startIndex else {
            throw .malformed("bad request line")
        }
        let method = line[line.startIndex..<firstSpace]
        guard method.allSatisfy(isTokenByte) else { throw .malformed("bad method") }
        let rest = line[(firstSpace + 1)...]
        guard let secondSpace = rest.firstIndex(of: 0x20), secondSpace > rest.startIndex else {
            throw .malformed("bad request line")
        }
        let target = rest[rest.startIndex..<secondSpace]
        guard target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .malformed("bad request target") }
        let version = try parseVersion(rest[(secondSpace + 1)...])
        let headers = try parseHeaders(&lines)
        return HTTPRequestHead(
            version: version, method: HTTPMethod(rawValue: String(decoding: method, as: UTF8.self)),
            uri: String(decoding: target, as: UTF8.self), headers: headers)
    }

    private static func parseResponse(_ bytes: UnsafeRawBufferPointer) throws(HTTP1ParseError) -> HTTPResponseHead {
        var lines = LineReader(bytes)
        guard let line = lines.next(), line.count >= 12 else { throw .malformed("bad status line") }
        let start = line.startIndex
        let version = try parseVersion(line[start..<(start + 8)])
        guard line[start + 8] == 0x20 else { throw .malformed("bad status line") }
        var code = 0
        for byte in line[(start + 9)..<(start + 12)] {
            guard byte >= 0x30 && byte <= 0x39 else { throw .malformed("bad status code") }
            code = code * 10 + Int(byte - 0x30)
        }
        guard code >= 100 else { throw .malformed("bad status code") }
        var reason = ""
        if line.count > 12 {
            guard line[start + 12] == 0x20 else { throw .malformed("bad status line") }
            let text = line[(start + 13)...]
            guard text.allSatisfy(isFieldValueByte) else { throw .malformed("bad reason phrase") }
            reason = String(decoding: text, as: UTF8.self)
        }
        let headers = try parseHeaders(&lines)
        return HTTPResponseHead(
            version: version, status: .init(statusCode: code, reasonPhrase: reason), headers: headers)
    }

    private static func parseVersion(_ bytes: Slice<UnsafeRawBufferPointer>) throws(HTTP1ParseError) -> HTTPVersion {
        guard bytes.count == 8, bytes.starts(with: "HTTP/1.".utf8) else {
            throw HTTP1ParseError(status: .httpVersionNotSupported, reason: "HTTP version not supported")
        }
        switch bytes[bytes.startIndex + 7] {
        case 0x31: return .http1_1
        case 0x30: return .http1_0
        default: throw HTTP1ParseError(status: .httpVersionNotSupported, reason: "HTTP version not supported")
        }
    }

    private static func parseHeaders(_ lines: inout LineReader) throws(HTTP1ParseError) -> HTTPHeaders {
        var headers = HTTPHeaders()
        var count = 0
        while let line = lines.next() {
            if line.isEmpty { return headers }
            count += 1
            if count > maxHeaderLines { throw .malformed("too many header fields") }
            let (name, value) = try parseField(line)
            headers.add(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
        }
        throw .malformed("unterminated head")
    }

    /// `name: value` with the value's surrounding whitespace trimmed.
    static func parseField(
        _ line: Slice<UnsafeRawBufferPointer>
    ) throws(HTTP1ParseError) -> (Slice<UnsafeRawBufferPointer>, Slice<UnsafeRawBufferPointer>) {
        guard let colon = line.firstIndex(of: 0x3A), colon > line.startIndex else {
            // A line starting with whitespace is an obsolete folded continuation.
            throw .malformed("bad header field")
        }
        let name = line[line.startIndex..<colon]
        guard name.allSatisfy(isTokenByte) else { throw .malformed("bad header field name") }
        var value = line[(colon + 1)...]
        while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
        while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
        guard value.allSatisfy(isFieldValueByte) else { throw .malformed("bad header field value") }
        return (name, value)
    }

    /// RFC 9110 tchar.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    /// Visible characters, space, tab and obs-text: no CR, LF, NUL or other controls.
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }

    // MARK: Framing

    /// How a request's body is delimited; a request whose framing is ambiguous (both a
    /// length and a transfer coding, differing lengths: the stuff of request smuggling) is
    /// refused.
    static func requestFraming(_ head: HTTPRequestHead) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        let codings = head.headers["transfer-encoding"]
        if !codings.isEmpty {
            if head.version.minor == 0 { throw .malformed("transfer-encoding in an HTTP/1.0 request") }
            if head.headers.contains(name: "content-length") {
                throw .malformed("both content-length and transfer-encoding")
            }
            let tokens = codings.flatMap { $0.split(separator: ",") }.map { $0.trimmingWhitespace() }
            guard tokens.count == 1, tokens[0].lowercased() == "chunked" else {
                throw HTTP1ParseError(status: .notImplemented, reason: "transfer coding not supported")
            }
            return .chunked
        }
        guard let length = try contentLength(head.headers) else { return .none }
        return length == 0 ? .none : .length(length)
    }

    /// How a response's body is delimited, given what the request was.
    static func responseFraming(
        _ head: HTTPResponseHead, requestMethod: HTTPMethod
    ) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        let code = head.status.code
        if requestMethod == .HEAD || code < 200 || code == 204 || code == 304 { return .none }
        let codings = head.headers["transfer-encoding"]
        if !codings.isEmpty {
            let last = codings.last?.split(separator: ",").last?.trimmingWhitespace().lowercased()
            return last == "chunked" && head.version.minor == 1 ? .chunked : .untilClose
        }
        guard let length = try contentLength(head.headers) else { return .untilClose }
        return length == 0 ? .none : .length(length)
    }

    /// One `Content-Length` field in place of a checked list or repeats of the same value,
    /// which stricter parsers after the agent refuse.
    static func restateContentLength(_ headers: inout HTTPHeaders) {
        let values = headers["content-length"]
        guard values.count > 1 || values.first?.utf8.contains(UInt8(ascii: ",")) == true,
            let length = try? contentLength(headers)
        else { return }
        headers.replaceOrAdd(name: "Content-Length", value: String(length))
    }

    /// The one length all Content-Length values agree on (a list of equal values is one
    /// length, RFC 9112 §6.3); nil without any.
    static func contentLength(_ headers: HTTPHeaders) throws(HTTP1ParseError) -> Int64? {
        var found: Int64?
        for value in headers["content-length"] {
            for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                let digits = item.trimmingWhitespace().utf8
                guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    throw .malformed("bad content-length")
                }
                var length: Int64 = 0
                for digit in digits { length = length * 10 + Int64(digit - 0x30) }
                if let found, found != length { throw .malformed("conflicting content-length") }
                found = length
            }
        }
        return found
    }
}

/// The lines of a head, split at CRLF; a bare CR or LF inside a line is refused by the
/// byte checks of whoever reads the line (they are controls).
private struct LineReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The next line without its CRLF; nil at the end.
    mutating func next() -> Slice<UnsafeRawBufferPointer>? {
        var index = position
        while index + 1 < bytes.count {
            if bytes[index] == 0x0D && bytes[index + 1] == 0x0A {
                let line = bytes[position..<index]
                position = index + 2
                return line
            }
            index += 1
        }
        return nil
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var trimmed = self
        while let first = trimmed.first, first == " " || first == "\t" { trimmed = trimmed.dropFirst() }
        while let last = trimmed.last, last == " " || last == "\t" { trimmed = trimmed.dropLast() }
        return trimmed
    }
}
