import CCurl

/// Errors that say whether trying the same thing again could succeed.
public protocol RetryClassifying: Error {
    var isTransient: Bool { get }
}

extension Error {
    /// Unknown errors count as transient: retrying with backoff is the safe default.
    public var isTransient: Bool { (self as? any RetryClassifying)?.isTransient ?? true }
}

public enum TransferError: Error, RetryClassifying, CustomStringConvertible {
    case curl(code: Int, message: String)
    case bodyTooLarge(limit: Int)
    case sink(SystemError)
    /// The server answered a ranged request with a different part or the whole body.
    case rangeNotHonoured(requested: ByteRange, contentRange: String?)
    /// No byte arrived for this long.
    case stalled(Duration)

    public var isTransient: Bool {
        switch self {
        case .curl(let code, _):
            let permanent: [CURLcode] = [
                CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_PEER_FAILED_VERIFICATION,
                CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_TOO_MANY_REDIRECTS, CURLE_FILESIZE_EXCEEDED,
            ]
            return !permanent.contains { Int($0.rawValue) == code }
        case .bodyTooLarge: return false
        case .sink(let error): return !error.isNoSpace
        case .rangeNotHonoured: return false
        case .stalled: return true
        }
    }

    public var description: String {
        switch self {
        case .curl(_, let message): return message
        case .bodyTooLarge(let limit): return "response body larger than \(limit) bytes"
        case .sink(let error): return error.description
        case .rangeNotHonoured(let requested, let contentRange):
            return "server did not honour range \(requested) (Content-Range: \(contentRange ?? "none"))"
        case .stalled(let duration): return "no data received for \(duration.seconds) s; transfer aborted"
        }
    }
}

/// A response whose status says the request failed.
public struct HTTPStatusError: Error, RetryClassifying, CustomStringConvertible {
    public let status: Int
    public let body: String
    public let context: String

    public init(status: Int, body: [UInt8], context: String) {
        self.status = status
        self.body = String(decoding: body.prefix(512), as: UTF8.self)
        self.context = context
    }

    public var isTransient: Bool { status == 408 || status == 429 || status >= 500 }

    public var description: String {
        let detail = body.trimmingWhitespace()
        return "\(context): HTTP \(status)" + (detail.isEmpty ? "" : ": \(detail)")
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace {
            end = scalars.index(before: end)
        }
        return String(scalars[start..<end])
    }
}
