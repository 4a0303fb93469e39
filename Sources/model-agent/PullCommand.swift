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

    @Option(help: "Connections used for the transfer.")
    var downloadConnections = 16

    @Option(help: "Attempts per file before giving up.")
    var downloadAttempts = 5

    @Option(help: "Files fetched at once.")
    var parallelFiles = 16

    @Option(help: "Size in MiB of the ranged parts large files are fetched in.")
    var partSize = 16

    @Option(help: "Files of at least this many MiB are fetched as parallel ranged parts.")
    var multipartThreshold = 64

    @Option(help: "Ranged parts of one file fetched at once.")
    var partsPerFile = 6

    @Option(
        help: "Verify downloads against the store's checksums (S3 MD5 ETags, GCS CRC32C) as well as sizes; costs CPU.")
    var verifyChecksums = true

    @Option(help: "PEM bundle of CAs trusted for https downloads.")
    var caBundle: String?

    @Option(help: "Log line format: json or text.")
    var logFormat: LogFormat = .json

    @Option(help: "Lowest level logged.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if pairs.isEmpty || pairs.count % 2 != 0 {
            throw ValidationError("expected <uri> <dest-dir> pairs, got \(pairs.count) argument(s)")
        }
        if downloadConnections < 1 || downloadAttempts < 1 || parallelFiles < 1 || partSize < 1
            || multipartThreshold < 1 || partsPerFile < 1
        {
            throw ValidationError(
                "--download-connections, --download-attempts, --parallel-files, --part-size, --multipart-threshold and --parts-per-file must be at least 1"
            )
        }
    }

    func run() async throws {
        let logger = LoggingSetup.bootstrap(format: logFormat, level: logLevel)
        var options = TransferOptions()
        options.connections = downloadConnections
        options.retry.maxAttempts = downloadAttempts
        options.parallelFiles = parallelFiles
        options.partSize = Int64(partSize) << 20
        options.multipartThreshold = Int64(multipartThreshold) << 20
        options.verifyChecksums = verifyChecksums
        options.partsPerFile = partsPerFile
        options.transport.caBundle = caBundle
        let pool = TransferPool(lanes: options.connections, settings: options.transport)
        let puller = Puller(
            router: StorageFactory.router(
                pool: pool, options: options, environment: ProcessEnvironment.current(), logger: logger))
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
                        "duration_ms": .stringConvertible(
                            Int(elapsed.components.seconds * 1000)
                                + Int(elapsed.components.attoseconds / 1_000_000_000_000_000)),
                    ])
            } catch {
                logger.error("Failed to download \(Redaction.uri(uri)) to \(destination): \(error)")
                writeStandardError("model-agent pull: \(error)\n")
                await pool.shutdown()
                throw ExitCode(ExitStatus.failure)
            }
        }
        await pool.shutdown()
    }
}
