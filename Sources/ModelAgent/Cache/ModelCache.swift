import Logging
import Synchronization

/// The memory cache (`--memory-capacity`): the models' workers ask it whether to load or
/// unload, the proxy asks it whether a request may go to the server now or must wait for
/// its model's load. Decisions come from `CacheBook` under one lock; what they set off
/// (waking workers, answering waiting requests, logs, metrics) happens after the lock.
final class ModelCache: Sendable {
    /// Identifies one admitted or held request; given back to `finished` exactly once.
    struct Ticket: Sendable, Equatable {
        let model: ModelName
        let id: UInt64
    }

    /// How a held request's wait ended.
    enum HeldOutcome: Sendable, Equatable {
        /// Its model is loaded: send it on.
        case ready
        /// Answer it 503 with `reason` (and `Retry-After` when `retry`).
        case refused(reason: String, retry: Bool)
    }

    enum Admission: Sendable {
        case admitted(Ticket)
        /// `whenHeldEnds` is called at most once, from any thread, possibly after the ticket
        /// was finished (a timeout and a release can cross): callers check it is still theirs.
        case held(Ticket)
        case refused(reason: String, retry: Bool)
        case unmanaged
    }

    /// What /v1/models shows for a model.
    struct Figures: Sendable, Equatable {
        var memoryBytes: Int64
        var tooLarge: Bool
        var lastUsed: Double?
        var hits = 0
        var misses = 0
        var coldLoads = 0
        var evictions = 0
        var lastColdLoadMilliseconds: Int?
        /// Disk tier only: whether its files are on disk, what they took when last
        /// measured, and how often they left the disk for others.
        var onDisk: Bool?
        var diskBytes: Int64?
        var diskEvictions = 0
    }

    private struct Waiter {
        let id: UInt64
        let answer: @Sendable (HeldOutcome) -> Void
    }

    private struct State {
        var book: CacheBook
        var waiters: [ModelName: [Waiter]] = [:]
        var figures: [ModelName: Figures] = [:]
        /// When each model's oldest waiting request arrived (cold-load latency).
        var waitingSince: [ModelName: ContinuousClock.Instant] = [:]
        var nextTicket: UInt64 = 0
        var wake: (@Sendable (ModelName) -> Void)?
        var demand: (@Sendable (ModelName, _ waits: Bool) -> Void)?
        var remembered: [ModelName]
        /// What the model directories found at startup take on disk (disk tier).
        var foundOnDisk: [ModelName: Int64] = [:]
        /// The workers have stopped: no load will come, so no request is held.
        var closed = false

        func figures(_ name: ModelName) -> Figures {
            if let known = figures[name] { return known }
            let entry = book.entries[name]
            return Figures(memoryBytes: entry?.size ?? 0, tooLarge: entry?.isTooLarge ?? false)
        }

        mutating func count(_ name: ModelName, _ change: (inout Figures) -> Void) {
            var updated = figures(name)
            change(&updated)
            figures[name] = updated
        }
    }

    /// What to do once the lock is released.
    struct Effects: Sendable {
        fileprivate var wake: [ModelName] = []
        fileprivate var answers: [(@Sendable (HeldOutcome) -> Void, HeldOutcome)] = []
        fileprivate var evicted: [(CacheBook.Eviction, size: Int64, lastUsed: Double?)] = []
        fileprivate var coldLoadsStarted: [(ModelName, waiting: Int)] = []
        fileprivate var owedLoadsStarted: [ModelName] = []
        fileprivate var coldLoaded: [(ModelName, Duration)] = []
        fileprivate var fetches: [(ModelName, waiting: Int)] = []
        fileprivate var wakeWorker: (@Sendable (ModelName) -> Void)?
        fileprivate var cache: ModelCache?

        /// Carries out what a call decided (wakes workers, answers waiting requests, logs).
        func carryOut() { cache?.carryOut(self) }
    }

    let options: CacheOptions
    private let state: Mutex<State>
    private let metrics: CacheMetrics
    private let recency: RecencyFile
    private let logger: Logger

    init(options: CacheOptions, recency: RecencyFile, metrics: CacheMetrics, logger: Logger) {
        self.options = options
        self.recency = recency
        self.metrics = metrics
        self.logger = logger
        state = Mutex(
            State(
                book: CacheBook(
                    capacity: options.capacity, maxHeld: options.maxHeldRequests, diskCapacity: options.diskCapacity),
                remembered: recency.read()))
    }

    /// What the model directories found at startup take on disk, before the first
    /// declaration (the disk tier places them by what they take, not by a guess).
    func foundOnDisk(_ sizes: [ModelName: Int64]) {
        state.withLock { $0.foundOnDisk = sizes }
    }

    /// The worker of `name` removed its files because the disk tier no longer keeps them.
    func filesRemoved(_ name: ModelName) {
        let (bytes, lastUsed) = state.withLock { s -> (Int64?, Double?) in
            s.count(name) { $0.diskEvictions += 1 }
            return (s.book.entries[name]?.diskBytes, s.figures[name]?.lastUsed)
        }
        metrics.leftDisk(name)
        var metadata: Logger.Metadata = [
            "model": "\(name)", "reason": "least recently used Standby model past --disk-capacity",
        ]
        if let bytes { metadata["disk_bytes"] = .stringConvertible(bytes) }
        if let lastUsed { metadata["last_used"] = .stringConvertible(format3(lastUsed)) }
        logger.info("Removed model \(name) from disk", metadata: metadata)
    }

    /// Sets how the cache wakes a model's worker (once the workers exist), and what it
    /// calls when a request starts waiting for a model (`waits` true: its download, if
    /// queued, goes first) and when the last one waiting has gone (false: it goes back in
    /// line, so that requests that gave up do not keep others' downloads waiting). `demand`
    /// is called under the cache's lock, so that a start and an end of waiting cannot
    /// cross: it must not call back into the cache (it takes only the download limiter's
    /// lock, which calls nothing out while held).
    func attach(
        wake: @escaping @Sendable (ModelName) -> Void,
        demand: @escaping @Sendable (ModelName, _ waits: Bool) -> Void = { _, _ in }
    ) {
        state.withLock {
            $0.wake = wake
            $0.demand = demand
        }
    }

    // MARK: - Configuration

    /// Sets the desired models. `order`: models.json order, which ranks models the cache
    /// has no remembered recency for (earlier is more recent). `servedUnknown`: models the
    /// server may already hold (found on disk at startup). Every new model's worker is woken
    /// to report what it knows, even if it had already gone idle. Returns what follows, to
    /// be carried out by the caller (declared under the reconciler's lock, before any new
    /// worker starts, so none finds its model unknown; workers are woken after that lock).
    func declare(
        _ desired: [ModelName: ModelSpec], order: [ModelName], servedUnknown: Set<ModelName> = []
    ) -> Effects {
        var added: [ModelName] = []
        var effects = decide { s in
            var ranked: [(name: ModelName, size: Int64)] = []
            var placed = Set<ModelName>()
            for name in s.remembered + order + desired.keys.sorted() {
                guard let spec = desired[name], placed.insert(name).inserted else { continue }
                ranked.append((name, options.size(of: spec)))
            }
            // The remembered order ranks models once, at the first declaration.
            s.remembered = []
            added = ranked.map(\.name).filter { s.book.entries[$0] == nil }
            s.book.declare(ranked, servedUnknown: servedUnknown, diskBytes: s.foundOnDisk)
            s.foundOnDisk = [:]
            for name in s.figures.keys where s.book.entries[name] == nil { s.figures[name] = nil }
            // Requests waiting for a model that left models.json go on (the server answers).
            var answers: [(@Sendable (HeldOutcome) -> Void, HeldOutcome)] = []
            for name in Array(s.waiters.keys) where s.book.entries[name]?.declared != true {
                s.book.heldAnswered(name)
                answers += Self.answerAll(&s, name, .ready)
            }
            return answers
        }
        effects.wake += added
        effects.wakeWorker = state.withLock { $0.wake }
        return effects
    }

    // MARK: - Requests (from the proxy's event loops)

    /// Whether a request for `name` may go to the server now. A held request is answered
    /// through `whenHeldEnds`; every admitted or held request's ticket goes back to
    /// `finished` when the request ends, whatever happened to it.
    func admit(_ name: ModelName, whenHeldEnds: @escaping @Sendable (HeldOutcome) -> Void) -> Admission {
        var admission = Admission.unmanaged
        perform { s in
            if s.closed, let entry = s.book.entries[name], entry.declared, !entry.isServing {
                admission = .refused(reason: "model \(name) is not loaded and the agent is shutting down", retry: true)
                return nil
            }
            switch s.book.admit(name) {
            case .unmanaged:
                return []
            case .refused(let refusal):
                admission = .refused(reason: Self.describe(refusal, name), retry: Self.isRetryable(refusal))
                return []
            case .admitted:
                s.nextTicket += 1
                admission = .admitted(Ticket(model: name, id: s.nextTicket))
                s.count(name) {
                    $0.hits += 1
                    $0.lastUsed = wallClockSeconds()
                }
                return nil  // nothing to rebalance: a hit changes only the recency
            case .held:
                s.nextTicket += 1
                let ticket = Ticket(model: name, id: s.nextTicket)
                admission = .held(ticket)
                s.waiters[name, default: []].append(Waiter(id: ticket.id, answer: whenHeldEnds))
                if s.waiters[name]?.count == 1 { s.demand?(name, true) }
                if s.waitingSince[name] == nil { s.waitingSince[name] = .now }
                s.count(name) {
                    $0.misses += 1
                    $0.lastUsed = wallClockSeconds()
                }
                return []
            }
        }
        switch admission {
        case .admitted: metrics.hit(name)
        case .held: metrics.miss(name)
        case .refused, .unmanaged: break
        }
        return admission
    }

    /// The request of `ticket` ended (answered, failed, or its client left).
    func finished(_ ticket: Ticket) {
        perform { s in
            var wasHeld = false
            if let index = s.waiters[ticket.model]?.firstIndex(where: { $0.id == ticket.id }) {
                s.waiters[ticket.model]?.remove(at: index)
                if s.waiters[ticket.model]?.isEmpty == true {
                    s.waiters[ticket.model] = nil
                    s.waitingSince[ticket.model] = nil
                    s.demand?(ticket.model, false)
                }
                wasHeld = true
            }
            s.book.finished(ticket.model, wasHeld: wasHeld)
            // A request's end matters to requests waiting for memory it pinned, to a request
            // that gave up waiting (its load may be owed, and the fill no longer waits for
            // it), and to the disk tier when it was the last one keeping a model's files.
            if !s.waiters.isEmpty || wasHeld { return [] }
            guard s.book.diskCapacity != nil, let entry = s.book.entries[ticket.model] else { return nil }
            return entry.pins == 0 && !entry.wanted ? [] : nil
        }
    }

    // MARK: - Reports from the models' workers

    /// Whether the worker of `name` is to have it loaded. False for a model not (yet)
    /// declared: its declaration wakes the worker if the cache wants it.
    func wantsLoaded(_ name: ModelName) -> Bool {
        state.withLock { $0.book.wantsLoaded(name) } ?? false
    }

    /// Why `name` can never be loaded, if so (for the log and /v1/models).
    func tooLargeReason(_ name: ModelName) -> String? {
        state.withLock { s in
            guard let entry = s.book.entries[name], entry.isTooLarge else { return nil }
            return
                "model \(name) needs \(entry.size) bytes of memory, more than the whole --memory-capacity (\(s.book.capacity) bytes)"
        }
    }

    /// Whether the worker of `name` is to keep its files on disk (always, without a disk
    /// tier). True for a model not declared: nothing is deleted on a guess.
    func keepsFiles(_ name: ModelName) -> Bool {
        state.withLock { $0.book.keepsFiles(name) } ?? true
    }

    /// What the worker of `name` knows at the start of each step (see `CacheBook.sync`).
    func sync(_ name: ModelName, filesReady: Bool, served: Bool?, onDisk: Bool, diskBytes: Int64?) {
        perform { s in
            // Most steps change nothing the cache knows: no decision is made for them.
            s.book.sync(name, filesReady: filesReady, served: served, onDisk: onDisk, diskBytes: diskBytes) ? [] : nil
        }
    }

    /// Whether a request waits for `name` (to be loaded, or downloaded first).
    func isInDemand(_ name: ModelName) -> Bool {
        state.withLock { ($0.book.entries[name]?.held ?? 0) > 0 }
    }

    /// A download of `name` failed: if nothing of it is served, its waiting requests are
    /// refused, and later ones too until its worker tries again (as for a failed load).
    func fetchFailed(_ name: ModelName) {
        perform { s in
            guard s.book.fetchFailed(name), s.waiters[name] != nil else { return [] }
            s.book.heldAnswered(name)
            return Self.answerAll(&s, name, .refused(reason: "model \(name) could not be loaded", retry: true))
        }
    }

    func beginLoad(_ name: ModelName) -> Bool {
        var allowed = true
        perform { s in
            allowed = s.book.beginLoad(name)
            return nil
        }
        return allowed
    }

    /// A failed load's waiting requests are refused. They are told no more than that: the
    /// proxied port serves every client of the service, and the server's reason may name
    /// paths (the log has it).
    func loadEnded(_ name: ModelName, succeeded: Bool) {
        perform { s in
            s.book.loadEnded(name, succeeded: succeeded)
            guard !succeeded, s.waiters[name] != nil else { return [] }
            s.book.heldAnswered(name)
            return Self.answerAll(&s, name, .refused(reason: "model \(name) could not be loaded", retry: true))
        }
    }

    func beginUnload(_ name: ModelName, required: Bool) -> Bool {
        var allowed = true
        perform { s in
            allowed = s.book.beginUnload(name, required: required)
            return nil
        }
        return allowed
    }

    func unloadEnded(_ name: ModelName, succeeded: Bool) {
        perform { s in
            s.book.unloadEnded(name, succeeded: succeeded)
            return []
        }
    }

    // MARK: - Views

    func figures(_ name: ModelName) -> Figures? {
        state.withLock { s in
            guard s.book.entries[name] != nil else { return nil }
            var figures = s.figures(name)
            // The size may have changed with models.json since the figures were made.
            figures.memoryBytes = s.book.entries[name]?.size ?? figures.memoryBytes
            figures.tooLarge = s.book.entries[name]?.isTooLarge ?? figures.tooLarge
            if s.book.diskCapacity != nil, let entry = s.book.entries[name] {
                figures.onDisk = entry.onDisk
                // What it took stays in the book (the room a fetch needs), not in the view.
                figures.diskBytes = entry.onDisk ? entry.diskBytes : nil
            }
            return figures
        }
    }

    /// Memory counted now, and the capacity.
    var usage: (used: Int64, capacity: Int64) {
        state.withLock { ($0.book.used, $0.book.capacity) }
    }

    /// At shutdown, once the workers have stopped: requests waiting for a load are refused
    /// (none will come), later ones for models not loaded too; the recency order is saved.
    func close() async {
        perform { s in
            s.closed = true
            var answers: [(@Sendable (HeldOutcome) -> Void, HeldOutcome)] = []
            for name in Array(s.waiters.keys) {
                s.book.heldAnswered(name)
                answers += Self.answerAll(
                    &s, name,
                    .refused(reason: "model \(name) is not loaded and the agent is shutting down", retry: true))
            }
            return answers
        }
        recency.save(state.withLock { $0.book.recencyOrder })
        await recency.flush()
    }

    // MARK: - Inside

    /// Runs `change` under the lock; unless it returns nil (nothing changed), rebalances
    /// and then, outside the lock, carries out what follows. `change` returns the answers
    /// it decided on itself.
    private func perform(
        _ change: (inout State) -> [(@Sendable (HeldOutcome) -> Void, HeldOutcome)]?
    ) {
        decide(change).carryOut()
    }

    /// `perform` without carrying out: returns what is to follow.
    private func decide(
        _ change: (inout State) -> [(@Sendable (HeldOutcome) -> Void, HeldOutcome)]?
    ) -> Effects {
        let effects = state.withLock { s -> Effects? in
            guard let answers = change(&s) else { return nil }
            var effects = Effects()
            effects.cache = self
            effects.answers = answers
            let changes = s.book.rebalance()
            for name in changes.release {
                s.book.heldAnswered(name)
                if let since = s.waitingSince[name] {
                    let waited = ContinuousClock.now - since
                    effects.coldLoaded.append((name, waited))
                    s.count(name) {
                        $0.coldLoads += 1
                        $0.lastColdLoadMilliseconds = waited.milliseconds
                    }
                }
                effects.answers += Self.answerAll(&s, name, .ready)
            }
            for name in changes.refuse {
                s.book.heldAnswered(name)
                effects.answers += Self.answerAll(
                    &s, name, .refused(reason: Self.describe(.tooLarge, name), retry: false))
            }
            for eviction in changes.evicted {
                let victim = eviction.victim
                s.count(victim) { $0.evictions += 1 }
                effects.evicted.append((eviction, s.book.entries[victim]?.size ?? 0, s.figures[victim]?.lastUsed))
            }
            for name in changes.coldLoads {
                effects.coldLoadsStarted.append((name, s.book.entries[name]?.held ?? 0))
            }
            effects.owedLoadsStarted = changes.owedLoads
            for name in changes.fetches {
                effects.fetches.append((name, s.book.entries[name]?.held ?? 0))
            }
            effects.wake = changes.wake
            effects.wakeWorker = s.wake
            // Under the lock, so that the gauge and the file never go back to an older value.
            metrics.setUsed(s.book.used)
            if s.book.diskCapacity != nil { metrics.setDiskUsed(s.book.diskUsed) }
            if !changes.wake.isEmpty { recency.save(s.book.recencyOrder) }
            return effects
        }
        return effects ?? Effects()
    }

    fileprivate func carryOut(_ effects: Effects) {
        for (name, waiting) in effects.fetches {
            logger.info(
                "Fetching model \(name) on request",
                metadata: ["model": "\(name)", "waiting_requests": .stringConvertible(waiting)])
        }
        for (eviction, size, lastUsed) in effects.evicted {
            let victim = eviction.victim
            metrics.evicted(victim)
            var metadata: Logger.Metadata = [
                "model": "\(victim)", "memory_bytes": .stringConvertible(size), "for": "\(eviction.making)",
                "reason": "least recently used model with no request in flight",
            ]
            if let lastUsed { metadata["last_used"] = .stringConvertible(format3(lastUsed)) }
            logger.info("Evicting model \(victim) to make room for \(eviction.making)", metadata: metadata)
        }
        for (name, waiting) in effects.coldLoadsStarted {
            logger.info(
                "Loading model \(name) on request (cold load)",
                metadata: ["model": "\(name)", "waiting_requests": .stringConvertible(waiting)])
        }
        for name in effects.owedLoadsStarted {
            logger.info(
                "Loading model \(name), fetched for requests that have stopped waiting (cold load)",
                metadata: [
                    "model": "\(name)",
                    "reason": "a client that asks again after Retry-After finds it loaded",
                ])
        }
        for (name, waited) in effects.coldLoaded {
            metrics.coldLoaded(name, after: waited)
            logger.info(
                "Cold load of model \(name) done; sending its waiting requests",
                metadata: ["model": "\(name)", "duration_ms": .stringConvertible(waited.milliseconds)])
        }
        if let wake = effects.wakeWorker {
            for name in effects.wake { wake(name) }
        }
        for (answer, outcome) in effects.answers { answer(outcome) }
    }

    private static func answerAll(
        _ s: inout State, _ name: ModelName, _ outcome: HeldOutcome
    ) -> [(@Sendable (HeldOutcome) -> Void, HeldOutcome)] {
        let waiting = s.waiters.removeValue(forKey: name) ?? []
        s.waitingSince[name] = nil
        if !waiting.isEmpty { s.demand?(name, false) }
        return waiting.map { ($0.answer, outcome) }
    }

    /// What a client of the proxied port is told (sizes and limits of the pod's set-up
    /// are for the admin port).
    private static func describe(_ refusal: CacheBook.Refusal, _ name: ModelName) -> String {
        switch refusal {
        case .tooLarge:
            return "model \(name) does not fit in the model server's memory"
        case .queueFull:
            return "model \(name) is being loaded and has as many requests waiting as it may"
        case .loadFailed:
            return "model \(name) could not be loaded; it is tried again later"
        }
    }

    private static func isRetryable(_ refusal: CacheBook.Refusal) -> Bool {
        refusal != .tooLarge
    }
}
