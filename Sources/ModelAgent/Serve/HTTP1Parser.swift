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
    /// Names one head's `Connection` fields may list: each field is checked against each.
    static let maxConnectionTokens = 64
    /// A chunk-size line, extensions included.
    static let maxChunkLineBytes = 4096
    static let maxTrailerBytes = 16 << 10

    /// The head at the start of `buffer`, consumed; nil while it is incomplete. Leading
    /// empty lines before a request line are skipped (RFC 9112 §2.2). `scanned`: how far
    /// earlier calls looked without finding the head's end (0 for a new head), so a head
    /// that arrives a byte at a time is not searched from its start each time.
    static func requestHead(_ buffer: inout ByteBuffer, scanned: inout Int) throws(HTTP1ParseError) -> HTTP1RequestHead?
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
    ) throws(HTTP1ParseError) -> HTTP1ResponseHead? {
        try takeHead(&buffer, scanned: &scanned, parseResponse)
    }

    /// The head at the start of `buffer`, parsed by `parse` (from its own bytes, which it
    /// keeps) and consumed once its blank line has arrived.
    private static func takeHead<Head>(
        _ buffer: inout ByteBuffer, scanned: inout Int,
        _ parse: (ByteBuffer, UnsafeRawBufferPointer) throws(HTTP1ParseError) -> Head
    ) throws(HTTP1ParseError) -> Head? {
        guard let end = try headEnd(buffer, scanned: &scanned) else { return nil }
        guard let bytes = buffer.getSlice(at: buffer.readerIndex, length: end - buffer.readerIndex) else {
            throw .malformed("unterminated head")
        }
        let head = try bytes.withUnsafeReadableBytes { raw throws(HTTP1ParseError) -> Head in try parse(bytes, raw) }
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
            // A head with a bare LF (which lenient parsers take for a line end, so its blank
            // line may never come as CR LF CR LF) would wait for the header timeout: refuse
            // it now. Only the bytes scanned for the first time are looked at.
            let bareLF = buffer.withUnsafeReadableBytes { raw in
                let count = min(raw.count, maxHeadBytes)
                var index = from
                while index < count {
                    if raw[index] == 0x0A && (index == 0 || raw[index - 1] != 0x0D) { return true }
                    index += 1
                }
                return false
            }
            if bareLF { throw .malformed("bare LF line ends") }
            if buffer.readableBytes >= maxHeadBytes { throw .headTooLarge }
            scanned = buffer.readableBytes
            return nil
        }
        return buffer.readerIndex + found
    }

    // MARK: Heads

    private static func parseRequest(
        _ bytes: ByteBuffer, _ raw: UnsafeRawBufferPointer
    ) throws(HTTP1ParseError) -> HTTP1RequestHead {
        var lines = LineReader(raw)
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
        // Origin form (a path), or `*` for OPTIONS: an absolute URL would name a host besides
        // the Host field, which servers differ in preferring (RFC 9112 §3.2.2 asks servers to
        // take absolute form; no client of the agent port sends it: queue-proxy, the activator
        // and kubelet send paths). CONNECT names a host and port, and is refused (405) for
        // what it is.
        let isPath = target.first == UInt8(ascii: "/")
        let isAsterisk = target.elementsEqual("*".utf8) && method.elementsEqual("OPTIONS".utf8)
        guard isPath || isAsterisk || method.elementsEqual("CONNECT".utf8) else {
            throw .malformed("request target not a path")
        }
        let version = try parseVersion(rest[(secondSpace + 1)...])
        let fields = try HTTP1Fields(bytes: bytes, fields: parseFields(&lines))
        return HTTP1RequestHead(
            method: HTTPMethod(rawValue: String(decoding: method, as: UTF8.self)),
            uri: String(decoding: target, as: UTF8.self), version: version, fields: fields, targetEnd: secondSpace,
            isKeepAlive: fields.isKeepAlive(version: version))
    }

    private static func parseResponse(
        _ bytes: ByteBuffer, _ raw: UnsafeRawBufferPointer
    ) throws(HTTP1ParseError) -> HTTP1ResponseHead {
        var lines = LineReader(raw)
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
        if line.count > 12 {
            guard line[start + 12] == 0x20 else { throw .malformed("bad status line") }
            guard line[(start + 13)...].allSatisfy(isFieldValueByte) else { throw .malformed("bad reason phrase") }
        }
        let fields = try HTTP1Fields(bytes: bytes, fields: parseFields(&lines))
        return HTTP1ResponseHead(
            version: version, code: code, fields: fields, statusLineEnd: line.endIndex,
            isKeepAlive: fields.isKeepAlive(version: version))
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

    private static func parseFields(_ lines: inout LineReader) throws(HTTP1ParseError) -> [HTTP1Fields.Field] {
        var fields: [HTTP1Fields.Field] = []
        while let line = lines.next() {
            if line.isEmpty { return fields }
            if fields.count >= maxHeaderLines { throw .malformed("too many header fields") }
            let (name, value) = try parseField(line)
            fields.append(
                HTTP1Fields.Field(
                    name: .of(name), line: line.startIndex..<line.endIndex, nameEnd: name.endIndex,
                    value: value.startIndex..<value.endIndex))
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
    static func requestFraming(_ head: HTTP1RequestHead) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        if head.fields.contains(.transferEncoding) {
            if head.version.minor == 0 { throw .malformed("transfer-encoding in an HTTP/1.0 request") }
            if head.fields.contains(.contentLength) {
                throw .malformed("both content-length and transfer-encoding")
            }
            guard head.fields.codingsAreChunked == [true] else {
                throw HTTP1ParseError(status: .notImplemented, reason: "transfer coding not supported")
            }
            return .chunked
        }
        guard let length = try head.fields.contentLength() else { return .none }
        return length == 0 ? .none : .length(length)
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host field, an HTTP/1.0 one at
    /// most one (the proxy names the server when there is none), and its value is a host
    /// with an optional port (`HostField`). A server may route or log by it, so a request
    /// that makes it ambiguous is refused.
    static func checkHost(_ head: HTTP1RequestHead) throws(HTTP1ParseError) {
        var found = false
        try head.fields.withRaw { raw throws(HTTP1ParseError) in
            for field in head.fields.fields where field.name == .host {
                if found { throw .malformed("more than one Host field") }
                found = true
                guard HostField.isValid(raw[field.value]) else { throw .malformed("bad Host field") }
            }
        }
        if !found && head.version.minor > 0 { throw .malformed("no Host field") }
    }

    /// How a response's body is delimited, given what the request was.
    static func responseFraming(
        _ head: HTTP1ResponseHead, requestMethod: HTTPMethod
    ) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        let code = head.code
        // Checked even where no body follows: the client reads the field too.
        let length = try head.fields.contentLength()
        if requestMethod == .HEAD || code < 200 || code == 204 || code == 304 { return .none }
        if head.fields.contains(.transferEncoding) {
            return head.fields.codingsAreChunked.last == true && head.version.minor == 1 ? .chunked : .untilClose
        }
        guard let length else { return .untilClose }
        return length == 0 ? .none : .length(length)
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
