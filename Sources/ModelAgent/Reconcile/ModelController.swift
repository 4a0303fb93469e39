import Logging
import Synchronization

/// One model's worker: an actor on its own serial DispatchQueue that moves the model
/// from what is on disk and in the server towards the latest desired spec. New wishes
/// overwrite old ones (latest wins); a download made obsolete is cancelled.
actor ModelController {
    /// What the model server holds under this name, as far as the agent knows.
    enum Served: Equatable {
        /// Not checked since startup: files exist, the server may or may not have them.
        case unknown
        case absent
        case loaded(ModelSpec)
    }

    /// The part of the state written from outside the actor, under a lock, so that a
    /// config change is recorded synchronously and in order.
    struct Intent {
        var desired: ModelSpec?
        var generation: UInt64 = 0
        var running = false
        var stopped = false
        var recheck = false
        var passCompleted = false
        var cancelDownload: (@Sendable () -> Void)?
        var downloadTarget: ModelSpec?
        var wake: (token: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var wakeToken: UInt64 = 0
        /// The running loop; cancelled on stop so that waits on the server end at once.
        var loop: Task<Void, Never>?
    }

    nonisolated let name: ModelName
    nonisolated let intent = Mutex(Intent())
    private nonisolated let executor: QueueExecutor
    private let context: WorkerContext
    private let logger: Logger
    private let retire: @Sendable (ModelController, UInt64) -> Bool

    private var onDisk: ModelSpec?
    private var served: Served
    private var failures = 0

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    init(
        name: ModelName, disk: ModelStore.DiskState?, context: WorkerContext,
        retire: @escaping @Sendable (ModelController, UInt64) -> Bool
    ) {
        self.name = name
        self.executor = QueueExecutor(label: "model-agent.model.\(name)")
        self.context = context
        var logger = context.logger
        logger[metadataKey: "model"] = "\(name)"
        self.logger = logger
        self.retire = retire
        switch disk {
        case .complete(let spec)?:
            onDisk = spec
            served = .unknown
        case .invalidMarker?, .unmarked?:
            onDisk = nil
            served = .unknown
        case nil:
            onDisk = nil
            served = .absent
        }
    }

    // MARK: - Called from outside (under the reconciler's lock)

    /// Records the desired spec (nil: remove the model). Returns false when nothing changed.
    @discardableResult
    nonisolated func desire(_ spec: ModelSpec?) -> Bool {
        let (changed, cancel, wake) = intent.withLock {
            i -> (Bool, (@Sendable () -> Void)?, CheckedContinuation<Void, Never>?) in
            if i.generation > 0 && i.desired == spec { return (false, nil, nil) }
            i.desired = spec
            i.generation += 1
            let cancel = i.downloadTarget != spec ? i.cancelDownload : nil
            let wake = i.wake?.continuation
            i.wake = nil
            if !i.running && !i.stopped { startLoop(&i) }
            return (true, cancel, wake)
        }
        cancel?()
        wake?.resume()
        return changed
    }

    private nonisolated func startLoop(_ i: inout Intent) {
        i.running = true
        i.loop = Task { await self.run() }
    }

    /// Asks the worker to verify with the server that a loaded model is still loaded.
    nonisolated func requestRecheck() {
        intent.withLock { i in
            i.recheck = true
            if !i.running && !i.stopped { startLoop(&i) }
        }
    }

    nonisolated func stop() {
        let (cancel, wake, loop) = intent.withLock {
            i -> ((@Sendable () -> Void)?, CheckedContinuation<Void, Never>?, Task<Void, Never>?) in
            i.stopped = true
            defer { i.wake = nil }
            return (i.cancelDownload, i.wake?.continuation, i.loop)
        }
        cancel?()
        wake?.resume()
        loop?.cancel()
    }

    nonisolated var isIdle: Bool { intent.withLock { !$0.running } }
    nonisolated var hasCompletedPass: Bool { intent.withLock { $0.passCompleted } }

    // MARK: - The loop

    private func run() async {
        logger.debug("Worker is started for \(name)")
        while true {
            let (target, generation, stopped) = intent.withLock { ($0.desired, $0.generation, $0.stopped) }
            if stopped { return finish() }
            do {
                if let target {
                    try await converge(to: target)
                } else {
                    try await remove()
                }
                failures = 0
            } catch {
                if intent.withLock({ $0.stopped }) { return finish() }
                if error is CancellationError { continue }
                failures += 1
                let delay = context.failureBackoff.delay(afterAttempt: error.isTransient ? failures : failures + 3)
                report(error, target: target, retryIn: delay)
                completePass()
                await pause(for: delay, unlessChangedFrom: generation)
                continue
            }
            completePass()
            if target == nil {
                if retire(self, generation) { return }
                continue
            }
            let idle = intent.withLock { i -> Bool in
                guard i.generation == generation && !i.recheck else { return false }
                i.running = false
                return true
            }
            if idle { return }
        }
    }

    private func finish() {
        intent.withLock { $0.running = false }
    }

    private func completePass() {
        intent.withLock { $0.passCompleted = true }
    }

    private func converge(to target: ModelSpec) async throws {
        let uri = target.storageUri
        if onDisk != target {
            let staging = try await download(target)
            do {
                try await adapt(staging, for: target)
                if served != .absent { try await unloadFromServer(uri: uri) }
                let (store, name) = (context.store, name)
                let marker = try await BlockingExecutor.shared.run { try store.commit(staging, as: name, spec: target) }
                logger.info("Creating successFile \(marker)")
            } catch {
                staging.discard()
                throw error
            }
            onDisk = target
            served = .absent
            context.board.update(name, uri: uri) { $0.diskHash = target.hash }
        } else if served == .unknown {
            logger.info("Model successFile exists already for \(name)")
        }

        let recheck = intent.withLock { i -> Bool in
            defer { i.recheck = false }
            return i.recheck
        }
        if served == .unknown || (recheck && served == .loaded(target)) {
            try await context.gate.wait()
            let ready = try await context.server.isModelReady(name)
            if ready {
                if served == .unknown { logger.info("Model \(name) is already loaded in the model server") }
                served = .loaded(target)
            } else {
                if served != .unknown {
                    logger.warning("Model \(name) is no longer loaded in the model server; loading it again")
                }
                served = .absent
            }
        }
        if served != .loaded(target) {
            try await load(target)
        }
        context.board.update(name, uri: uri) {
            $0.state = .loaded
            $0.lastError = nil
            $0.failures = 0
            $0.diskHash = target.hash
        }
    }

    private func remove() async throws {
        if served != .absent {
            try await unloadFromServer(uri: onDisk?.storageUri ?? "")
        }
        if onDisk != nil || context.store.directoryExists(name) {
            let (store, name) = (context.store, name)
            try await BlockingExecutor.shared.run { try store.remove(name) }
            logger.info("Removed model dir \(context.store.path(of: name))")
        }
        onDisk = nil
        context.board.remove(name)
    }

    private func download(_ target: ModelSpec) async throws -> StagingDirectory {
        let uri = target.storageUri
        context.board.update(name, uri: uri) { $0.state = .pending }
        try await context.downloads.acquire()
        defer { context.downloads.release() }
        context.board.update(name, uri: uri) { $0.state = .downloading }
        logger.info(
            "Downloading model from \(Redaction.uri(uri))",
            metadata: ["uri": "\(Redaction.uri(uri))", "framework": "\(target.framework)"])
        let started = ContinuousClock.now
        let task = Task { [context, name, logger] in try await context.stage(name, target, logger: logger) }
        intent.withLock {
            $0.cancelDownload = { task.cancel() }
            $0.downloadTarget = target
        }
        defer {
            intent.withLock {
                $0.cancelDownload = nil
                $0.downloadTarget = nil
            }
        }
        // A newer wish may have arrived before the task was registered.
        if intent.withLock({ $0.desired != target || $0.stopped }) { task.cancel() }
        do {
            let (staging, report) = try await task.value
            let elapsed = ContinuousClock.now - started
            context.metrics.downloaded(bytes: report.bytes, duration: elapsed)
            context.board.update(name, uri: uri) {
                $0.downloads += 1
                $0.lastDownloadBytes = report.bytes
                $0.lastDownloadMilliseconds = elapsed.milliseconds
            }
            logger.info(
                "Downloaded model \(name)",
                metadata: [
                    "bytes": .stringConvertible(report.bytes), "files": .stringConvertible(report.files),
                    "duration_ms": .stringConvertible(elapsed.milliseconds),
                ])
            return staging
        } catch {
            if !(error is CancellationError) { context.metrics.downloadFailed() }
            throw error
        }
    }

    /// Shapes the staged artifact for the server (Triton's config name, MLServer's
    /// settings) before it becomes visible; the marker then covers the adapted files.
    private func adapt(_ staging: StagingDirectory, for target: ModelSpec) async throws {
        context.board.update(name, uri: target.storageUri) { $0.state = .loading }
        let flavor = try await context.gate.flavor()
        let name = self.name
        try await BlockingExecutor.shared.run { try flavor.prepare(staging, name: name, spec: target) }
    }

    private func load(_ target: ModelSpec) async throws {
        context.board.update(name, uri: target.storageUri) { $0.state = .loading }
        try await context.gate.wait()
        try await context.loads.acquire()
        defer { context.loads.release() }
        let started = ContinuousClock.now
        do {
            try await context.server.load(name, logger: logger)
        } catch let failure as LoadFailure {
            logger.error("Failed to load model \(name) with status [\(failure.status)] and resp:\(failure.reason)")
            throw failure
        }
        served = .loaded(target)
        context.board.update(name, uri: target.storageUri) { $0.loads += 1 }
        logger.info(
            "Successfully loaded model \(name)",
            metadata: ["duration_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
    }

    private func unloadFromServer(uri: String) async throws {
        context.board.update(name, uri: uri) { $0.state = .unloading }
        logger.info("unloading model \(name)")
        try await context.gate.wait()
        try await context.server.unload(name, logger: logger)
        served = .absent
        context.board.update(name, uri: uri) { $0.unloads += 1 }
        logger.info("Successfully unloaded model \(name)")
    }

    private func report(_ error: any Error, target: ModelSpec?, retryIn delay: Duration) {
        let uri = target?.storageUri ?? onDisk?.storageUri ?? ""
        context.board.update(name, uri: uri) {
            $0.state = .failed
            $0.lastError = "\(error)"
            $0.failures = failures
        }
        logger.error(
            "Model \(name) failed: \(error)",
            metadata: [
                "attempt": .stringConvertible(failures), "retry_in_ms": .stringConvertible(delay.milliseconds),
                "transient": .stringConvertible(error.isTransient),
            ])
    }

    /// Sleeps for `delay`, or less if a new wish arrives or the agent stops.
    private func pause(for delay: Duration, unlessChangedFrom generation: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let token = intent.withLock { i -> UInt64? in
                if i.generation != generation || i.stopped { return nil }
                i.wakeToken += 1
                i.wake = (i.wakeToken, continuation)
                return i.wakeToken
            }
            guard let token else { return continuation.resume() }
            Task {
                try? await Task.sleep(for: delay)
                let waiting = self.intent.withLock { i -> CheckedContinuation<Void, Never>? in
                    guard let wake = i.wake, wake.token == token else { return nil }
                    i.wake = nil
                    return wake.continuation
                }
                waiting?.resume()
            }
        }
    }
}
