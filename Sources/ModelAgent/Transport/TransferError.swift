import CCurl

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

enum TransferError: Error, RetryClassifying, CustomStringConvertible {
    case curl(code: Int, message: String)
    case bodyTooLarge(limit: Int64)
    case sink(SystemError)
    /// The server answered a ranged request with a different part or the whole body.
    case rangeNotHonoured(requested: ByteRange, contentRange: String?)
    /// No byte arrived for this long.
    case stalled(Duration)
    /// No lane could run it: the system refused a new thread (e.g. the pod's pids limit)
    /// and no other lane was running.
    case noThread(Int32)

    var isTransient: Bool {
        switch self {
        case .curl(let code, _):
            let permanent: [CURLcode] = [
                CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_PEER_FAILED_VERIFICATION,
                CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_TOO_MANY_REDIRECTS, CURLE_FILESIZE_EXCEEDED,
                CURLE_UNKNOWN_OPTION, CURLE_NOT_BUILT_IN, CURLE_BAD_FUNCTION_ARGUMENT,
            ]
            return !permanent.contains { Int($0.rawValue) == code }
        case .bodyTooLarge: return false
        case .sink(let error): return !error.isNoSpace
        case .rangeNotHonoured: return false
        case .stalled: return true
        case .noThread: return true
        }
    }

    var description: String {
        switch self {
        case .curl(_, let message): return message
        case .bodyTooLarge(let limit): return "response body larger than \(limit) bytes"
        case .sink(let error): return error.description
        case .rangeNotHonoured(let requested, let contentRange):
            return "server did not honour range \(requested) (Content-Range: \(contentRange ?? "none"))"
        case .stalled(let duration): return "no data received for \(duration.seconds) s; transfer aborted"
        case .noThread(let code): return "cannot start a transfer thread (pthread_create: \(code))"
        }
    }
}

/// A response whose status says the request failed. The body itself is never kept: a
/// server may echo the request (signatures, tokens, headers) into it. Only the message
/// of a recognised error document is.
struct HTTPStatusError: Error, RetryClassifying, CustomStringConvertible {
    let status: Int
    /// The server's explanation, from a JSON or XML error document; empty otherwise.
    let reason: String
    let context: String

    init(status: Int, body: [UInt8], context: String) {
        self.status = status
        self.reason = ErrorDocument.reason(body) ?? ""
        self.context = context
    }

    var isTransient: Bool { isTransientHTTPStatus(status) }

    var description: String {
        "\(context): HTTP \(status)" + (reason.isEmpty ? "" : ": \(reason)")
    }
}

/// The message of an error answer, read from the shapes servers use: S3's XML
/// `<Code>`/`<Message>`, Google's `{"error": {"message": …}}`, `{"error": "…"}`,
/// `{"message": …}` and OAuth's `error_description`. Anything else yields nil, so raw
/// bodies never reach logs or status.
enum ErrorDocument {
    static let maximumLength = 300

    static func reason(_ body: [UInt8]) -> String? {
        guard !body.isEmpty, body.count <= 1 << 20 else { return nil }
        let first = body.first { ![0x20, 0x0a, 0x0d, 0x09].contains($0) }
        var found: String?
        if first == UInt8(ascii: "{") {
            found = json(body)
        } else if first == UInt8(ascii: "<") {
            let xml = XMLScanner(body)
            let parts = [xml.value("Code"), xml.value("Message")].compactMap { $0 }.filter { !$0.isEmpty }
            found = parts.isEmpty ? nil : parts.joined(separator: ": ")
        }
        guard let text = found?.trimmingWhitespace(), !text.isEmpty else { return nil }
        return bounded(text)
    }

    /// Redacted first, then cut: a cut secret would no longer be recognised.
    static func bounded(_ text: String) -> String {
        let clean = SecretRedactor.shared.redact(text)
        return clean.count > maximumLength ? String(clean.prefix(maximumLength)) + "…" : clean
    }

    private static func json(_ body: [UInt8]) -> String? {
        guard case .object(let members)? = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) else {
            return nil
        }
        switch members["error"] {
        case .object(let inner)?:
            if case .string(let message)? = inner["message"] { return message }
        case .string(let message)?:
            if case .string(let description)? = members["error_description"] { return message + ": " + description }
            return message
        default: break
        }
        if case .string(let message)? = members["message"] { return message }
        if case .string(let detail)? = members["detail"] { return detail }
        return nil
    }
}
