import Logging

/// The V2 model repository API of the co-located model server (MLServer, Triton,
/// KServe's python server): health, per-model readiness, load and unload.
public struct ModelServerClient: Sendable {
    public let baseURL: String
    let pool: TransferPool
    /// Timeout for a load call; loads of big models legitimately take minutes.
    public var loadTimeout: Duration
    /// Timeout for health, readiness and unload calls.
    public var requestTimeout: Duration
    /// Retries of one call on connection errors, 5xx and 429.
    public var retry: RetryPolicy

    public init(
        baseURL: String, pool: TransferPool, loadTimeout: Duration, requestTimeout: Duration, retry: RetryPolicy
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.pool = pool
        self.loadTimeout = loadTimeout
        self.requestTimeout = requestTimeout
        self.retry = retry
    }

    /// True when `GET <path>` answers 200 (a connection error is "not ready").
    public func probe(_ path: String) async -> Bool {
        let request = HTTPRequest(url: baseURL + path, timeout: requestTimeout)
        return (try? await pool.perform(request, sink: .memory(limit: 1 << 20)).status) == 200
    }

    /// The server's self-description from `GET /v2` (`name`, `version`), if it gives one.
    public func metadata() async -> (name: String, version: String)? {
        let request = HTTPRequest(url: baseURL + "/v2", timeout: requestTimeout)
        guard let response = try? await pool.perform(request, sink: .memory(limit: 1 << 20)), response.status == 200
        else { return nil }
        let text = String(decoding: response.body, as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let range = text.firstRange(of: "\"\(key)\"") else { return nil }
            let rest = text[range.upperBound...].drop { $0 == " " || $0 == ":" }
            guard rest.first == "\"" else { return nil }
            return String(rest.dropFirst().prefix { $0 != "\"" })
        }
        return field("name").map { ($0, field("version") ?? "") }
    }

    /// Whether the server has the model loaded: 200 means yes; 404 (MLServer, KServe) and
    /// 400 (Triton: "Model version not ready") mean no.
    public func isModelReady(_ name: ModelName) async throws -> Bool {
        let response = try await call(
            "GET", "/v2/models/\(name)/ready", timeout: requestTimeout, context: "ready \(name)")
        switch response.status {
        case 200: return true
        case 400, 404: return false
        default:
            throw HTTPStatusError(status: response.status, body: response.body, context: "readiness of model \(name)")
        }
    }

    public func load(_ name: ModelName, logger: Logger) async throws {
        let response = try await retry.run { _ in
            let response: HTTPResponse
            do {
                response = try await call(
                    "POST", "/v2/repository/models/\(name)/load", timeout: loadTimeout, context: "load \(name)")
            } catch let error as ServerUnreachable where error.timedOut {
                throw LoadTimedOut(model: name, timeout: loadTimeout)
            }
            if !(200..<300).contains(response.status) {
                throw LoadFailure(model: name, operation: "load", status: response.status, body: response.body)
            }
            return response
        } onRetry: { attempt, error, delay in
            logger.warning(
                "Retrying load of model \(name): \(error)",
                metadata: ["model": "\(name)", "attempt": "\(attempt)", "delay_ms": "\(delay.milliseconds)"])
        }
        _ = response
    }

    /// Unloads; a 404 means the server does not have the model, which is the goal.
    public func unload(_ name: ModelName, logger: Logger) async throws {
        try await retry.run { _ in
            let response = try await call(
                "POST", "/v2/repository/models/\(name)/unload", timeout: requestTimeout, context: "unload \(name)")
            if !(200..<300).contains(response.status) && response.status != 404 {
                throw LoadFailure(model: name, operation: "unload", status: response.status, body: response.body)
            }
        } onRetry: { attempt, error, delay in
            logger.warning(
                "Retrying unload of model \(name): \(error)",
                metadata: ["model": "\(name)", "attempt": "\(attempt)", "delay_ms": "\(delay.milliseconds)"])
        }
    }

    private func call(_ method: String, _ path: String, timeout: Duration, context: String) async throws -> HTTPResponse
    {
        var request = HTTPRequest(method: method, url: baseURL + path, timeout: timeout)
        if method == "POST" {
            // MLServer rejects a body without this content type (422).
            request.headers = [(name: "Content-Type", value: "application/json")]
            request.body = Array("{}".utf8)
        }
        do {
            return try await pool.perform(request, sink: .memory(limit: 1 << 20))
        } catch let error as TransferError {
            throw ServerUnreachable(url: baseURL, operation: context, underlying: error)
        }
    }
}

/// The model server answered a load or unload with an error status.
public struct LoadFailure: Error, RetryClassifying, CustomStringConvertible {
    public let model: ModelName
    public let operation: String
    public let status: Int
    /// The server's explanation: `{"error": …}` unwrapped, or plain text, truncated.
    public let reason: String

    init(model: ModelName, operation: String, status: Int, body: [UInt8]) {
        self.model = model
        self.operation = operation
        self.status = status
        self.reason = Self.extractReason(body)
    }

    /// 5xx and 429 may pass; other statuses say the request itself cannot succeed.
    public var isTransient: Bool { status >= 500 || status == 429 || status == 408 }

    public var description: String {
        "\(operation) of model \(model) failed with status \(status)" + (reason.isEmpty ? "" : ": \(reason)")
    }

    static func extractReason(_ body: [UInt8]) -> String {
        let text = String(decoding: body, as: UTF8.self).trimmingWhitespace()
        var reason = text
        if text.hasPrefix("{"), let range = text.firstRange(of: "\"error\"") {
            let after = text[range.upperBound...].drop { $0 == " " || $0 == ":" }
            if after.first == "\"" {
                var value = ""
                var escaped = false
                for c in after.dropFirst() {
                    if escaped {
                        value.append(c == "n" ? "\n" : c)
                        escaped = false
                    } else if c == "\\" {
                        escaped = true
                    } else if c == "\"" {
                        break
                    } else {
                        value.append(c)
                    }
                }
                reason = value.trimmingWhitespace()
            }
        }
        return reason.count > 512 ? String(reason.prefix(512)) + "…" : reason
    }
}

public struct ServerUnreachable: Error, RetryClassifying, CustomStringConvertible {
    public let url: String
    public let operation: String
    public let underlying: TransferError
    public var isTransient: Bool { true }

    var timedOut: Bool {
        if case .curl(let code, _) = underlying { return code == 28 }
        return false
    }
    public var description: String { "model server at \(url) unreachable for \(operation): \(underlying)" }
}

/// A load call outlived `--load-timeout`. Sending it again at once would most likely hang
/// the same way (Triton keeps a stuck model LOADING), so the model is reported failed and
/// retried only after the long backoff; its load slot is free meanwhile.
public struct LoadTimedOut: Error, RetryClassifying, CustomStringConvertible {
    public let model: ModelName
    public let timeout: Duration
    public var isTransient: Bool { false }
    public var description: String {
        "load of model \(model) did not answer within \(Int(timeout.seconds)) s (--load-timeout); the server may be stuck loading it"
    }
}
