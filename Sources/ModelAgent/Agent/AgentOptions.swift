/// Everything the agent can be told, with the defaults a KServe pod expects.
public struct AgentOptions: Sendable {
    public var configDir = "/mnt/configs"
    public var modelDir = "/mnt/models"
    /// Defaults to `<modelDir>/.staging`, which model servers do not scan.
    public var stagingDir: String?
    public var serverURL = "http://127.0.0.1:8080"
    /// Nil: detect from `GET /v2`.
    public var serverFlavor: ServerFlavor?
    public var statusHost = "0.0.0.0"
    public var statusPort = 9081
    /// Connections clients may hold on the agent's port, and how long one may idle.
    public var connectionLimits = ConnectionGuard.Limits()
    public var maxConcurrentDownloads = 4
    public var maxConcurrentLoads = 2
    /// Periodic re-read of models.json and re-check of the server; nil disables.
    public var resyncInterval: Duration? = .seconds(60)
    public var configDebounce: Duration = .milliseconds(200)
    public var transfer = TransferOptions()
    public var loadTimeout: Duration = .seconds(600)
    public var requestTimeout: Duration = .seconds(30)
    /// Backoff between failed attempts of one model.
    public var failureBackoff = RetryPolicy(maxAttempts: .max, initialDelay: .seconds(1), maxDelay: .seconds(300))
    /// Retries of one load/unload call on connection errors, 5xx and 429.
    public var serverRetry = RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(500), maxDelay: .seconds(10))
    public var environment: [String: String] = [:]

    public init() {}
}

/// Transfer engine knobs, shared by the sidecar and `pull`.
public struct TransferOptions: Sendable {
    /// Connections (and threads) that move bytes, across all models.
    public var connections = 16
    /// Files fetched at once within one model.
    public var parallelFiles = 16
    /// Size of the ranged parts large files are fetched in.
    public var partSize: Int64 = 16 << 20
    /// Files at least this big (when their size is listed) are fetched in parts.
    public var multipartThreshold: Int64 = 64 << 20
    /// Ranged parts of one file in flight at once.
    public var partsPerFile = 6
    /// Check content against the store's checksum (S3 MD5 ETags, GCS CRC32C) besides size.
    public var verifyChecksums = true
    public var transport = TransportSettings()
    /// Attempts per file (or part) before the model's download counts as failed.
    public var retry = RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(500), maxDelay: .seconds(30))
    /// Bounds on http(s) bodies and archive expansion.
    public var limits = DownloadLimits()
    /// Directories local sources (`file://`, `pvc://`, absolute paths) may be read from.
    public var localSourceRoots = LocalStorageProvider.defaultRoots

    public init() {}
}
