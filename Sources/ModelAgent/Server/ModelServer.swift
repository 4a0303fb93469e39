import Logging

/// What the agent asks of the co-located model server. `ModelServerClient` speaks it over
/// the V2 API; tests of the reconciler use an in-memory server instead of a process.
protocol ModelServer: Sendable {
    /// For log lines ("the model server at …").
    var baseURL: String { get }
    /// True when `GET <path>` answers 200.
    func probe(_ path: String) async -> Bool
    /// The server's self-description (`GET /v2`), from which its flavour is learnt.
    func metadata() async -> ModelServerClient.Metadata
    func isModelReady(_ name: ModelName) async throws -> Bool
    func load(_ name: ModelName, logger: Logger) async throws
    /// Unloading a model the server does not know counts as done.
    func unload(_ name: ModelName, logger: Logger) async throws
}

extension ModelServerClient: ModelServer {}
