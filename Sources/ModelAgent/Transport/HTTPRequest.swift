/// One HTTP exchange as the transfer engine performs it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    /// Headers that carry credentials: sent like the others, but dropped when a
    /// redirect leads to another host.
    public var credentials: [(name: String, value: String)] = []
    public var body: [UInt8]
    /// Asks for part of the body; the response is checked to really be that part.
    public var range: ByteRange?
    /// Upper bound for the whole exchange. Downloads leave it nil and rely on the stall
    /// timeout instead, so a large file on a slow link is not cut off while it progresses.
    public var timeout: Duration?
    public var followRedirects: Bool
    /// TLS verification for this request; nil uses the pool's settings.
    public var tls: TLSOptions?

    public init(
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

    public func header(_ name: String) -> String? {
        headers.last { $0.name.lowercased() == name.lowercased() }?.value
    }
}

public struct TLSOptions: Sendable, Equatable {
    public var verify: Bool
    /// PEM bundle replacing the system trust store.
    public var caBundle: String?

    public init(verify: Bool = true, caBundle: String? = nil) {
        self.verify = verify
        self.caBundle = caBundle
    }
}

/// An inclusive byte range; `end == nil` means "to the end of the object".
public struct ByteRange: Sendable, Equatable, CustomStringConvertible {
    public var start: Int64
    public var end: Int64?

    public init(start: Int64, end: Int64? = nil) {
        self.start = start
        self.end = end
    }

    public var length: Int64? { end.map { $0 - start + 1 } }
    public var description: String { "\(start)-\(end.map(String.init) ?? "")" }
}

/// What one attempt produced: the response as far as it got, and why it stopped short.
public struct TransferAttempt: Sendable {
    public var response: HTTPResponse
    /// Nil when the exchange completed.
    public var error: TransferError?
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased; a repeated header keeps its last value.
    public var headers: [String: String]
    /// The body for memory sinks; for file sinks, the start of an error body (non-2xx).
    public var body: [UInt8]
    /// Bytes delivered to the sink.
    public var bytesWritten: Int64

    public var isSuccess: Bool { (200..<300).contains(status) }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Where a response body goes.
public enum ResponseSink: Sendable {
    /// Collected in memory, refused past `limit` bytes (listings, API answers).
    case memory(limit: Int)
    /// Written with pwrite starting at `offset`, never buffered beyond libcurl's own buffer;
    /// refused once the file would grow past `limit` bytes.
    case file(OpenFile, offset: Int64, limit: Int64 = .max)
}
