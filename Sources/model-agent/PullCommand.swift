import ArgumentParser
import Logging
import ModelAgent

#if canImport(Glibc)
    import Glibc
#endif

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
        // Caught from here on: SIGTERM or SIGINT cancels the pull, which removes what it
        // staged (a pod deleted during its init container leaves no partial model).
        let signals = AgentSignals()
        let options = transfer.options
        let pool = TransferPool(lanes: options.connections, settings: options.transport)
        let puller = Puller(
            router: StorageFactory.router(
                pool: pool, options: options, environment: environment, logger: logger))
        let pairs = self.pairs
        let signal = try await withThrowingTaskGroup(of: Int32?.self) { group in
            group.addTask {
                try await Self.pullAll(pairs, puller: puller, pool: pool, logger: logger)
                return nil
            }
            group.addTask {
                for await number in signals.stream where number != SIGHUP { return number }
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            // After a signal, wait for the cancelled pull to clean up; its error is the signal's.
            while (try? await group.next()) != nil {}
            return first
        }
        await pool.shutdown()
        if let signal {
            logger.error("Pull stopped by signal \(signal); nothing partial is left")
            throw ExitCode(128 + signal)
        }
    }

    private static func pullAll(_ pairs: [String], puller: Puller, pool: TransferPool, logger: Logger) async throws {
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
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                logger.error("Failed to download \(Redaction.uri(uri)) to \(destination): \(error)")
                writeStandardError("model-agent pull: \(SecretRedactor.shared.redact("\(error)"))\n")
                await pool.shutdown()
                throw ExitCode(ExitStatus.failure)
            }
        }
    }
}
