/// The memory cache's bookkeeping, without I/O, locks or waiting: which models the cache
/// wants loaded, what each one costs, how recently each was used and which requests wait
/// for it. `ModelCache` keeps one under its lock, performs what `rebalance` decides (wakes
/// workers, answers held requests) and is what the rest of the agent talks to.
///
/// Memory counts for a model while the cache wants it loaded (a reservation, kept through
/// the load) and while the server holds it (until its unload has ended), so the sum of
/// what the server may hold never exceeds the capacity.
struct CacheBook: Sendable {
    struct Entry: Sendable, Equatable {
        var size: Int64
        /// In the current models.json. A removed model keeps its entry while the server
        /// still holds it, so its memory counts until it is unloaded.
        var declared = true
        /// Its files are on disk, verified, for the wanted spec: a load can start.
        var filesReady = false
        /// The cache wants it loaded; its memory is reserved.
        var wanted = false
        /// The server holds it (as its worker last reported).
        var served = false
        /// A load call is under way: the reservation cannot be taken back.
        var loading = false
        /// An unload call is under way: no request may be sent to it.
        var unloading = false
        /// Higher is more recent.
        var recency: UInt64
        /// Requests admitted to it or waiting for it, not yet finished.
        var pins = 0
        /// Of `pins`, those waiting for a load.
        var held = 0
        /// When (in `clock` ticks) its oldest waiting request arrived: demands are met in
        /// arrival order.
        var demandSince: UInt64?
        var isTooLarge: Bool = false
        /// Requests can be sent to the server now.
        var isServing: Bool { wanted && served && !unloading }
        var occupiesMemory: Bool { wanted || served }
    }

    /// What a request for a model gets.
    enum Admission: Sendable, Equatable {
        /// Loaded: forward it now (it is pinned until it finishes).
        case admitted
        /// Wait for the load (pinned, counted as held).
        case held
        /// Answer it with an error; nothing is pinned.
        case refused(Refusal)
        /// The cache does not manage this model: forward it as is.
        case unmanaged
    }

    enum Refusal: Sendable, Equatable {
        case tooLarge
        case queueFull(limit: Int)
    }

    struct Eviction: Sendable, Equatable {
        var victim: ModelName
        var making: ModelName
    }

    /// What changed in one `rebalance`: workers to wake, held requests to answer.
    struct Changes: Sendable, Equatable {
        /// Models the cache now wants loaded, or no longer wants (their workers act on it).
        var wake: [ModelName] = []
        /// Models whose waiting requests can go to the server now.
        var release: [ModelName] = []
        /// Models whose waiting requests cannot be served (too large for the cache).
        var refuse: [ModelName] = []
        /// Models chosen for eviction, least recently used first, with the model each
        /// makes room for.
        var evicted: [Eviction] = []
        /// Models granted memory for a waiting request (a cold load starts).
        var coldLoads: [ModelName] = []
    }

    let capacity: Int64
    let maxHeld: Int
    private(set) var entries: [ModelName: Entry] = [:]
    /// Ticks on every use and declaration: orders recency and demands.
    private var clock: UInt64 = 0

    init(capacity: Int64, maxHeld: Int) {
        self.capacity = capacity
        self.maxHeld = maxHeld
    }

    /// Memory counted now (saturating: a server may hold more than the capacity at startup).
    var used: Int64 {
        entries.values.reduce(Int64(0)) { sum, entry in
            entry.occupiesMemory ? Self.add(sum, entry.size) : sum
        }
    }

    // MARK: - Configuration

    /// Sets the desired models. `ranked`: every desired model with its size, most recently
    /// used first (remembered order, then models.json order). New models take recency
    /// below the ones already known; known ones keep theirs.
    mutating func declare(_ ranked: [(name: ModelName, size: Int64)]) {
        let names = Set(ranked.map(\.name))
        for (name, entry) in entries where !names.contains(name) {
            if entry.served || entry.pins > 0 {
                entries[name]?.declared = false
                entries[name]?.wanted = false
                entries[name]?.filesReady = false
            } else {
                entries[name] = nil
            }
        }
        // Below every known model, in the given order.
        let floor = entries.values.map(\.recency).min() ?? (clock + UInt64(ranked.count) + 1)
        var next = floor
        for (name, declaredSize) in ranked {
            let size = max(0, declaredSize)
            if var entry = entries[name] {
                entry.declared = true
                if entry.size != size {
                    // A different size is a different spec: its worker replaces the files,
                    // and the model competes for memory again at its new size.
                    entry.size = size
                    entry.filesReady = false
                    entry.wanted = false
                }
                entry.isTooLarge = size > capacity
                if entry.isTooLarge { entry.wanted = false }
                entries[name] = entry
            } else {
                next = next > 0 ? next - 1 : 0
                var entry = Entry(size: size, recency: next)
                entry.isTooLarge = size > capacity
                entries[name] = entry
            }
        }
        clock = max(clock, entries.values.map(\.recency).max() ?? 0)
    }

    /// The models by recency, most recent first (what is remembered across restarts).
    var recencyOrder: [ModelName] {
        entries.filter(\.value.declared).sorted {
            ($0.value.recency, $1.key) > ($1.value.recency, $0.key)
        }.map(\.key)
    }

    func wantsLoaded(_ name: ModelName) -> Bool? {
        entries[name].map(\.wanted)
    }

    // MARK: - Requests

    mutating func admit(_ name: ModelName) -> Admission {
        guard var entry = entries[name], entry.declared else { return .unmanaged }
        if entry.isTooLarge { return .refused(.tooLarge) }
        clock += 1
        entry.recency = clock
        if entry.isServing {
            entry.pins += 1
            entries[name] = entry
            return .admitted
        }
        guard entry.held < maxHeld else {
            entries[name] = entry
            return .refused(.queueFull(limit: maxHeld))
        }
        entry.pins += 1
        entry.held += 1
        if entry.demandSince == nil { entry.demandSince = clock }
        entries[name] = entry
        return .held
    }

    /// A request admitted or held (`wasHeld`: still waiting) has finished or gone.
    mutating func finished(_ name: ModelName, wasHeld: Bool) {
        guard var entry = entries[name] else { return }
        entry.pins = max(0, entry.pins - 1)
        if wasHeld {
            entry.held = max(0, entry.held - 1)
            if entry.held == 0 { entry.demandSince = nil }
        }
        if !entry.declared && !entry.served && entry.pins == 0 {
            entries[name] = nil
        } else {
            entries[name] = entry
        }
    }

    /// The held requests of `name` were answered (sent on or refused): they stay pinned
    /// until each one finishes, but no longer wait.
    mutating func heldAnswered(_ name: ModelName) {
        guard var entry = entries[name] else { return }
        entry.held = 0
        entry.demandSince = nil
        entries[name] = entry
    }

    // MARK: - Reports from the model's worker

    mutating func setFilesReady(_ name: ModelName, _ ready: Bool) {
        entries[name]?.filesReady = ready
    }

    /// Whether a load may start now (the cache still wants it); marks it loading.
    mutating func beginLoad(_ name: ModelName) -> Bool {
        guard let entry = entries[name] else { return true }
        guard entry.wanted else { return false }
        entries[name]?.loading = true
        return true
    }

    mutating func loadEnded(_ name: ModelName, succeeded: Bool) {
        guard var entry = entries[name] else { return }
        entry.loading = false
        if succeeded {
            entry.served = true
        } else {
            // Its memory goes to others; a new request asks again.
            entry.wanted = false
        }
        entries[name] = entry
    }

    /// Whether an unload may start now. An eviction (`required` false) is called off when
    /// the cache wants the model again; a removal or a spec change is not.
    mutating func beginUnload(_ name: ModelName, required: Bool) -> Bool {
        guard let entry = entries[name] else { return true }
        // Only `wanted` calls one off: a model chosen for eviction had no request in
        // flight, and requests that came since are held, so the worker cannot spin.
        if !required && entry.wanted { return false }
        entries[name]?.unloading = true
        return true
    }

    mutating func unloadEnded(_ name: ModelName, succeeded: Bool) {
        guard var entry = entries[name] else { return }
        entry.unloading = false
        if succeeded { entry.served = false }
        if !entry.declared && !entry.served && entry.pins == 0 {
            entries[name] = nil
        } else {
            entries[name] = entry
        }
    }

    /// What the worker found asking the server. A model the server holds that the cache
    /// did not want is kept if it fits (a restart of the agent), else evicted.
    mutating func observedServed(_ name: ModelName, _ served: Bool) {
        guard var entry = entries[name] else { return }
        if served && !entry.served && !entry.wanted && !entry.isTooLarge && entry.declared
            && Self.add(used, entry.size) <= capacity
        {
            entry.wanted = true
        }
        entry.served = served
        entries[name] = entry
    }

    // MARK: - Decisions

    /// Meets waiting requests in arrival order, evicting the least recently used models
    /// that have no request in flight; then fills free memory with the most recently used
    /// models that fit. Call after every change.
    mutating func rebalance() -> Changes {
        var changes = Changes()
        var free = Self.subtract(capacity, used)
        // Memory that evictions under way will give back.
        var incoming = entries.values.reduce(Int64(0)) { sum, entry in
            entry.served && !entry.wanted ? Self.add(sum, entry.size) : sum
        }
        let demands = entries.filter { $0.value.held > 0 && $0.value.declared }
            .sorted { ($0.value.demandSince ?? 0, $0.key) < ($1.value.demandSince ?? 0, $1.key) }
        var blocked = false
        for (name, entry) in demands {
            if entry.isTooLarge {
                changes.refuse.append(name)
                continue
            }
            if entry.isServing {
                changes.release.append(name)
                continue
            }
            guard !entry.wanted else { continue }  // loading, or unloading before a reload
            // A request waits for its files; memory is not taken for a download.
            guard entry.filesReady, !blocked else { continue }
            if entry.served {
                // Chosen for eviction but not yet unloaded: it stays.
                incoming = Self.subtract(incoming, entry.size)
                grant(name, &changes)
                continue
            }
            if free >= entry.size {
                free -= entry.size
                grant(name, &changes)
                continue
            }
            for victim in victims(excluding: name) {
                if Self.add(free, incoming) >= entry.size { break }
                guard let size = entries[victim]?.size else { continue }
                entries[victim]?.wanted = false
                changes.wake.append(victim)
                if entries[victim]?.served == true {
                    changes.evicted.append(Eviction(victim: victim, making: name))
                    incoming = Self.add(incoming, size)
                } else {
                    free = Self.add(free, size)  // only reserved: given back at once
                }
            }
            if free >= entry.size {
                free -= entry.size
                grant(name, &changes)
            } else if Self.add(free, incoming) >= entry.size {
                // Waits for the unloads; what it needs is spoken for.
                incoming = Self.subtract(incoming, Self.subtract(entry.size, free))
                free = 0
            } else {
                // Everything else is in use: this and later demands wait for a request to end.
                blocked = true
            }
        }
        if demands.allSatisfy({ !$0.value.filesReady || $0.value.wanted || $0.value.isTooLarge }) {
            // Nothing waits on memory: the most recently used models that fit are loaded.
            let standby = entries.filter { $0.value.declared && !$0.value.occupiesMemory && !$0.value.isTooLarge }
                .sorted { ($0.value.recency, $1.key) > ($1.value.recency, $0.key) }
            for (name, entry) in standby where entry.size <= free {
                free -= entry.size
                grant(name, &changes, cold: false)
            }
        }
        return changes
    }

    private mutating func grant(_ name: ModelName, _ changes: inout Changes, cold: Bool = true) {
        entries[name]?.wanted = true
        changes.wake.append(name)
        if cold { changes.coldLoads.append(name) }
    }

    /// Models whose memory can be taken back, least recently used first: wanted, no
    /// request in flight, no load under way.
    private func victims(excluding name: ModelName) -> [ModelName] {
        entries.filter { $0.key != name && $0.value.wanted && $0.value.pins == 0 && !$0.value.loading }
            .sorted { ($0.value.recency, $0.key) < ($1.value.recency, $1.key) }
            .map(\.key)
    }

    static func add(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// Sizes are never negative, so this cannot overflow; it stops at zero.
    static func subtract(_ a: Int64, _ b: Int64) -> Int64 {
        a > b ? a - b : 0
    }
}
