/// Everything the agent can be told, with the defaults a KServe pod expects.
package struct AgentOptions: Sendable {
    package var configDir = "/mnt/configs"
    package var modelDir = "/mnt/models"
    /// Defaults to `<modelDir>/.staging`, which model servers do not scan.
    package var stagingDir: String?
    package var serverURL = "http://127.0.0.1:8080"
    /// Where the proxied port sends HTTP/2 (h2c) requests, gRPC among them, spoken as h2c;
    /// nil: `serverURL`, as KServe's agent does (its component port then serves gRPC).
    package var h2cServerURL: String?
    /// Nil: detect from `GET /v2`.
    package var serverFlavor: ServerFlavor?
    /// Address of both ports.
    package var bindHost = "0.0.0.0"
    /// The proxied port (KServe's agent port): inference traffic and probes.
    package var proxyPort = 9081
    /// The agent's own endpoints: /v1/models, /metrics, /readyz, /livez.
    package var adminPort = 9082
    /// Connections clients may hold on the proxied port, and how long one may idle.
    /// Kept-alive connections may idle 3 minutes between requests, as on KServe's agent (a
    /// client's pool must not race the agent's close).
    package var connectionLimits: ConnectionGuard.Limits = {
        var limits = ConnectionGuard.Limits(requestTimeout: nil)
        limits.idleTimeout = .seconds(180)
        return limits
    }()
    /// After SIGTERM: how long the proxied port keeps serving after its last new request.
    package var drainTimeout: Duration = .seconds(30)
    /// The memory cache; nil (no `--memory-capacity`): every desired model is loaded.
    package var cache: CacheOptions?
    package var maxConcurrentDownloads = 4
    package var maxConcurrentLoads = 2
    /// Periodic re-read of models.json and re-check of the server; nil disables.
    package var resyncInterval: Duration? = .seconds(60)
    var configDebounce: Duration = .milliseconds(200)
    package var transfer = TransferOptions()
    package var loadTimeout: Duration = .seconds(600)
    package var requestTimeout: Duration = .seconds(30)
    /// Backoff between failed attempts of one model.
    package var failureBackoff = RetryPolicy(maxAttempts: .max, initialDelay: .seconds(1), maxDelay: .seconds(300))
    /// Retries of one load/unload call on connection errors, 5xx and 429.
    var serverRetry = RetryPolicy(maxAttempts: 4, initialDelay: .milliseconds(500), maxDelay: .seconds(10))
    package var environment: [String: String] = [:]

    package init() {}
}

/// Transfer engine knobs, shared by the sidecar and `pull`.
package struct TransferOptions: Sendable {
    /// Connections (and threads) that move bytes, across all models.
    package var connections = 16
    /// Files fetched at once within one model.
    package var parallelFiles = 16
    /// Size of the ranged parts large files are fetched in.
    package var partSize: Int64 = 16 << 20
    /// Files at least this big (when their size is listed) are fetched in parts.
    package var multipartThreshold: Int64 = 64 << 20
    /// Ranged parts of one file in flight at once.
    package var partsPerFile = 6
    /// Check content against the store's checksum (S3 MD5 ETags, GCS CRC32C) besides size.
    package var verifyChecksums = true
    package var transport = TransportSettings()
    /// Attempts per file (or part) before the model's download counts as failed.
    package var retry = RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(500), maxDelay: .seconds(30))
    /// Bounds on http(s) bodies and archive expansion.
    package var limits = DownloadLimits()
    /// Directories local sources (`file://`, `pvc://`, absolute paths) may be read from.
    package var localSourceRoots = LocalStorageProvider.defaultRoots

    package init() {}
}
