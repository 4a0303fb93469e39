import NIOCore
import NIOHTTP1

/// A head's header fields as they arrived: the head's bytes, and where each field lies in
/// them. The proxy copies the lines it keeps and finds the few it acts on by a name
/// recognised once while parsing, so forwarding a request makes no String per header.
struct HTTP1Fields {
    /// The field names the proxy acts on (matched with ASCII case folded); `other` is the rest.
    enum Name: UInt8 {
        case other, host, contentLength, transferEncoding, expect
        case connection, keepAlive, te, trailer, upgrade, proxy
        case xForwardedFor, xForwardedProto, xForwardedHost

        /// Hop-by-hop: RFC 9110 §7.6.1, and every `Proxy-*` header (the non-standard
        /// `Proxy-Connection` among them).
        var isHopByHop: Bool {
            switch self {
            case .connection, .keepAlive, .te, .trailer, .transferEncoding, .upgrade, .proxy: return true
            default: return false
            }
        }

        static func of(_ name: Slice<UnsafeRawBufferPointer>) -> Name {
            if name.count >= 6 && equalFolded(name.prefix(6), "proxy-") { return .proxy }
            switch name.count {
            case 2 where equalFolded(name, "te"): return .te
            case 4 where equalFolded(name, "host"): return .host
            case 6 where equalFolded(name, "expect"): return .expect
            case 7 where equalFolded(name, "trailer"): return .trailer
            case 7 where equalFolded(name, "upgrade"): return .upgrade
            case 10 where equalFolded(name, "connection"): return .connection
            case 10 where equalFolded(name, "keep-alive"): return .keepAlive
            case 14 where equalFolded(name, "content-length"): return .contentLength
            case 15 where equalFolded(name, "x-forwarded-for"): return .xForwardedFor
            case 16 where equalFolded(name, "x-forwarded-host"): return .xForwardedHost
            case 17 where equalFolded(name, "transfer-encoding"): return .transferEncoding
            case 17 where equalFolded(name, "x-forwarded-proto"): return .xForwardedProto
            default: return .other
            }
        }
    }

    struct Field {
        var name: Name
        /// The line without its CRLF, where its name ends, and its value without the
        /// surrounding whitespace: offsets into `bytes`.
        var line: Range<Int>
        var nameEnd: Int
        var value: Range<Int>

        var nameRange: Range<Int> { line.lowerBound..<nameEnd }
    }

    /// The whole head, start line through the blank line.
    let bytes: ByteBuffer
    let fields: [Field]
    /// The names the `Connection` fields list, as offsets into `bytes`; never
    /// `Content-Length`: the body goes on with the length it came with, and a next hop
    /// told no length (or 0) would read the body as the next request (request smuggling);
    /// nor `Host`, which an HTTP/1.1 request cannot go without.
    let connectionTokens: [Range<Int>]

    /// Refuses more than `HTTP1Parser.maxConnectionTokens` listed names: every field is
    /// compared with each (`isHopByHop`).
    init(bytes: ByteBuffer, fields: [Field]) throws(HTTP1ParseError) {
        self.bytes = bytes
        self.fields = fields
        connectionTokens = bytes.withUnsafeReadableBytes { raw in
            var tokens: [Range<Int>] = []
            for field in fields where field.name == .connection {
                for item in listItems(raw[field.value], keepingEmpty: false)
                where !equalFolded(item, "content-length") && !equalFolded(item, "host") {
                    tokens.append(item.startIndex..<item.endIndex)
                }
            }
            return tokens
        }
        if connectionTokens.count > HTTP1Parser.maxConnectionTokens {
            throw .malformed("too many connection options")
        }
    }

    func contains(_ name: Name) -> Bool { fields.contains { $0.name == name } }

    /// The values of the fields called `lowercaseName` (any name, found by comparing bytes).
    func values(named lowercaseName: String) -> [String] {
        withRaw { raw in fields.filter { equalFolded(raw[$0.nameRange], lowercaseName.utf8) }.map(value) }
    }

    /// Whether a field called `lowercaseName` reaches the next hop with a value: not empty,
    /// and not listed in `Connection`.
    func forwardsValue(named lowercaseName: String) -> Bool {
        withRaw { raw in
            fields.contains {
                !$0.value.isEmpty && equalFolded(raw[$0.nameRange], lowercaseName.utf8) && !isHopByHop($0, raw: raw)
            }
        }
    }

    func contains(named lowercaseName: String) -> Bool {
        withRaw { raw in fields.contains { equalFolded(raw[$0.nameRange], lowercaseName.utf8) } }
    }

    func value(_ field: Field) -> String {
        withRaw { raw in String(decoding: raw[field.value], as: UTF8.self) }
    }

    func withRaw<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try bytes.withUnsafeReadableBytes { raw throws(Failure) in try body(raw) }
    }

    /// NIO's headers with the same fields, in order (for tests: no path of the proxy builds them).
    var headers: HTTPHeaders {
        withRaw { raw in
            HTTPHeaders(
                fields.map { field in
                    (
                        String(decoding: raw[field.nameRange], as: UTF8.self),
                        String(decoding: raw[field.value], as: UTF8.self)
                    )
                })
        }
    }

    // MARK: Framing and connection fields

    /// The one length all Content-Length values agree on (a list of equal values is one
    /// length, RFC 9112 §6.3); nil without any.
    func contentLength() throws(HTTP1ParseError) -> Int64? {
        try withRaw { raw throws(HTTP1ParseError) in
            var found: Int64?
            for field in fields where field.name == .contentLength {
                for item in listItems(raw[field.value], keepingEmpty: true) {
                    guard !item.isEmpty, item.count <= 18, item.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                        throw .malformed("bad content-length")
                    }
                    var length: Int64 = 0
                    for digit in item { length = length * 10 + Int64(digit - 0x30) }
                    if let found, found != length { throw .malformed("conflicting content-length") }
                    found = length
                }
            }
            return found
        }
    }

    /// More than one Content-Length field, or a list in one: stricter parsers after the
    /// agent refuse that, so it is restated as one field.
    var lengthNeedsRestating: Bool {
        var count = 0
        return withRaw { raw in
            for field in fields where field.name == .contentLength {
                count += 1
                if count > 1 || raw[field.value].contains(UInt8(ascii: ",")) { return true }
            }
            return false
        }
    }

    /// The transfer codings, in order, over every Transfer-Encoding field; each true when
    /// it is `chunked`. A field that names none counts as one coding that is not: what it
    /// means is unclear, so nothing after it is read as chunked.
    var codingsAreChunked: [Bool] {
        withRaw { raw in
            var codings: [Bool] = []
            for field in fields where field.name == .transferEncoding {
                let items = listItems(raw[field.value], keepingEmpty: false)
                if items.isEmpty { codings.append(false) }
                for item in items { codings.append(equalFolded(item, "chunked")) }
            }
            return codings
        }
    }

    /// Whether the connection stays open after this message (RFC 9112 §9.3).
    func isKeepAlive(version: HTTPVersion) -> Bool {
        withRaw { raw in
            if connectionTokens.contains(where: { equalFolded(raw[$0], "close") }) { return false }
            return version.minor >= 1 || connectionTokens.contains(where: { equalFolded(raw[$0], "keep-alive") })
        }
    }

    /// Whether `field` describes only this hop: a hop-by-hop name, or one `Connection` lists.
    func isHopByHop(_ field: Field, raw: UnsafeRawBufferPointer) -> Bool {
        if field.name.isHopByHop { return true }
        guard !connectionTokens.isEmpty else { return false }
        let name = raw[field.nameRange]
        return connectionTokens.contains { equalFolded(name, raw[$0]) }
    }

    /// The line of `field` and its CRLF, as it came.
    static func copy(_ field: Field, from raw: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[field.line]))
        out.writeStaticString("\r\n")
    }
}

/// The items of a comma-separated list (RFC 9110 §5.6.1), each without surrounding spaces
/// and tabs; `keepingEmpty` keeps empty items, for whoever must refuse them.
private func listItems(
    _ value: Slice<UnsafeRawBufferPointer>, keepingEmpty: Bool
) -> [Slice<UnsafeRawBufferPointer>] {
    var items: [Slice<UnsafeRawBufferPointer>] = []
    var start = value.startIndex
    var index = value.startIndex
    while index <= value.endIndex {
        if index == value.endIndex || value[index] == UInt8(ascii: ",") {
            var item = value[start..<index]
            while let first = item.first, first == 0x20 || first == 0x09 { item = item.dropFirst() }
            while let last = item.last, last == 0x20 || last == 0x09 { item = item.dropLast() }
            if keepingEmpty || !item.isEmpty { items.append(item) }
            start = index + 1
        }
        index += 1
    }
    return items
}

/// Whether `bytes` equals `other`, ignoring the case of ASCII letters on both sides.
private func equalFolded(_ bytes: some Collection<UInt8>, _ other: some Collection<UInt8>) -> Bool {
    guard bytes.count == other.count else { return false }
    return zip(bytes, other).allSatisfy { ASCIIByte.folded($0) == ASCIIByte.folded($1) }
}

private func equalFolded(_ bytes: some Collection<UInt8>, _ lowercase: StaticString) -> Bool {
    lowercase.withUTF8Buffer { equalFolded(bytes, $0) }
}
