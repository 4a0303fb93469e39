import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The V2 model repository API of the co-located model server (MLServer, Triton,
/// KServe's python server): health, per-model readiness, load and unload.
struct ModelServerClient: Sendable {
    let baseURL: String
    let pool: TransferPool
    /// Timeout for a load call; loads of big models legitimately take minutes.
    var loadTimeout: Duration
    /// Timeout for health, readiness and unload calls.
    var requestTimeout: Duration
    /// Retries of one call on connection errors, 5xx and 429.
    var retry: RetryPolicy
    /// Hears about every load and unload call sent ("load"/"unload", answered 2xx or not),
    /// retries included: what `model_agent_loads_total` counts.
    var onCall: @Sendable (_ operation: String, _ succeeded: Bool) -> Void = { _, _ in }

    init(
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
    func probe(_ path: String) async -> Bool {
        let request = HTTPRequest(url: baseURL + path, timeout: requestTimeout)
        return (try? await pool.perform(request, sink: .memory(limit: 1 << 20)).status) == 200
    }

    /// What `GET /v2` said about the server.
    enum Metadata: Sendable, Equatable {
        case described(name: String, version: String)
        /// The server answered, but not with V2 server metadata (KServe's agent never asks,
        /// so a server may well not implement it): the reason, for the log.
        case undescribed(String)
        /// No answer, or one worth asking again for (5xx, 429): not listening yet, busy.
        case unreachable
    }

    /// The server's self-description from `GET /v2` (`name`, `version`).
    func metadata() async -> Metadata {
        let request = HTTPRequest(url: baseURL + "/v2", timeout: requestTimeout)
        guard let response = try? await pool.perform(request, sink: .memory(limit: 1 << 20)) else {
            return .unreachable
        }
        guard response.status == 200 else {
            if response.status >= 500 || response.status == 429 { return .unreachable }
            return .undescribed("GET /v2 answered \(response.status)")
        }
        struct Body: Decodable {
            var name: String
            var version: String?
        }
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(response.body)) else {
            return .undescribed("GET /v2 did not answer with V2 server metadata")
        }
        return .described(name: body.name, version: body.version ?? "")
    }

    /// Whether the server has the model loaded: 200 means yes; 404 (MLServer, KServe) and
    /// 400 (Triton: "Model version not ready") mean no.
    func isModelReady(_ name: ModelName) async throws -> Bool {
        let response = try await call(
            "GET", "/v2/models/\(name)/ready", timeout: requestTimeout, context: "ready \(name)")
        switch response.status {
        case 200: return true
        case 400, 404: return false
        default:
            throw HTTPStatusError(status: response.status, body: response.body, context: "readiness of model \(name)")
        }
    }

    func load(_ name: ModelName, logger: Logger) async throws {
        let response = try await retry.run { _ in
            let response: HTTPResponse
            do {
                response = try await call(
                    "POST", "/v2/repository/models/\(name)/load", timeout: loadTimeout, context: "load \(name)")
            } catch let error as ServerUnreachable {
                onCall("load", false)
                if error.timedOut { throw LoadTimedOut(model: name, timeout: loadTimeout) }
                throw error
            }
            onCall("load", (200..<300).contains(response.status))
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
    func unload(_ name: ModelName, logger: Logger) async throws {
        try await retry.run { _ in
            let response: HTTPResponse
            do {
                response = try await call(
                    "POST", "/v2/repository/models/\(name)/unload", timeout: requestTimeout, context: "unload \(name)")
            } catch {
                onCall("unload", false)
                throw error
            }
            onCall("unload", (200..<300).contains(response.status) || response.status == 404)
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
struct LoadFailure: Error, RetryClassifying, CustomStringConvertible {
    let model: ModelName
    let operation: String
    let status: Int
    /// The server's explanation: `{"error": …}` unwrapped, or plain text, truncated.
    let reason: String

    init(model: ModelName, operation: String, status: Int, body: [UInt8]) {
        self.model = model
        self.operation = operation
        self.status = status
        self.reason = Self.extractReason(body)
    }

    /// 5xx and 429 may pass; other statuses say the request itself cannot succeed.
    var isTransient: Bool { isTransientHTTPStatus(status) }

    var description: String {
        "\(operation) of model \(model) failed with status \(status)" + (reason.isEmpty ? "" : ": \(reason)")
    }

    static func extractReason(_ body: [UInt8]) -> String {
        struct Envelope: Decodable { var error: String }
        let reason =
            ((try? JSONDecoder().decode(Envelope.self, from: Data(body)))?.error
            ?? String(decoding: body, as: UTF8.self)).trimmingWhitespace()
        // Redacted before it is cut, so no secret survives as a fragment.
        let clean = SecretRedactor.shared.redact(reason)
        return clean.count > 512 ? String(clean.prefix(512)) + "…" : clean
    }
}

struct ServerUnreachable: Error, RetryClassifying, CustomStringConvertible {
    let url: String
    let operation: String
    let underlying: TransferError
    var isTransient: Bool { true }

    var timedOut: Bool {
        if case .curl(let code, _) = underlying { return code == 28 }
        return false
    }
    var description: String { "model server at \(url) unreachable for \(operation): \(underlying)" }
}

/// A load call outlived `--load-timeout`. Sending it again at once would most likely hang
/// the same way (Triton keeps a stuck model LOADING), so the model is reported failed and
/// retried only after the long backoff; its load slot is free meanwhile.
struct LoadTimedOut: Error, RetryClassifying, CustomStringConvertible {
    let model: ModelName
    let timeout: Duration
    var isTransient: Bool { false }
    var description: String {
        "load of model \(model) did not answer within \(Int(timeout.seconds)) s (--load-timeout); the server may be stuck loading it"
    }
}
