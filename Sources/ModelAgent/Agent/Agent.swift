import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The running sidecar: config watch, reconciler, proxied port, admin port and their wiring.
package final class Agent: Sendable {
    private let logger: Logger
    private let configWatch: ConfigWatchService
    private let reconciler: Reconciler
    private let cache: ModelCache?
    private let statusServer: StatusServer
    private let proxy: ProxyService
    /// The event loops of both ports and the proxy's upstream connections.
    private let eventLoops: MultiThreadedEventLoopGroup
    private let dataPool: TransferPool
    private let controlPool: TransferPool
    private let resyncInterval: Duration?
    private let loader: ConfigLoader
    /// Held for the agent's lifetime: no second agent may manage the model dir meanwhile.
    private let lock: [ModelDirLock]

    private init(
        logger: Logger, configWatch: ConfigWatchService, reconciler: Reconciler, cache: ModelCache?,
        statusServer: StatusServer,
        proxy: ProxyService, eventLoops: MultiThreadedEventLoopGroup, dataPool: TransferPool,
        controlPool: TransferPool, resyncInterval: Duration?, loader: ConfigLoader, lock: [ModelDirLock]
    ) {
        self.proxy = proxy
        self.eventLoops = eventLoops
        self.loader = loader
        self.lock = lock
        self.logger = logger
        self.configWatch = configWatch
        self.reconciler = reconciler
        self.cache = cache
        self.statusServer = statusServer
        self.dataPool = dataPool
        self.controlPool = controlPool
        self.resyncInterval = resyncInterval
    }

    /// Prepares the directories, recovers what is on disk, starts watching models.json
    /// and serving status. Returns once everything runs; models converge in the background
    /// until `run` returns.
    package static func start(options: AgentOptions, logger: Logger) async throws -> Agent {
        MemoryTrim.fixMmapThreshold(environment: options.environment)
        logger.info("Initializing model agent with config-dir \(options.configDir), model-dir \(options.modelDir)")
        // Refused before anything is touched: no lock taken, no download started.
        let upstream = URLParts(options.serverURL)
        var h2Upstream = upstream
        if let url = options.h2cServerURL {
            guard let parts = URLParts(url), parts.scheme == "http", parts.port != nil, !parts.host.isEmpty else {
                throw StartupError("--h2c-server-url must be an http:// URL with a host (h2c is cleartext HTTP/2)")
            }
            h2Upstream = parts
        }
        let readinessProbe: ReadinessProbeSpec
        do {
            readinessProbe = try ReadinessProbeSpec.parse(
                options.environment["SERVING_READINESS_PROBE"], defaultPort: upstream?.port ?? 8080)
        } catch {
            throw StartupError("\(error)")
        }
        for skipped in readinessProbe.skipped {
            logger.warning("SERVING_READINESS_PROBE: \(skipped) cannot be run by the agent; it is not checked")
        }
        let configDir = FileSystem.absolute(options.configDir)
        switch FileSystem.resolvedKind(configDir) {
        case .directory?: break
        case nil:
            do {
                try FileSystem.makeDirectories(configDir)
                logger.warning("Config dir \(configDir) did not exist; created it")
            } catch {
                throw StartupError("cannot create config dir \(configDir): \(error)")
            }
        default:
            throw StartupError("config dir \(configDir) is not a directory")
        }
        let store = ModelStore(modelDir: options.modelDir, stagingRoot: options.stagingDir)
        let lock: [ModelDirLock]
        do {
            lock = try store.lock()
            try store.prepare(logger: logger)
        } catch {
            throw StartupError("\(error)")
        }
        let disk = try store.recover(logger: logger)

        let dataPool = TransferPool(lanes: options.transfer.connections, settings: options.transfer.transport)
        var controlSettings = TransportSettings()
        controlSettings.connectTimeout = options.transfer.transport.connectTimeout
        let controlPool = TransferPool(lanes: options.maxConcurrentLoads + 4, settings: controlSettings)
        let metrics = AgentMetrics()
        var server = ModelServerClient(
            baseURL: options.serverURL, pool: controlPool, loadTimeout: options.loadTimeout,
            requestTimeout: options.requestTimeout, retry: options.serverRetry)
        server.onCall = { operation, ok in operation == "load" ? metrics.loaded(ok) : metrics.unloaded(ok) }
        let board = StatusBoard()
        let cache = options.cache.map { cacheOptions in
            ModelCache(
                options: cacheOptions, recency: RecencyFile(modelDir: store.modelDir, logger: logger),
                metrics: CacheMetrics(
                    registry: metrics.registry, capacity: cacheOptions.capacity,
                    diskCapacity: cacheOptions.diskCapacity), logger: logger)
        }
        if let cache, cache.options.diskCapacity != nil {
            // Measured before the workers start: the disk tier places them by what they take.
            cache.foundOnDisk(disk.keys.reduce(into: [:]) { $0[$1] = FileSystem.treeBytes(store.path(of: $1)) })
        }
        if let cacheOptions = options.cache {
            logger.info(
                "Memory cache on: models are loaded while they fit, others on their first request",
                metadata: [
                    "capacity_bytes": .stringConvertible(cacheOptions.capacity),
                    "default_model_memory_bytes": .stringConvertible(cacheOptions.defaultModelMemory),
                    "disk_capacity_bytes": cacheOptions.diskCapacity.map { .stringConvertible($0) } ?? "none",
                ])
        }
        let context = WorkerContext(
            store: store,
            storage: StorageFactory.router(
                pool: dataPool, options: options.transfer, environment: options.environment, logger: logger,
                protectedPaths: [configDir, store.modelDir, store.stagingRoot]),
            server: server, gate: ServerReadinessGate(client: server, flavor: options.serverFlavor, logger: logger),
            // With a disk tier, one slot is kept for downloads that requests wait for.
            downloads: AsyncLimiter(
                limit: options.maxConcurrentDownloads, reserved: options.cache?.diskCapacity == nil ? 0 : 1),
            loads: AsyncLimiter(limit: options.maxConcurrentLoads), board: board, metrics: metrics, logger: logger,
            failureBackoff: options.failureBackoff, cache: cache)
        let reconciler = Reconciler(context: context, disk: disk)
        let health = ConfigHealth()
        let loader = ConfigLoader(
            configDir: configDir, logger: logger, metrics: metrics, health: health,
            apply: { reconciler.apply($0, keep: $1, order: $2) }, unavailable: { reconciler.configUnavailable() })

        // The watch exists before the first read, so a change made while we read (or
        // while the first downloads run) produces an event and is applied.
        let watcher: ConfigWatcher
        do {
            watcher = try ConfigWatcher(directory: configDir, logger: logger)
        } catch {
            // Without a watch only the periodic resync applies changes: with none either,
            // the agent would never see one.
            guard options.resyncInterval != nil else {
                throw StartupError("cannot watch config dir \(configDir) and --resync-interval is 0: \(error)")
            }
            logger.error(
                "Cannot watch config dir \(configDir); models.json is re-read only by the periodic resync",
                metadata: ["error": "\(error)"])
            watcher = ConfigWatcher.unavailable(directory: configDir, logger: logger)
        }
        logger.info("Starting puller")
        await loader.reload(reason: "startup")

        // One set of event loops for both ports and the config watch: threads only as the
        // machine has cores.
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: min(System.coreCount, 4))
        do {
            try await watcher.start(on: eventLoops.next())
        } catch {
            // The periodic resync still applies changes: an agent that serves its models
            // beats one that refuses to start.
            logger.error(
                "Cannot watch config dir \(configDir); models.json is re-read only by the periodic resync",
                metadata: ["error": "\(error)"])
        }
        let drain = TrafficDrain()
        let traffic = ModelTraffic(registry: metrics.registry, isKnown: { board.status(of: $0) != nil })
        let prober = UserContainerProber(spec: readinessProbe, pool: controlPool, group: eventLoops)
        let healthChecker = HealthChecker(isReady: {
            guard reconciler.isReady else { return false }
            return await prober.isReady()
        })
        var adminLimits = ConnectionGuard.Limits()
        adminLimits.maxConnections = 64
        adminLimits.headerTimeout = options.connectionLimits.headerTimeout
        adminLimits.requestTimeout = options.connectionLimits.headerTimeout
        let proxyLimits = ConnectionGuard.raisingDescriptorLimit(
            fitting: options.connectionLimits, reserve: 256 + adminLimits.maxConnections, descriptorsPerConnection: 2)
        let statusServer: StatusServer
        let proxyServer: ProxyServer
        var sources = StatusSources(
            board: board, metrics: metrics, config: health, traffic: traffic,
            isReady: { reconciler.isReady && !drain.isDraining })
        sources.isDraining = { drain.isDraining }
        sources.cache = cache
        do {
            statusServer = try await StatusServer.start(
                group: eventLoops, host: options.bindHost, port: options.adminPort, sources: sources,
                limits: adminLimits, logger: logger)
        } catch {
            watcher.stop()
            try? await eventLoops.shutdownGracefully()
            throw StartupError("cannot listen on \(options.bindHost):\(options.adminPort) (admin port): \(error)")
        }
        logger.info(
            "Starting admin server",
            metadata: ["port": .stringConvertible(statusServer.port), "host": "\(options.bindHost)"])
        if upstream?.scheme != "http" {
            logger.warning(
                "The proxied port forwards to http:// model servers only; requests to it will be answered 502",
                metadata: ["server_url": "\(Redaction.uri(options.serverURL))"])
        }
        do {
            proxyServer = try await ProxyServer.start(
                group: eventLoops, host: options.bindHost, port: options.proxyPort,
                upstream: Self.plainHTTP(upstream),
                h2Upstream: Self.plainHTTP(h2Upstream),
                shared: ProxyContext(
                    target: Redaction.uri(options.serverURL),
                    h2Target: Redaction.uri(options.h2cServerURL ?? options.serverURL), drain: drain, traffic: traffic,
                    failures: UpstreamFailureLog(logger: logger), h2Failures: UpstreamFailureLog(logger: logger),
                    health: healthChecker, cache: cache, holdTimeout: options.cache?.holdTimeout ?? .zero),
                limits: proxyLimits, logger: logger)
        } catch {
            watcher.stop()
            await statusServer.stop()
            try? await eventLoops.shutdownGracefully()
            throw StartupError("cannot listen on \(options.bindHost):\(options.proxyPort): \(error)")
        }
        logger.info(
            "Starting agent http server...",
            metadata: ["port": .stringConvertible(proxyServer.port), "host": "\(options.bindHost)"])

        return Agent(
            logger: logger,
            configWatch: ConfigWatchService(
                watcher: watcher, loader: loader, debounce: options.configDebounce, logger: logger),
            reconciler: reconciler, cache: cache, statusServer: statusServer,
            proxy: ProxyService(
                server: proxyServer, drain: drain, health: healthChecker, quietPeriod: options.drainTimeout,
                logger: logger),
            eventLoops: eventLoops, dataPool: dataPool, controlPool: controlPool,
            resyncInterval: options.resyncInterval, loader: loader, lock: lock)
    }

    /// Runs until SIGTERM or SIGINT, then shuts down: one ServiceGroup owns every
    /// long-running part and the signals (SIGHUP re-reads models.json).
    package func run(signals: AgentSignals) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: StatusService(server: statusServer), serviceName: "admin-server"),
            .init(service: proxy, serviceName: "proxy"),
            .init(
                service: ReconcilerService(reconciler: reconciler, pools: [dataPool, controlPool], cache: cache),
                serviceName: "reconciler"),
            .init(service: configWatch, serviceName: "config-watch"),
        ]
        if let resyncInterval {
            services.append(
                .init(
                    service: ResyncService(interval: resyncInterval, loader: loader, reconciler: reconciler),
                    serviceName: "resync"))
        }
        services.append(
            .init(
                service: SignalService(agent: self, signals: signals, drain: proxy.drain, logger: logger),
                serviceName: "signals"))
        // The signal service returns on SIGTERM/SIGINT: the group then shuts everything down
        // in reverse order. Any other service returning early (none should) does the same.
        for index in services.indices {
            services[index].successTerminationBehavior = .gracefullyShutdownGroup
            services[index].failureTerminationBehavior = .gracefullyShutdownGroup
        }
        var groupLogger = logger
        groupLogger.logLevel = max(logger.logLevel, .info)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, logger: groupLogger))
        do {
            try await group.run()
        } catch {
            try? await eventLoops.shutdownGracefully()
            throw error
        }
        // Both ports are closed by now; what is left on the loops are connections.
        try? await eventLoops.shutdownGracefully()
        logger.info("Shutdown complete, exiting...")
    }

    /// Host and port of an http:// URL, for the proxy; anything else gives an empty host,
    /// which every proxied request then finds unreachable (502).
    private static func plainHTTP(_ url: URLParts?) -> (host: String, port: Int) {
        guard let url, url.scheme == "http" else { return ("", 0) }
        let host = url.host
        return (host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host, url.port ?? 0)
    }

    /// Re-reads models.json now and re-checks every model with the server (SIGHUP).
    func reload(reason: String) async {
        logger.info("Re-reading models.json (\(reason))")
        await loader.reload(reason: reason)
        reconciler.recheckServed()
    }

}

struct StartupError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}
