import Logging
import Synchronization

/// One model's worker: an actor on its own serial DispatchQueue that performs the steps
/// its `ModelStateMachine` decides, towards the latest desired spec. New wishes overwrite
/// old ones (latest wins); a download made obsolete is cancelled.
actor ModelController {
    /// The part of the state written from outside the actor, under a lock, so that a
    /// config change is recorded synchronously and in order.
    struct Intent {
        var desired: ModelSpec?
        var generation: UInt64 = 0
        var running = false
        var stopped = false
        var recheck = false
        /// The memory cache changed its mind about this model: look again.
        var nudged = false
        var passCompleted = false
        /// Cancels the running download, or the wait for a download or load slot, of
        /// `downloadTarget`: a newer wish or a stop calls it.
        var cancelDownload: (@Sendable () -> Void)?
        var downloadTarget: ModelSpec?
        /// The running download was cancelled because the cache's disk tier no longer
        /// keeps the model's files: a change of wish, not a failure.
        var downloadDropped = false
        /// The running download began for a waiting request: it is not cancelled when the
        /// request gives up (a client that asks again finds it further on).
        var downloadForRequest = false
        var wake: (token: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var wakeToken: UInt64 = 0
        /// A callback of the readiness gate will start the next loop (one at a time, however
        /// often the worker parks: the resync rechecks parked models every minute).
        var parkedOnGate = false
        /// Which loop runs (or waits for its worker slot), so that an ending loop drops
        /// only its own handle.
        var loopNumber: UInt64 = 0
        /// Told when the running loop ends (shutdown waits on them).
        var loopEnded: [@Sendable () -> Void] = []
    }

    /// The latest loop's task, under a lock of its own that nothing else is taken under:
    /// the slot's grant sets it, and may come under the cache's lock (a promotion). Loops
    /// are numbered; an earlier loop's late grant or end never touches a later one's state.
    struct Loop {
        /// The latest loop started.
        var number: UInt64 = 0
        /// The latest loop granted its slot (or withdrawn from the line).
        var granted: UInt64 = 0
        /// The latest loop whose task ended (it may end before its grant stores it).
        var ended: UInt64 = 0
        /// Loop `number`'s task while it runs. Cancelled on stop so that waits on the server
        /// end at once. Dropped when the loop ends: a finished task keeps its frames' memory
        /// until its last handle goes (about 13 KiB, times the number of models).
        var task: Task<Void, Never>?
        /// Loop `number`'s place in the worker line while it waits there.
        var ticket: UInt64?
        var stopped = false
    }

    nonisolated let name: ModelName
    nonisolated let intent = Mutex(Intent())
    private nonisolated let loop = Mutex(Loop())
    private nonisolated let executor: QueueExecutor
    private nonisolated let shared: SharedWorkerContext
    private let retire: @Sendable (ModelController, UInt64) -> Bool

    private var machine: ModelStateMachine
    /// Whether this worker holds its slot of `WorkerContext.workers` now.
    private var holdsSlot = false
    /// Whether the running loop performed any step (a pass that only confirmed a settled
    /// state frees nothing worth trimming).
    private var workedThisLoop = false
    /// The files of `machine.staged`, between download and commit.
    private var staging: StagingDirectory?
    /// `staging` is not yet shaped for the server, whose kind was not known when it landed
    /// (it is, at commit).
    private var unadapted = false
    /// What the files of its last download take on disk (for the cache's disk tier; what
    /// startup finds is measured before the workers start).
    private var diskBytes: Int64?

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private nonisolated var context: WorkerContext {
        _read { yield shared.value }
    }

    /// Made for each use, not kept: a logger with metadata holds a dictionary of its own,
    /// ~200 bytes a model, and workers log rarely.
    private nonisolated var logger: Logger {
        var logger = context.logger
        logger[metadataKey: "model"] = "\(name)"
        return logger
    }

    init(
        name: ModelName, disk: ModelStore.DiskState?, context: SharedWorkerContext,
        retire: @escaping @Sendable (ModelController, UInt64) -> Bool
    ) {
        self.name = name
        self.executor = QueueExecutor(label: "model-agent.model.\(name)")
        self.shared = context
        self.retire = retire
        machine = ModelStateMachine(disk: disk)
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
        // Removed while its loop waits for a worker slot: the removal goes ahead of the
        // models queued before it (behind slow loads, it waited for all of them).
        if changed && spec == nil, let ticket = loop.withLock({ $0.ticket }) { context.workers.hasten(ticket) }
        return changed
    }

    /// Queues a new loop for a worker slot. A loop waiting for its slot has no task yet:
    /// 10,000 models added at once wait as 10,000 small closures, not tasks with frames.
    private nonisolated func startLoop(_ i: inout Intent) {
        i.running = true
        i.loopNumber += 1
        let number = i.loopNumber
        // The loop before has gone idle (`running` was false): its task is ending, and
        // nothing is left for `stop` to cancel.
        loop.withLock { l in
            l.number = number
            l.task = nil
            l.ticket = nil
        }
        let ticket = context.workers.enter(tag: name.rawValue) { [self] granted in
            // Granted: the loop runs holding the slot (and gives it back itself, also when
            // stopped meanwhile). Withdrawn (a stop): it only ends.
            let task = runLoop(number, holdingSlot: granted)
            let stopped = loop.withLock { l -> Bool in
                l.granted = max(l.granted, number)
                guard l.number == number else { return false }
                l.ticket = nil
                if l.ended < number { l.task = task }
                return l.stopped
            }
            // Stopped before its handle was stored, so `stop` could not cancel it. Not here:
            // cancelling runs the task's handlers at once, and this may be under the cache's
            // lock; the worker's own queue is under none.
            if stopped { executor.queue.async { task.cancel() } }
        }
        // `stop` cannot come meanwhile: it takes the intent lock, held here.
        loop.withLock { l in
            if l.number == number && l.granted < number { l.ticket = ticket }
        }
    }

    private nonisolated func runLoop(_ number: UInt64, holdingSlot: Bool) -> Task<Void, Never> {
        let (workers, memory) = (context.workers, context.memory)
        return Task {
            var worked = false
            if holdingSlot {
                worked = await self.run()
            } else {
                self.intent.withLock { $0.running = false }
            }
            self.loop.withLock { l in
                l.ended = max(l.ended, number)
                if l.number == number { l.task = nil }
            }
            // A newer loop may already run (started after this one went idle): its
            // callbacks are its own.
            let ended = self.intent.withLock { i -> [@Sendable () -> Void] in
                guard !i.running else { return [] }
                defer { i.loopEnded = [] }
                return i.loopEnded
            }
            for callback in ended { callback() }
            memory.workerEnded(stillRunning: workers.inUse, worked: worked)
        }
    }

    /// Asks the worker to verify with the server that a loaded model is still loaded.
    nonisolated func requestRecheck() {
        intent.withLock { i in
            i.recheck = true
            if !i.running && !i.stopped { startLoop(&i) }
        }
    }

    /// Asks the worker to take its next step again (the cache now wants the model loaded,
    /// or unloaded, or its files kept or not). A download of files no longer kept stops.
    nonisolated func nudge() {
        let cancel = intent.withLock { i -> (@Sendable () -> Void)? in
            i.nudged = true
            if !i.running && !i.stopped { startLoop(&i) }
            // Decided under the intent lock, so that a download registered meanwhile is
            // judged by the cache's latest word.
            guard let cancel = i.cancelDownload, !i.downloadForRequest, context.cache?.keepsFiles(name) == false
            else { return nil }
            i.downloadDropped = true
            return cancel
        }
        cancel?()
    }

    nonisolated func stop() {
        let (cancel, wake) = intent.withLock {
            i -> ((@Sendable () -> Void)?, CheckedContinuation<Void, Never>?) in
            i.stopped = true
            defer { i.wake = nil }
            return (i.cancelDownload, i.wake?.continuation)
        }
        let (task, ticket) = loop.withLock { l in
            l.stopped = true
            return (l.task, l.ticket)
        }
        cancel?()
        wake?.resume()
        task?.cancel()
        // A loop still waiting for its slot leaves the line and ends.
        if let ticket { context.workers.withdraw(ticket) }
    }

    nonisolated var isIdle: Bool { intent.withLock { !$0.running } }
    /// Calls `callback` when the running loop ends; false (and no call) when none runs.
    nonisolated func whenLoopEnds(_ callback: @escaping @Sendable () -> Void) -> Bool {
        intent.withLock { i in
            guard i.running else { return false }
            i.loopEnded.append(callback)
            return true
        }
    }
    nonisolated var hasCompletedPass: Bool { intent.withLock { $0.passCompleted } }

    // MARK: - The loop

    /// Runs holding a worker slot (`WorkerContext.workers`), which it gives back on
    /// every exit, and while it waits for a retry. Returns whether it
    /// performed any step.
    private func run() async -> Bool {
        holdsSlot = true
        workedThisLoop = false
        defer { releaseSlot() }
        await runSteps()
        return workedThisLoop
    }

    private func releaseSlot() {
        if holdsSlot { context.workers.release() }
        holdsSlot = false
    }

    /// Takes a slot again; throws when stopped (only `stop` cancels a loop).
    private func reacquireSlot() async throws {
        try await context.workers.acquire(tag: name.rawValue)
        holdsSlot = true
    }

    /// A step that needs the model server, taken while it is not ready: the loop parks
    /// (`park`) instead of waiting in its task.
    private struct ParkedForServer: Error {}

    /// Staged files that could not be shaped for the server (at commit, their kind being
    /// unknown when they landed): a failed download, as when shaped at once.
    private struct ShapingFailed: Error {
        let target: ModelSpec
        let cause: any Error
    }

    /// Shapes staged files that landed before the server's kind was known; parks until it is.
    private func shapeStaging(for target: ModelSpec) async throws {
        guard unadapted, let staged = staging, machine.staged == target else { return }
        guard context.gate.knownFlavor != nil else { throw ParkedForServer() }
        do {
            try await adapt(staged, for: target)
        } catch {
            (staging, unadapted) = (nil, false)
            staged.discard()
            throw ShapingFailed(target: target, cause: error)
        }
        unadapted = false
    }

    private func requireServer() throws {
        guard context.gate.isOpen else { throw ParkedForServer() }
    }

    /// Ends the loop until the model server is ready; the gate's callback starts the next
    /// one. A worker waiting there holds no task, no frames and no slot: 10,000 models at a
    /// pod start, whose server comes up after the agent, cost a closure each. False when
    /// something changed meanwhile (the loop goes on, and parks again if it must).
    private func park(_ generation: UInt64) -> Bool {
        let (parked, register) = intent.withLock { i -> (Bool, Bool) in
            guard i.generation == generation && !i.recheck && !i.nudged && !i.stopped else { return (false, false) }
            i.running = false
            defer { i.parkedOnGate = true }
            return (true, !i.parkedOnGate)
        }
        guard parked else { return false }
        // Opened meanwhile: no callback will come, so the next loop starts now.
        if register && !context.gate.whenOpen({ [weak self] in self?.gateOpened() }) { gateOpened() }
        return true
    }

    private nonisolated func gateOpened() {
        intent.withLock { $0.parkedOnGate = false }
        nudge()
    }

    private func runSteps() async {
        logger.debug("Worker is started for \(name)")
        while true {
            let (desired, generation, stopped, recheck) = intent.withLock { i in
                defer { (i.recheck, i.nudged) = (false, false) }
                return (i.desired, i.generation, i.stopped, i.recheck)
            }
            if stopped { return finish() }
            if recheck { machine.requestRecheck() }
            let placement = placement(desired)
            let action = machine.next(desired: desired, resident: placement.resident, keepFiles: placement.keepFiles)
            if case .settled(let spec) = action {
                machine.finished(action, .succeeded)
                settle(spec)
                completePass()
                if spec == nil {
                    // Retired: stopped and forgotten under the reconciler's lock.
                    if retire(self, generation) { return }
                    continue
                }
                let idle = intent.withLock { i -> Bool in
                    guard i.generation == generation && !i.recheck && !i.nudged else { return false }
                    i.running = false
                    return true
                }
                if idle { return }
                continue
            }
            do {
                workedThisLoop = true
                machine.finished(action, try await perform(action))
            } catch {
                if intent.withLock({ $0.stopped }) { return finish() }
                if error is ParkedForServer {
                    machine.finished(action, .cancelled)
                    if park(generation) { return }
                    continue
                }
                // Cancelled for a newer wish (or files the cache no longer keeps): nothing
                // learnt. Any other cancellation (a closed pool, say) is a failure like
                // another, so the worker cannot spin.
                let newerWish = intent.withLock { i -> Bool in
                    defer { i.downloadDropped = false }
                    return i.generation != generation || i.downloadDropped
                }
                if error is CancellationError && newerWish {
                    machine.finished(action, .cancelled)
                    continue
                }
                let (failed, cause) =
                    (error as? ShapingFailed).map { (ModelStateMachine.Action.download($0.target), $0.cause) }
                    ?? (action, error)
                machine.finished(failed, .failed(transient: cause.isTransient))
                if case .download = failed { context.cache?.fetchFailed(name) }
                guard case .backOff(let attempt) = machine.next(desired: desired) else { continue }
                let delay = context.failureBackoff.delay(afterAttempt: attempt)
                report(cause, target: desired, retryIn: delay)
                completePass()
                // A failing model waits without its slot: failures cannot starve the rest.
                releaseSlot()
                await pause(for: delay, unlessChangedFrom: generation)
                guard (try? await reacquireSlot()) != nil else { return finish() }
                machine.finished(.backOff(attempt: attempt), .succeeded)
            }
        }
    }

    /// Whether the model is to be loaded, and whether its files are to stay on disk; tells
    /// the cache first what this worker knows.
    private func placement(_ desired: ModelSpec?) -> (resident: Bool, keepFiles: Bool) {
        guard let cache = context.cache else { return (true, true) }
        let served: Bool?
        switch machine.served {
        case .unknown: served = nil
        case .absent: served = false
        case .loaded: served = true
        }
        cache.sync(
            name, filesReady: desired != nil && machine.onDisk == desired, served: served,
            onDisk: machine.hasFilesOnDisk, diskBytes: diskBytes)
        return (cache.wantsLoaded(name), cache.keepsFiles(name))
    }

    private func finish() {
        staging?.discard()
        staging = nil
        unadapted = false
        intent.withLock { $0.running = false }
    }

    private func completePass() {
        intent.withLock { $0.passCompleted = true }
    }

    /// Performs one step; throws when it failed (or was cancelled).
    private func perform(_ action: ModelStateMachine.Action) async throws -> ModelStateMachine.Outcome {
        switch action {
        case .download(let target):
            let staged = try await download(target)
            // A cancel that came too late to stop it must not explain a later error away.
            intent.withLock { $0.downloadDropped = false }
            context.board.update(name, uri: target.storageUri) { $0.state = .loading }
            // Shaped now if the server's kind is known, else at commit: downloads go on
            // while the server starts.
            unadapted = context.gate.knownFlavor == nil
            if !unadapted {
                do {
                    try await adapt(staged, for: target)
                } catch {
                    staged.discard()
                    throw error
                }
            }
            staging = staged
        case .discardStaging:
            staging?.discard()
            staging = nil
            unadapted = false
        case .unload:
            try requireServer()
            // Shaped before the old version goes: files the server cannot take leave it loaded.
            if let staged = machine.staged { try await shapeStaging(for: staged) }
            let desired = intent.withLock { $0.desired }
            // An eviction is called off when the model is wanted again meanwhile.
            let required = desired == nil || machine.onDisk != desired
            if let cache = context.cache, !cache.beginUnload(name, required: required) { return .cancelled }
            do {
                try await unloadFromServer(uri: desiredURI)
                context.cache?.unloadEnded(name, succeeded: true)
            } catch {
                context.cache?.unloadEnded(name, succeeded: false)
                throw error
            }
        case .commit(let target):
            guard let staged = staging else { throw StagingLost(model: name) }
            try await shapeStaging(for: target)
            staging = nil
            let (store, name) = (context.store, name)
            do {
                let measure = context.cache?.options.diskCapacity != nil
                let (marker, bytes) = try await BlockingExecutor.shared.run {
                    let marker = try store.commit(staged, as: name, spec: target)
                    return (marker, measure ? FileSystem.treeBytes(store.path(of: name)) : nil)
                }
                diskBytes = bytes
                logger.info("Creating successFile \(marker)")
            } catch {
                staged.discard()
                throw error
            }
            context.board.update(name, uri: target.storageUri) { $0.diskHash = target.hash }
        case .checkServed:
            return .served(try await checkServed())
        case .load(let target):
            try requireServer()
            // The slot first: a wait called off by a newer wish is no load for the cache.
            try await takeLoadSlot(for: target)
            defer { context.loads.release() }
            if let cache = context.cache, !cache.beginLoad(name) { return .cancelled }
            do {
                try await load(target)
                context.cache?.loadEnded(name, succeeded: true)
            } catch {
                context.cache?.loadEnded(name, succeeded: false)
                throw error
            }
        case .removeFiles:
            if context.store.directoryExists(name) {
                let (store, name) = (context.store, name)
                try await BlockingExecutor.shared.run { try store.remove(name) }
                logger.info("Removed model dir \(context.store.path(of: name))")
                // Still desired: the disk tier took its files.
                if intent.withLock({ $0.desired != nil }) { context.cache?.filesRemoved(name) }
            }
            diskBytes = nil
        case .backOff(let attempt):
            let generation = intent.withLock { $0.generation }
            await pause(for: context.failureBackoff.delay(afterAttempt: attempt), unlessChangedFrom: generation)
        case .settled:
            break
        }
        return .succeeded
    }

    /// The URI the status board files the model under: the wanted one, else what is on disk.
    private var desiredURI: String {
        intent.withLock { $0.desired?.storageUri } ?? machine.onDisk?.storageUri ?? ""
    }

    private func settle(_ spec: ModelSpec?) {
        guard let spec else { return context.board.remove(name) }
        let state: ModelState
        var problem: String?
        if machine.served == .loaded(spec) {
            state = .loaded
        } else if let reason = context.cache?.tooLargeReason(name) {
            (state, problem) = (.failed, reason)
            if context.board.status(of: name)?.lastError != reason {
                logger.error("Model \(name) cannot be loaded: \(reason)")
            }
        } else if machine.onDisk != spec {
            // Off disk (disk tier). After a failed download's backoff (Failed meanwhile) it is
            // Remote again: the next request tries again; its error stays shown.
            state = .remote
        } else {
            state = .standby
        }
        let onDisk = machine.onDisk == spec
        // A model off disk whose last download failed shows why until a download succeeds.
        let failures = machine.onDisk != spec ? machine.failures : 0
        context.board.update(name, uri: spec.storageUri) {
            $0.state = state
            if failures == 0 || problem != nil { $0.lastError = problem }
            $0.failures = failures
            $0.diskHash = onDisk ? spec.hash : nil
        }
    }

    private func checkServed() async throws -> Bool {
        try requireServer()
        let wasUnknown = machine.served == .unknown
        if wasUnknown { logger.info("Model successFile exists already for \(name)") }
        let ready = try await context.server.isModelReady(name)
        if ready && wasUnknown { logger.info("Model \(name) is already loaded in the model server") }
        if !ready && !wasUnknown {
            logger.warning("Model \(name) is no longer loaded in the model server; loading it again")
        }
        return ready
    }

    private func download(_ target: ModelSpec) async throws -> StagingDirectory {
        let uri = target.storageUri
        context.board.update(name, uri: uri) { $0.state = .pending }
        // A download a request waits for goes first (the cache promotes the model's name in
        // the line while requests wait, under its lock, whether or not the download has
        // joined the line yet), and may take the slot kept for it. The worker slot is kept
        // meanwhile: given up, every model's frames waited in this line at once (10,000
        // models peaked at 220 MiB instead of 100); a requested model's worker has a worker
        // slot kept for it instead (see `WorkerContext.workers`).
        // While it waits, files the cache no longer keeps take it out of the line too.
        let (downloads, name) = (context.downloads, name)
        try await waitInLine(for: target, forRequest: context.cache?.isInDemand(name) ?? false) {
            try await downloads.acquire(tag: name.rawValue)
        }
        defer { downloads.release() }
        context.board.update(name, uri: uri) { $0.state = .downloading }
        logger.info(
            "Downloading model from \(Redaction.uri(uri))",
            metadata: ["uri": "\(Redaction.uri(uri))", "framework": "\(target.framework)"])
        let started = ContinuousClock.now
        let task = Task { [context, name, logger] in try await context.stage(name, target, logger: logger) }
        let startedForRequest = context.cache?.isInDemand(name) ?? false
        intent.withLock {
            $0.cancelDownload = { task.cancel() }
            $0.downloadTarget = target
            $0.downloadDropped = false
            $0.downloadForRequest = startedForRequest
        }
        defer {
            intent.withLock {
                $0.cancelDownload = nil
                $0.downloadTarget = nil
                $0.downloadForRequest = false
            }
        }
        // A newer wish may have arrived before the task was registered.
        if intent.withLock({ $0.desired != target || $0.stopped }) { task.cancel() }
        if !startedForRequest && context.cache?.keepsFiles(name) == false {
            intent.withLock { $0.downloadDropped = true }
            task.cancel()
        }
        do {
            let (staging, report) = try await task.value
            let elapsed = ContinuousClock.now - started
            context.metrics.downloaded(bytes: report.bytes, duration: elapsed)
            context.board.update(name, uri: uri) {
                $0.downloads += 1
                $0.lastDownloadBytes = report.bytes
                $0.lastDownloadMilliseconds = elapsed.milliseconds
                $0.lastDownloadChecks = report.checks
            }
            logger.info(
                "Downloaded model \(name)",
                metadata: [
                    "bytes": .stringConvertible(report.bytes), "files": .stringConvertible(report.files),
                    "duration_ms": .stringConvertible(elapsed.milliseconds), "checks": "\(report.checks)",
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
        guard let flavor = context.gate.knownFlavor else { throw ParkedForServer() }
        let name = self.name
        try await BlockingExecutor.shared.run { try flavor.prepare(staging, name: name, spec: target) }
    }

    /// Waits for a load slot. A newer wish or a stop takes it out of the line, as a
    /// download's: behind loads of 2 s each, 2,000 models removed sent their loads (and
    /// unloads) for half a minute. The cache does not call it off (`forRequest`).
    private func takeLoadSlot(for target: ModelSpec) async throws {
        context.board.update(name, uri: target.storageUri) { $0.state = .loading }
        let loads = context.loads
        try await waitInLine(for: target, forRequest: true) { try await loads.acquire() }
    }

    /// Waits for a slot (`take`) in a task of its own, registered as the download of
    /// `target` is: a newer wish or a stop takes it out of the line, and so do files the
    /// cache no longer keeps unless `forRequest`. A task of its own, so that a cancel
    /// registered before it starts waiting still counts.
    private func waitInLine(
        for target: ModelSpec, forRequest: Bool, _ take: @escaping @Sendable () async throws -> Void
    ) async throws {
        let line = Task { try await take() }
        intent.withLock {
            $0.cancelDownload = { line.cancel() }
            $0.downloadTarget = target
            $0.downloadDropped = false
            $0.downloadForRequest = forRequest
        }
        if intent.withLock({ $0.desired != target || $0.stopped }) { line.cancel() }
        let queued = await line.result
        intent.withLock { i in
            (i.cancelDownload, i.downloadTarget, i.downloadForRequest) = (nil, nil, false)
        }
        try queued.get()
    }

    private func load(_ target: ModelSpec) async throws {
        context.board.update(name, uri: target.storageUri) { $0.state = .loading }
        let started = ContinuousClock.now
        do {
            try await context.server.load(name, logger: logger)
        } catch let failure as LoadFailure {
            logger.error("Failed to load model \(name) with status [\(failure.status)] and resp:\(failure.reason)")
            throw failure
        }
        context.board.update(name, uri: target.storageUri) { $0.loads += 1 }
        logger.info(
            "Successfully loaded model \(name)",
            metadata: ["duration_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
    }

    private func unloadFromServer(uri: String) async throws {
        context.board.update(name, uri: uri) { $0.state = .unloading }
        logger.info("unloading model \(name)")
        let started = ContinuousClock.now
        try await context.server.unload(name, logger: logger)
        context.board.update(name, uri: uri) { $0.unloads += 1 }
        logger.info(
            "Successfully unloaded model \(name)",
            metadata: ["duration_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
    }

    private func report(_ error: any Error, target: ModelSpec?, retryIn delay: Duration) {
        let uri = target?.storageUri ?? machine.onDisk?.storageUri ?? ""
        let failures = machine.failures
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

    /// Sleeps for `delay`, or less if a new wish arrives or the agent stops. Both waits are
    /// children of this call: whichever ends first cancels the other, so nothing outlives it.
    private func pause(for delay: Duration, unlessChangedFrom generation: UInt64) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: delay) }
            group.addTask { await self.waitForWish(after: generation) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns when the wish changes from `generation`, the worker stops, or the caller is
    /// cancelled. Registration and cancellation meet under the intent lock, so neither
    /// order loses the wake-up.
    private nonisolated func waitForWish(after generation: UInt64) async {
        let token = intent.withLock { i -> UInt64 in
            i.wakeToken += 1
            return i.wakeToken
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let registered = intent.withLock { i -> Bool in
                    if i.generation != generation || i.stopped || Task.isCancelled { return false }
                    i.wake = (token, continuation)
                    return true
                }
                if !registered { continuation.resume() }
            }
        } onCancel: {
            let waiting = intent.withLock { i -> CheckedContinuation<Void, Never>? in
                guard let wake = i.wake, wake.token == token else { return nil }
                i.wake = nil
                return wake.continuation
            }
            waiting?.resume()
        }
    }
}

/// The machine said "commit" with no staged files: a bug, reported as a failure (the files
/// are fetched again) rather than a trap.
struct StagingLost: Error, CustomStringConvertible {
    let model: ModelName
    var description: String { "internal error: the staged files of \(model) are gone; fetching them again" }
}
