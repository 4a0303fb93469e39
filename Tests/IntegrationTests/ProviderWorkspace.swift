import Logging
import TestSupport

@testable import ModelAgent

/// What every storage-provider test needs: a model store in a temporary directory, a
/// transfer pool, and a way to fetch into fresh staging.
final class ProviderWorkspace: @unchecked Sendable {
    let temp: TemporaryDirectory
    let logs: String
    let store: ModelStore
    let pool: TransferPool

    /// Long enough that a machine pausing under load (seen: 30 s while other tests wrote and
    /// deleted GiBs) causes no retry that a test counting requests would see; the stall
    /// tests pass a short one and stall the server for far longer.
    static let patientStallTimeout: Duration = .seconds(60)

    init(_ prefix: String, lanes: Int = 8, stallTimeout: Duration = ProviderWorkspace.patientStallTimeout) throws {
        temp = try TemporaryDirectory(prefix)
        logs = try temp.subdirectory("logs")
        store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: Logger(label: "test"))
        var settings = TransportSettings()
        settings.stallTimeout = stallTimeout
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
