import ArgumentParser
import Logging
import ModelAgent

/// `model-agent pull <uri> <dest-dir> [<uri> <dest-dir> ...]`: KServe's
/// storage-initializer (`initializer-entrypoint <src_uri> <dest_path>`) in this binary.
struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download model artifacts once, verified, like KServe's storage-initializer.",
        discussion: "Each <uri> <dest-dir> pair is fetched in turn; on failure nothing partial is left in <dest-dir>.")

    @Argument(help: "Pairs of storage URI and destination directory.")
    var pairs: [String]

    @OptionGroup(title: "Transfers") var transfer: TransferFlags
    @OptionGroup(title: "Logging") var log: LogFlags

    func validate() throws {
        if pairs.isEmpty || pairs.count % 2 != 0 {
            throw ValidationError("expected <uri> <dest-dir> pairs, got \(pairs.count) argument(s)")
        }
    }

    func run() async throws {
        let logger = log.bootstrap()
        let environment = ProcessEnvironment.current()
        SecretRedactor.shared.registerSecrets(inEnvironment: environment)
        for index in stride(from: 0, to: pairs.count, by: 2) {
            SecretRedactor.shared.registerSecrets(inURI: pairs[index])
        }
        let options = transfer.options
        let pool = TransferPool(lanes: options.connections, settings: options.transport)
        let puller = Puller(
            router: StorageFactory.router(
                pool: pool, options: options, environment: environment, logger: logger))
        for index in stride(from: 0, to: pairs.count, by: 2) {
            let (uri, destination) = (pairs[index], pairs[index + 1])
            let started = ContinuousClock.now
            do {
                let report = try await puller.pull(uri, into: destination, logger: logger)
                let elapsed = ContinuousClock.now - started
                logger.info(
                    "Successfully copied \(Redaction.uri(uri)) to \(destination)",
                    metadata: [
                        "files": .stringConvertible(report.files), "bytes": .stringConvertible(report.bytes),
                        "duration_ms": .stringConvertible(elapsed.milliseconds), "checks": "\(report.checks)",
                    ])
            } catch {
                logger.error("Failed to download \(Redaction.uri(uri)) to \(destination): \(error)")
                writeStandardError("model-agent pull: \(SecretRedactor.shared.redact("\(error)"))\n")
                await pool.shutdown()
                throw ExitCode(ExitStatus.failure)
            }
        }
        await pool.shutdown()
    }
}
