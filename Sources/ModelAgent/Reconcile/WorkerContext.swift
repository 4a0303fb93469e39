import Logging

/// Everything a model's actor needs from the rest of the agent; shared by all of them.
struct WorkerContext: Sendable {
    var store: ModelStore
    var storage: StorageRouter
    var server: any ModelServer
    var gate: ServerReadinessGate
    var downloads: AsyncLimiter
    var loads: AsyncLimiter
    /// Models whose worker runs at once. A running worker's task holds its async frames
    /// (about 13 KiB at a download), also while it waits for a download slot; the others
    /// wait as a closure in this line, with no task, so 10,000 models added together do not
    /// hold 10,000 sets of frames. With the cache, one slot is kept for workers of models a
    /// request waits for (promoted by name, as their downloads are): workers queued behind
    /// hanging downloads cannot keep a requested model's worker from starting.
    var workers: AsyncLimiter
    /// Told when a worker ends, to give memory back after a burst.
    var memory = MemoryTrim()
    var board: StatusBoard
    /// The memory cache (`--memory-capacity`); nil: every desired model is loaded.
    var cache: ModelCache?
    var metrics: AgentMetrics
    var logger: Logger
    /// Backoff between failed attempts of one model (maxAttempts unused: it retries forever).
    var failureBackoff: RetryPolicy

    init(
        store: ModelStore, storage: StorageRouter, server: any ModelServer, gate: ServerReadinessGate,
        downloads: AsyncLimiter, loads: AsyncLimiter, board: StatusBoard, metrics: AgentMetrics, logger: Logger,
        failureBackoff: RetryPolicy, workers: AsyncLimiter? = nil, cache: ModelCache? = nil
    ) {
        self.cache = cache
        // Enough that every download and load slot has workers queued behind it.
        self.workers =
            workers ?? AsyncLimiter(limit: max(32, 4 * (downloads.limit + loads.limit)), reserved: cache == nil ? 0 : 1)
        self.store = store
        self.storage = storage
        self.server = server
        self.gate = gate
        self.downloads = downloads
        self.loads = loads
        self.board = board
        self.metrics = metrics
        self.logger = logger
        self.failureBackoff = failureBackoff
    }

    /// Fetches `spec` into a new staging directory, or throws having removed it.
    func stage(_ name: ModelName, _ spec: ModelSpec, logger: Logger) async throws -> (StagingDirectory, FetchReport) {
        let location = try StorageLocation.parse(spec.storageUri)
        let staging = try store.makeStaging(for: name)
        do {
            let report = try await storage.fetch(location, into: staging, logger: logger)
            return (staging, report)
        } catch {
            staging.discard()
            throw error
        }
    }
}

/// The one `WorkerContext` of a reconciler's workers: each worker holds this reference
/// rather than its own copy of every field (10,000 copies were ~2.5 MB).
final class SharedWorkerContext: Sendable {
    let value: WorkerContext

    init(_ value: WorkerContext) {
        self.value = value
    }
}
