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
        help:
            "Verify downloads against the store's checksums as well as sizes (S3: stored CRC-64/NVME, CRC-32C or CRC-32, else the MD5 ETag; GCS: CRC32C); costs CPU."
    )
    var verifyChecksums = true

    @Option(help: "Attempts per file (or part) before a download fails.")
    var downloadAttempts = 5

    @Option(help: "Seconds to wait for a TCP/TLS connection.")
    var connectTimeout: Double = 10

    @Option(help: "Seconds without a received byte after which a download attempt is aborted.")
    var stallTimeout: Double = 30

    @Option(help: "PEM bundle of CAs trusted for https downloads (instead of the system store).")
    var caBundle: String?

    @Option(
        help: ArgumentHelp(
            "Largest http(s) download, and largest total an archive may expand to (a Kubernetes quantity).",
            valueName: "quantity"))
    var maxDownloadSize = "100Gi"

    @Option(help: "An archive may expand to at most this many times its own size (decompression bombs).")
    var maxArchiveRatio = 100

    @Option(
        help: ArgumentHelp(
            "Directory local sources (file://, pvc://, absolute paths) may be read from; repeatable (default: /mnt/pvc).",
            valueName: "dir"))
    var localSourceRoot: [String] = []

    func validate() throws {
        try FlagRanges.count(downloadConnections, "--download-connections", 1...1024)
        try FlagRanges.count(parallelFiles, "--parallel-files", 1...1024)
        try FlagRanges.count(partSize, "--part-size", 1...4096)
        try FlagRanges.count(multipartThreshold, "--multipart-threshold", 1...1 << 20)
        try FlagRanges.count(partsPerFile, "--parts-per-file", 1...256)
        try FlagRanges.count(downloadAttempts, "--download-attempts", 1...100)
        try FlagRanges.count(maxArchiveRatio, "--max-archive-ratio", 1...1_000_000)
        try FlagRanges.seconds(connectTimeout, "--connect-timeout", 0.1...3600)
        try FlagRanges.seconds(stallTimeout, "--stall-timeout", 0.1...3600)
        if ((try? MemoryQuantity(parsing: maxDownloadSize))?.bytes ?? 0) < 1 {
            throw ValidationError("--max-download-size must be a positive quantity such as 100Gi")
        }
        for root in localSourceRoot where !root.hasPrefix("/") {
            throw ValidationError("--local-source-root must be an absolute path")
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
        options.limits.maxDownloadBytes = (try? MemoryQuantity(parsing: maxDownloadSize))?.bytes ?? (100 << 30)
        options.limits.maxArchiveRatio = maxArchiveRatio
        options.localSourceRoots = localSourceRoot.isEmpty ? LocalStorageProvider.defaultRoots : localSourceRoot
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
