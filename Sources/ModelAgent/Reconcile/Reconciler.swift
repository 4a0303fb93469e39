import Logging
import Synchronization

/// Turns desired states (from models.json) into per-model wishes. Holds one
/// `ModelController` per model that is desired, or that still has to be removed.
final class Reconciler: Sendable {
    private struct State {
        var controllers: [ModelName: ModelController] = [:]
        /// What startup found on disk, handed to a model's controller when it is created.
        var disk: [ModelName: ModelStore.DiskState]
        var configured = false
        var configAttempted = false
        var ready = false
        /// Set by shutdown: no wish, recheck or new worker after it.
        var closed = false
    }

    private let state: Mutex<State>
    private let context: WorkerContext
    private let shared: SharedWorkerContext
    private let logger: Logger

    init(context: WorkerContext, disk: [ModelName: ModelStore.DiskState]) {
        self.context = context
        shared = SharedWorkerContext(context)
        self.logger = context.logger
        state = Mutex(State(disk: disk))
        let (downloads, workers) = (context.downloads, context.workers)
        context.cache?.attach(
            wake: { [weak self] name in self?.controller(for: name)?.nudge() },
            demand: { name, waits in
                for line in [workers, downloads] {
                    if waits { line.promote(name.rawValue) } else { line.demote(name.rawValue) }
                }
            })
    }

    /// Makes `desired` the target: new models are added, changed ones replaced, missing
    /// ones removed. On the first call, models found on disk but not desired are removed.
    /// Models in `keep` (named by a refused entry) are left as they are: a marked one on
    /// disk at startup is served from its marker. `order`: the models in models.json order
    /// (the memory cache's first ranking).
    func apply(_ desired: [ModelName: ModelSpec], keep: Set<ModelName> = [], order: [ModelName] = []) {
        let effects = state.withLock { s -> ModelCache.Effects? in
            if s.closed { return nil }
            // The cache learns the models before any new worker starts: every worker finds
            // its model declared. Kept models stay as they are (or as found on disk).
            var declared = desired
            for name in keep where declared[name] == nil {
                if let spec = s.controllers[name]?.intent.withLock({ $0.desired }) {
                    declared[name] = spec
                } else if !s.configured, case .complete(let spec)? = s.disk[name] {
                    declared[name] = spec
                }
            }
            let effects = declare(declared, order: order, s)
            for name in desired.keys.sorted() {
                let spec = desired[name]!
                if let controller = s.controllers[name] {
                    if controller.desire(spec) {
                        logger.info(
                            "updating model \(name)",
                            metadata: ["model": "\(name)", "uri": "\(Redaction.uri(spec.storageUri))"])
                    }
                } else {
                    logger.info(
                        "adding model \(name)",
                        metadata: ["model": "\(name)", "uri": "\(Redaction.uri(spec.storageUri))"])
                    let controller = makeController(name, disk: s.disk.removeValue(forKey: name))
                    s.controllers[name] = controller
                    context.board.update(name, uri: spec.storageUri) { _ in }
                    controller.desire(spec)
                }
            }
            for (name, controller) in s.controllers where desired[name] == nil && !keep.contains(name) {
                if controller.desire(nil) { logger.info("removing model \(name)", metadata: ["model": "\(name)"]) }
            }
            if !s.configured {
                s.configured = true
                for (name, found) in s.disk.sorted(by: { $0.key < $1.key }) {
                    if keep.contains(name) {
                        if case .complete(let spec) = found {
                            let controller = makeController(name, disk: found)
                            s.controllers[name] = controller
                            context.board.update(name, uri: spec.storageUri) { _ in }
                            controller.desire(spec)
                        }
                        continue
                    }
                    switch found {
                    case .complete, .invalidMarker:
                        logger.info("removing model \(name)", metadata: ["model": "\(name)"])
                        let controller = makeController(name, disk: found)
                        s.controllers[name] = controller
                        controller.desire(nil)
                    case .unmarked:
                        logger.warning(
                            "Leaving directory \(context.store.path(of: name)) alone: it has no marker and is not in models.json"
                        )
                    }
                }
                s.disk = [:]
            }
            s.configAttempted = true
            return effects
        }
        // Outside the lock: the cache wakes workers through `controller(for:)`.
        effects?.carryOut()
    }

    /// Declares `models` to the cache, if any (models found on disk at startup may be held
    /// by the server: their workers ask it first). Returns what the caller carries out once
    /// the lock is released.
    private func declare(
        _ models: [ModelName: ModelSpec], order: [ModelName], _ s: State
    ) -> ModelCache.Effects? {
        let unknown = s.configured ? [] : Set(s.disk.keys)
        return context.cache?.declare(models, order: order, servedUnknown: unknown)
    }

    /// Called when models.json cannot be used before any good read: the models whose
    /// markers verify are the last good state, so they are served (loaded if the server
    /// lost them) until a usable models.json says otherwise. Readiness then waits for them.
    func configUnavailable() {
        let effects = state.withLock { s -> ModelCache.Effects? in
            if s.closed { return nil }
            var declared = s.controllers.compactMapValues { $0.intent.withLock { $0.desired } }
            if !s.configured {
                for (name, found) in s.disk where s.controllers[name] == nil {
                    if case .complete(let spec) = found { declared[name] = spec }
                }
            }
            let effects = declare(declared, order: [], s)
            if !s.configured {
                for (name, found) in s.disk.sorted(by: { $0.key < $1.key }) {
                    guard case .complete(let spec) = found, s.controllers[name] == nil else { continue }
                    logger.info(
                        "serving model \(name) from its marker until models.json can be used",
                        metadata: ["model": "\(name)", "uri": "\(Redaction.uri(spec.storageUri))"])
                    s.disk[name] = nil
                    let controller = makeController(name, disk: found)
                    s.controllers[name] = controller
                    context.board.update(name, uri: spec.storageUri) { _ in }
                    controller.desire(spec)
                }
            }
            s.configAttempted = true
            return effects
        }
        effects?.carryOut()
    }

    /// Asks every model's worker to check that the server still has it loaded (the
    /// model server may have restarted and lost it).
    func recheckServed() {
        let controllers = state.withLock { $0.closed ? [] : Array($0.controllers.values) }
        for controller in controllers { controller.requestRecheck() }
    }

    /// True once models.json was read and every model then known has finished its first
    /// attempt (loaded, removed or failed). Stays true afterwards: later config changes
    /// do not take the pod out of service.
    var isReady: Bool {
        state.withLock { s in
            if s.ready { return true }
            guard s.configAttempted else { return false }
            if s.controllers.values.allSatisfy(\.hasCompletedPass) { s.ready = true }
            return s.ready
        }
    }

    /// Stops every worker (in-flight downloads are cancelled and their staging removed)
    /// and waits, up to `timeout`, for their loops to end. Closes the context's readiness
    /// gate for good: the context is not for another reconciler afterwards.
    /// Returns whether every loop ended in time.
    @discardableResult
    func shutdown(timeout: Duration) async -> Bool {
        // Closed and stopped under the lock: a wish applied concurrently either reached a
        // worker stopped here or is refused.
        let controllers = state.withLock { s -> [ModelController] in
            s.closed = true
            let all = Array(s.controllers.values)
            for controller in all { controller.stop() }
            return all
        }
        context.gate.close()
        let (ended, signal) = AsyncStream<Void>.makeStream()
        // One count per running loop, plus one held while registering, so that loops ending
        // meanwhile cannot finish the stream early.
        let running = Mutex(1)
        let release: @Sendable () -> Void = {
            if running.withLock({ count -> Bool in
                count -= 1
                return count == 0
            }) {
                signal.finish()
            }
        }
        for controller in controllers {
            running.withLock { $0 += 1 }
            if !controller.whenLoopEnds(release) { release() }
        }
        release()
        // Either the last loop ends (the stream finishes) or the timeout passes; the loser is
        // cancelled (a cancelled stream iteration ends at once).
        let stopped = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in ended {}
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !stopped { logger.warning("Some model workers did not stop within \(timeout); exiting anyway") }
        return stopped
    }

    /// The worker of `name`, if any (tests hold it weakly to see that nothing outlives it).
    func controller(for name: ModelName) -> ModelController? {
        state.withLock { $0.controllers[name] }
    }

    private func makeController(_ name: ModelName, disk: ModelStore.DiskState?) -> ModelController {
        ModelController(name: name, disk: disk, context: shared) { [weak self] controller, generation in
            self?.retire(controller, generation: generation) ?? true
        }
    }

    /// Forgets a controller whose model is gone, unless a new wish arrived meanwhile.
    private func retire(_ controller: ModelController, generation: UInt64) -> Bool {
        state.withLock { s in
            let current = s.controllers[controller.name] === controller
            let done = controller.intent.withLock { i -> Bool in
                guard i.generation == generation && i.desired == nil else { return false }
                i.running = false
                // A late recheck or wish must not restart it: a new worker takes the name.
                i.stopped = true
                return true
            }
            if done && current {
                s.controllers[controller.name] = nil
                s.controllers.releaseSpareCapacity()
            }
            return done
        }
    }
}
