import ArgumentParser
import Logging
import ModelAgent

/// Transfer flags shared by the sidecar and `pull`.
struct TransferFlags: ParsableArguments {
    @Option(help: "Connections (and transfer threads) shared by all downloads.")
    var downloadConnections = 16

    @Option(help: "Files fetched at once within one model.")
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

    @Option(help: "Attempts per file (or part) before a download fails.")
    var downloadAttempts = 5

    @Option(help: "Seconds to wait for a TCP/TLS connection.")
    var connectTimeout: Double = 10

    @Option(help: "Seconds without a received byte after which a download attempt is aborted.")
    var stallTimeout: Double = 30

    @Option(help: "PEM bundle of CAs trusted for https downloads (instead of the system store).")
    var caBundle: String?

    func validate() throws {
        for (value, flag) in [
            (downloadConnections, "--download-connections"), (parallelFiles, "--parallel-files"),
            (partSize, "--part-size"), (multipartThreshold, "--multipart-threshold"),
            (partsPerFile, "--parts-per-file"), (downloadAttempts, "--download-attempts"),
        ] where value < 1 {
            throw ValidationError("\(flag) must be at least 1")
        }
        for (value, flag) in [(connectTimeout, "--connect-timeout"), (stallTimeout, "--stall-timeout")]
        where !(value > 0) {
            throw ValidationError("\(flag) must be a positive number of seconds")
        }
    }

    var options: TransferOptions {
        var options = TransferOptions()
        options.connections = downloadConnections
        options.parallelFiles = parallelFiles
        options.partSize = Int64(partSize) << 20
        options.multipartThreshold = Int64(multipartThreshold) << 20
        options.partsPerFile = partsPerFile
        options.verifyChecksums = verifyChecksums
        options.retry.maxAttempts = downloadAttempts
        options.transport.connectTimeout = .seconds(connectTimeout)
        options.transport.stallTimeout = .seconds(stallTimeout)
        options.transport.caBundle = caBundle
        return options
    }
}

/// Log flags shared by every command.
struct LogFlags: ParsableArguments {
    @Option(help: "Log line format: json (KServe-compatible keys) or text.")
    var logFormat: LogFormat = .json

    @Option(help: "Lowest level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func bootstrap() -> Logger {
        LoggingSetup.bootstrap(format: logFormat, level: logLevel)
    }
}
