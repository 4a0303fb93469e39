import ArgumentParser
import Logging
import ModelAgent

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the sidecar (the default; KServe's agent arguments are accepted as they are).")

    @Flag(help: "Accepted for compatibility with KServe's agent; the puller always runs.")
    var enablePuller = false

    @Option(help: "Directory holding models.json (the mounted ConfigMap).")
    var configDir = "/mnt/configs"

    @Option(help: "Directory shared with the model server; each model lands in <model-dir>/<name>.")
    var modelDir = "/mnt/models"

    @Option(help: "Port of the model server in the pod; used when --server-url is not given.")
    var componentPort = 8080

    @Option(help: "Base URL of the model server's V2 API (default: http://127.0.0.1:<component-port>).")
    var serverURL: String?

    @Option(
        name: .customLong("h2c-server-url"),
        help:
            "Where --port sends HTTP/2 (h2c) requests such as gRPC, as h2c; e.g. MLServer's or Triton's gRPC port (default: --server-url)."
    )
    var h2cServerURL: String?

    @Option(help: "Model server kind: auto (from GET /v2), triton, mlserver, kserve or generic.")
    var serverFlavor: String = "auto"

    @Option(
        help:
            "Port that proxies inference requests to the model server and answers probes (KServe's agent port); 0 picks a free one."
    )
    var port = 9081

    @Option(help: "Port of the agent's own endpoints (/v1/models, /metrics, /readyz, /livez); 0 picks a free one.")
    var adminPort = 9082

    @Option(help: "Address both ports listen on.")
    var bindAddress = "0.0.0.0"

    @Option(help: "Connections clients may hold open on --port; the longest idle one makes room for a new one.")
    var maxConnections = 1024

    @Option(
        help:
            "Seconds --port keeps proxying after SIGTERM (health checks fail meanwhile) once no new request arrives; 0 closes at once."
    )
    var drainTimeout: Double = 30

    @Option(
        help:
            "Seconds a connection may take to deliver a request head (on the admin port, also to complete one request, and to idle between requests; the proxied port lets a kept-alive connection idle 3 minutes, as KServe's agent does)."
    )
    var headerTimeout: Double = 30

    @Option(
        help: "Where downloads are assembled; must be on the model dir's filesystem (default: <model-dir>/.staging).")
    var stagingDir: String?

    @Option(help: "Models downloading at once.")
    var maxConcurrentDownloads = 4

    @Option(help: "Load calls to the model server at once.")
    var maxConcurrentLoads = 2

    @Option(help: "Seconds between periodic re-reads of models.json and re-checks of the server; 0 disables.")
    var resyncInterval: Double = 60

    @Option(help: "Seconds a load call may take.")
    var loadTimeout: Double = 600

    @Option(help: "Seconds for readiness and unload calls.")
    var requestTimeout: Double = 30

    @Option(help: "Seconds before the first retry of a failed model; doubles per failure.")
    var retryInitialDelay: Double = 1

    @Option(help: "Upper bound, in seconds, of the delay between retries of a failed model.")
    var retryMaxDelay: Double = 300

    @OptionGroup(title: "Memory cache") var cache: CacheFlags
    @OptionGroup(title: "Transfers") var transfer: TransferFlags
    @OptionGroup(title: "Logging") var log: LogFlags

    func validate() throws {
        try FlagRanges.count(maxConcurrentDownloads, "--max-concurrent-downloads", 1...1024)
        try FlagRanges.count(maxConcurrentLoads, "--max-concurrent-loads", 1...1024)
        try FlagRanges.count(maxConnections, "--max-connections", 1...1_000_000)
        if !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
        if !(0...65535).contains(adminPort) { throw ValidationError("--admin-port must be between 0 and 65535") }
        if port != 0 && port == adminPort { throw ValidationError("--port and --admin-port must differ") }
        if drainTimeout != 0 { try FlagRanges.seconds(drainTimeout, "--drain-timeout (or 0)", 0.1...3600) }
        if !(1...65535).contains(componentPort) {
            throw ValidationError("--component-port must be between 1 and 65535")
        }
        try FlagRanges.seconds(loadTimeout, "--load-timeout", 0.1...86_400)
        try FlagRanges.seconds(requestTimeout, "--request-timeout", 0.1...3600)
        try FlagRanges.seconds(retryInitialDelay, "--retry-initial-delay", 0.01...3600)
        try FlagRanges.seconds(retryMaxDelay, "--retry-max-delay", 0.01...86_400)
        try FlagRanges.seconds(headerTimeout, "--header-timeout", 0.1...3600)
        if resyncInterval != 0 { try FlagRanges.seconds(resyncInterval, "--resync-interval (or 0)", 0.1...86_400) }
        if serverFlavor != "auto" && ServerFlavor(rawValue: serverFlavor) == nil {
            throw ValidationError("--server-flavor must be auto, triton, mlserver, kserve or generic")
        }

        if let serverURL, !(serverURL.hasPrefix("http://") || serverURL.hasPrefix("https://")) {
            throw ValidationError("--server-url must start with http:// or https://")
        }
        if let h2cServerURL, !h2cServerURL.hasPrefix("http://") {
            throw ValidationError("--h2c-server-url must start with http:// (h2c is cleartext HTTP/2)")
        }
    }

    func options(environment: [String: String]) -> AgentOptions {
        var options = AgentOptions()
        options.configDir = configDir
        options.modelDir = modelDir
        options.stagingDir = stagingDir
        options.serverURL = serverURL ?? "http://127.0.0.1:\(componentPort)"
        options.h2cServerURL = h2cServerURL
        options.serverFlavor = ServerFlavor(rawValue: serverFlavor)
        options.bindHost = bindAddress
        options.proxyPort = port
        options.adminPort = adminPort
        options.connectionLimits.maxConnections = maxConnections
        options.connectionLimits.headerTimeout = .seconds(headerTimeout)
        options.drainTimeout = .seconds(drainTimeout)
        options.maxConcurrentDownloads = maxConcurrentDownloads
        options.maxConcurrentLoads = maxConcurrentLoads
        options.resyncInterval = resyncInterval > 0 ? .seconds(resyncInterval) : nil
        options.transfer = transfer.options
        // Validated before `run`: a quantity that does not parse never gets here.
        options.cache = try? cache.options
        options.loadTimeout = .seconds(loadTimeout)
        options.requestTimeout = .seconds(requestTimeout)
        options.failureBackoff = RetryPolicy(
            maxAttempts: .max, initialDelay: .seconds(retryInitialDelay), maxDelay: .seconds(retryMaxDelay))
        options.environment = environment
        return options
    }

    func run() async throws {
        let logger = log.bootstrap()
        let environment = ProcessEnvironment.current()
        SecretRedactor.shared.registerSecrets(inEnvironment: environment)
        let signals = AgentSignals()
        let agent: Agent
        do {
            agent = try await Agent.start(options: options(environment: environment), logger: logger)
        } catch {
            logger.critical("Failed to bring up agent, shutting down.", metadata: ["error": "\(error)"])
            throw ExitCode(ExitStatus.startup)
        }
        do {
            try await agent.run(signals: signals)
        } catch {
            logger.critical("The agent stopped on an error.", metadata: ["error": "\(error)"])
            throw ExitCode(ExitStatus.failure)
        }
    }
}
