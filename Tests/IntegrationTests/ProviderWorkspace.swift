import Logging
import TestSupport

@testable import ModelAgent

/// What every storage-provider test needs: a model store in a temporary directory, a
/// transfer pool with a short stall timeout, and a way to fetch into fresh staging.
final class ProviderWorkspace: @unchecked Sendable {
    let temp: TemporaryDirectory
    let logs: String
    let store: ModelStore
    let pool: TransferPool

    init(_ prefix: String, lanes: Int = 8) throws {
        temp = try TemporaryDirectory(prefix)
        logs = try temp.subdirectory("logs")
        store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: Logger(label: "test"))
        var settings = TransportSettings()
        settings.stallTimeout = .seconds(2)
        pool = TransferPool(lanes: lanes, settings: settings)
    }

    /// Small parts and threshold, so that a few MiB exercise the ranged path; fast retries.
    func engine(partSize: Int64 = 1 << 20, threshold: Int64 = 2 << 20, attempts: Int = 5) -> TransferEngine {
        TransferEngine(
            pool: pool,
            retry: RetryPolicy(maxAttempts: attempts, initialDelay: .milliseconds(20), maxDelay: .milliseconds(200)),
            parallelFiles: 8, partSize: partSize, multipartThreshold: threshold)
    }

    /// Fetches into new staging; on failure the staging is gone, as in the agent.
    func fetch(_ provider: any StorageProvider, _ uri: String) async throws -> (StagingDirectory, FetchReport) {
        let staging = try store.makeStaging(for: try ModelName(validating: "m"))
        do {
            let report = try await provider.fetch(
                try StorageLocation.parse(uri), into: staging, logger: Logger(label: "t"))
            return (staging, report)
        } catch {
            staging.discard()
            throw error
        }
    }

    func stop() async { await pool.shutdown() }
}
