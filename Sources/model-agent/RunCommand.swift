import ArgumentParser
import Dispatch
import Logging
import ModelAgent

#if canImport(Glibc)
    import Glibc
#endif

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

    @Option(help: "Model server kind: auto (from GET /v2), triton, mlserver, kserve or generic.")
    var serverFlavor: String = "auto"

    @Option(help: "Port of the agent's status endpoints (/v1/models, /readyz, /livez, /metrics); 0 picks a free one.")
    var port = 9081

    @Option(help: "Address the status endpoints listen on.")
    var bindAddress = "0.0.0.0"

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

    @OptionGroup(title: "Transfers") var transfer: TransferFlags
    @OptionGroup(title: "Logging") var log: LogFlags

    func validate() throws {
        func positive(_ value: Int, _ flag: String) throws {
            if value < 1 { throw ValidationError("\(flag) must be at least 1") }
        }
        try positive(maxConcurrentDownloads, "--max-concurrent-downloads")
        try positive(maxConcurrentLoads, "--max-concurrent-loads")
        if !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
        if !(1...65535).contains(componentPort) {
            throw ValidationError("--component-port must be between 1 and 65535")
        }
        for (value, flag) in [
            (loadTimeout, "--load-timeout"),
            (requestTimeout, "--request-timeout"), (retryInitialDelay, "--retry-initial-delay"),
            (retryMaxDelay, "--retry-max-delay"),
        ] where !(value > 0) {
            throw ValidationError("\(flag) must be a positive number of seconds")
        }
        if serverFlavor != "auto" && ServerFlavor(rawValue: serverFlavor) == nil {
            throw ValidationError("--server-flavor must be auto, triton, mlserver, kserve or generic")
        }
        if resyncInterval < 0 { throw ValidationError("--resync-interval must not be negative") }
        if let serverURL, !(serverURL.hasPrefix("http://") || serverURL.hasPrefix("https://")) {
            throw ValidationError("--server-url must start with http:// or https://")
        }
    }

    func options(environment: [String: String]) -> AgentOptions {
        var options = AgentOptions()
        options.configDir = configDir
        options.modelDir = modelDir
        options.stagingDir = stagingDir
        options.serverURL = serverURL ?? "http://127.0.0.1:\(componentPort)"
        options.serverFlavor = ServerFlavor(rawValue: serverFlavor)
        options.statusHost = bindAddress
        options.statusPort = port
        options.maxConcurrentDownloads = maxConcurrentDownloads
        options.maxConcurrentLoads = maxConcurrentLoads
        options.resyncInterval = resyncInterval > 0 ? .seconds(resyncInterval) : nil
        options.transfer = transfer.options
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
        let agent: Agent
        do {
            agent = try await Agent.start(options: options(environment: environment), logger: logger)
        } catch {
            logger.critical("Failed to bring up agent, shutting down.", metadata: ["error": "\(error)"])
            throw ExitCode(ExitStatus.startup)
        }
        await TerminationSignal.wait()
        await agent.shutdown()
    }
}

/// Suspends until SIGTERM or SIGINT arrives.
enum TerminationSignal {
    static func wait() async {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        for await _ in stream { break }
        for source in sources { source.cancel() }
    }
}
