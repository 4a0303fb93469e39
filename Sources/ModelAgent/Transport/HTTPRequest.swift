/// One HTTP exchange as the transfer engine performs it.
struct HTTPRequest: Sendable {
    var method: String
    var url: String
    var headers: [(name: String, value: String)]
    /// Headers that carry credentials: sent like the others, but dropped when a
    /// redirect leads to another host.
    var credentials: [(name: String, value: String)] = []
    var body: [UInt8]
    /// Asks for part of the body; the response is checked to really be that part.
    var range: ByteRange?
    /// Upper bound for the whole exchange. Downloads leave it nil and rely on the stall
    /// timeout instead, so a large file on a slow link is not cut off while it progresses.
    var timeout: Duration?
    var followRedirects: Bool
    /// TLS verification for this request; nil uses the pool's settings.
    var tls: TLSOptions?

    init(
        method: String = "GET", url: String, headers: [(name: String, value: String)] = [],
        body: [UInt8] = [], range: ByteRange? = nil, timeout: Duration? = nil, followRedirects: Bool = false
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.range = range
        self.timeout = timeout
        self.followRedirects = followRedirects
    }

    func header(_ name: String) -> String? {
        headers.last { $0.name.lowercased() == name.lowercased() }?.value
    }
}

struct TLSOptions: Sendable, Equatable {
    var verify: Bool
    /// PEM bundle replacing the system trust store.
    var caBundle: String?

    init(verify: Bool = true, caBundle: String? = nil) {
        self.verify = verify
        self.caBundle = caBundle
    }
}

/// An inclusive byte range; `end == nil` means "to the end of the object".
struct ByteRange: Sendable, Equatable, CustomStringConvertible {
    var start: Int64
    var end: Int64?

    init(start: Int64, end: Int64? = nil) {
        self.start = start
        self.end = end
    }

    var length: Int64? { end.map { $0 - start + 1 } }
    var description: String { "\(start)-\(end.map(String.init) ?? "")" }
}

/// What one attempt produced: the response as far as it got, and why it stopped short.
struct TransferAttempt: Sendable {
    var response: HTTPResponse
    /// Nil when the exchange completed.
    var error: TransferError?
}

struct HTTPResponse: Sendable {
    var status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    var headers: [String: String]
    /// The body for memory sinks; for file sinks, the start of an error body (non-2xx).
    var body: [UInt8]
    /// Bytes delivered to the sink.
    var bytesWritten: Int64

    var isSuccess: Bool { (200..<300).contains(status) }
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Where a response body goes.
enum ResponseSink: Sendable {
    /// Collected in memory, refused past `limit` bytes (listings, API answers).
    case memory(limit: Int)
    /// Written with pwrite starting at `offset`, never buffered beyond libcurl's own buffer;
    /// refused once the file would grow past `limit` bytes. `crc`, if any, hashes what
    /// is written.
    case file(OpenFile, offset: Int64, limit: Int64 = .max, crc: RunningCRC? = nil)
}
