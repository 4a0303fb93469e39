/// The memory cache's bookkeeping, without I/O, locks or waiting: which models the cache
/// wants loaded, what each one costs, how recently each was used and which requests wait
/// for it. `ModelCache` keeps one under its lock, performs what `rebalance` decides (wakes
/// workers, answers held requests) and is what the rest of the agent talks to.
///
/// A model is charged (see `Entry.charge`) for what the server may hold of it: the version
/// it holds (or may hold, when that is not known) until its unload has ended, and the
/// version the cache wants loaded from the reservation until the load has ended. The charges
/// never sum past the capacity through a decision of the cache, so neither does the server.
struct CacheBook: Sendable {
    struct Entry: Sendable, Equatable {
        /// The size of the wanted spec (models.json's `memory`, or the default).
        var size: Int64
        /// The size of the version the server holds (or may hold).
        var servedSize: Int64
        /// In the current models.json. A removed model keeps its entry while the server may
        /// still hold it or a request still uses it, so its memory counts until unloaded.
        var declared = true
        /// Its files are on disk, verified, for the wanted spec: a load can start.
        var filesReady = false
        /// The cache wants it loaded; its memory is reserved.
        var wanted = false
        /// Whether the server holds it, as its worker last reported; nil: not known (found
        /// on disk at startup and not yet asked, or a load that failed part-way).
        var served: Bool? = false
        /// A load call is under way: its memory counts whatever the cache now wants.
        var loading = false
        /// The size of the spec being loaded (models.json may change it meanwhile).
        var loadingSize: Int64 = 0
        /// An unload call is under way: no request may be sent to it.
        var unloading = false
        /// The last load (or the download of a model not served) failed: requests are
        /// refused (no eviction is made for it) until its worker has asked the server
        /// again, after its backoff.
        var loadFailed = false
        /// Larger than the whole capacity: never loaded.
        var isTooLarge = false
        /// Higher is more recent.
        var recency: UInt64
        /// Requests admitted to it or waiting for it, not yet finished.
        var pins = 0
        /// Of `pins`, those waiting for a load.
        var held = 0
        /// When (in `clock` ticks) its oldest waiting request arrived: demands are met in
        /// arrival order.
        var demandSince: UInt64?
        /// The disk tier wants its files on disk (a download may start). Always true
        /// without a disk capacity.
        var keepFiles = true
        /// Files of it are on disk (complete or not, staging included), as its worker last
        /// reported.
        var onDisk = false
        /// What its files took on disk when last measured; nil: never measured.
        var diskBytes: Int64?

        /// What its files are expected to take: as last measured, else its memory size (a
        /// model's weights are most of both).
        var diskExpected: Int64 { diskBytes ?? size }

        /// Disk counted for it now: its files while they are there, and the room reserved
        /// for them from the moment the cache wants them.
        var diskCharge: Int64 { onDisk || keepFiles ? diskExpected : 0 }

        /// Its files stay whatever the disk capacity: the server holds it (its files must
        /// outlive its unload), it is loading or to be loaded, or a request uses it (see also
        /// `CacheBook.owedLoads`).
        var mustKeepFiles: Bool { wanted || pins > 0 || loading || unloading || served == true }

        /// Memory counted for it now.
        var charge: Int64 {
            max(served != false ? servedSize : 0, wanted ? size : 0, loading ? loadingSize : 0)
        }

        /// Requests can be sent to the server now.
        var isServing: Bool { wanted && served == true && !unloading && !loading }

        /// No reason to keep the entry of a model gone from models.json.
        var isForgettable: Bool {
            !declared && served == false && pins == 0 && !loading && !unloading && !onDisk
        }
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
        case queueFull
        case loadFailed
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
        /// Standby models whose files are to leave the disk (disk tier), least recently
        /// used first. (A request may call a removal off before it starts.)
        var leavingDisk: [ModelName] = []
        /// Models off disk whose files are fetched again for a waiting request.
        var fetches: [ModelName] = []
        /// Models granted memory for a load owed to requests that gave up (see `owedLoads`).
        var owedLoads: [ModelName] = []
    }

    let capacity: Int64
    let maxHeld: Int
    /// The disk tier's capacity (`--disk-capacity`); nil: every declared model's files stay.
    let diskCapacity: Int64?
    private(set) var entries: [ModelName: Entry] = [:]
    /// Models a request waited for while their files were not there, whose requests may
    /// have given up since. Once the files land, such a model is loaded as if its request
    /// still waited, provided that evicts only models used less recently than that request
    /// (else it is a Standby model like another). A client retrying after `Retry-After`
    /// then finds it loaded: a download longer than the hold used to land with nobody
    /// waiting and, with no disk room beyond the loaded models, leave again, so the client
    /// was never served. Its files stay until then; once granted it is not evicted before
    /// its load has ended.
    private(set) var owedLoads: Set<ModelName> = []
    /// Ticks on every use and declaration: orders recency and demands.
    private var clock: UInt64 = 0

    init(capacity: Int64, maxHeld: Int, diskCapacity: Int64? = nil) {
        self.capacity = capacity
        self.maxHeld = maxHeld
        self.diskCapacity = diskCapacity
    }

    /// Memory counted now (saturating: a server may hold more than the capacity at startup).
    var used: Int64 {
        entries.values.reduce(Int64(0)) { Self.add($0, $1.charge) }
    }

    /// Disk counted now (saturating).
    var diskUsed: Int64 {
        entries.values.reduce(Int64(0)) { Self.add($0, $1.diskCharge) }
    }

    // MARK: - Configuration

    /// Sets the desired models. `ranked`: every desired model with its size, most recently
    /// used first (remembered order, then models.json order). New models take recency
    /// below the ones already known; known ones keep theirs. `servedUnknown`: new models
    /// the server may already hold (found on disk), charged until their worker knows; their
    /// files are on disk. With a disk tier, other new models wait for `rebalance` to give
    /// them room on disk before they download.
    mutating func declare(
        _ ranked: [(name: ModelName, size: Int64)], servedUnknown: Set<ModelName> = [],
        diskBytes: [ModelName: Int64] = [:]
    ) {
        let names = Set(ranked.map(\.name))
        for (name, entry) in entries where !names.contains(name) {
            var gone = entry
            (gone.declared, gone.wanted, gone.filesReady) = (false, false, false)
            owedLoads.remove(name)
            if diskCapacity != nil { gone.keepFiles = false }
            entries[name] = gone.isForgettable ? nil : gone
        }
        // Below every known model, in the given order.
        let floor = entries.values.map(\.recency).min() ?? (clock + UInt64(ranked.count) + 1)
        var next = floor
        for (name, declaredSize) in ranked {
            let size = max(0, declaredSize)
            guard var entry = entries[name] else {
                next = next > 0 ? next - 1 : 0
                var entry = Entry(size: size, servedSize: size, recency: next)
                entry.isTooLarge = size > capacity
                if servedUnknown.contains(name) { (entry.served, entry.onDisk) = (nil, true) }
                entry.diskBytes = diskBytes[name].map { max(0, $0) }
                entry.keepFiles = diskCapacity == nil || entry.onDisk
                entries[name] = entry
                continue
            }
            entry.declared = true
            if diskCapacity == nil { entry.keepFiles = true }
            if entry.size != size {
                // A different size is a different spec: its worker replaces the files. It
                // stays wanted (its requests keep going to the version loaded now) if the
                // new size fits beside the others.
                let others = Self.subtract(used, entry.charge)
                entry.size = size
                entry.filesReady = false
                if entry.wanted && Self.add(others, entry.charge) > capacity { entry.wanted = false }
            }
            entry.isTooLarge = size > capacity
            if entry.isTooLarge {
                entry.wanted = false
                owedLoads.remove(name)
            }
            entries[name] = entry
        }
        clock = max(clock, entries.values.map(\.recency).max() ?? 0)
    }

    /// The models by recency, most recent first (what is remembered across restarts).
    var recencyOrder: [ModelName] { declaredByRecency { name, _ in name } }

    /// The declared models with their entries, most recent first.
    private func declaredByRecency() -> [(name: ModelName, entry: Entry)] {
        declaredByRecency { ($0, $1) }
    }

    /// `item` of every declared model, most recent first (ties by name). Indices are
    /// sorted, not entries, and names are compared only on a tie: this runs on decisions
    /// that go over every model.
    private func declaredByRecency<Item>(_ item: (ModelName, Entry) -> Item) -> [Item] {
        var items: [Item] = []
        var names: [ModelName] = []
        var recency: [UInt64] = []
        items.reserveCapacity(entries.count)
        names.reserveCapacity(entries.count)
        recency.reserveCapacity(entries.count)
        for (name, entry) in entries where entry.declared {
            items.append(item(name, entry))
            names.append(name)
            recency.append(entry.recency)
        }
        var order = Array(items.indices)
        order.sort { a, b in recency[a] != recency[b] ? recency[a] > recency[b] : names[a] < names[b] }
        return order.map { items[$0] }
    }

    func wantsLoaded(_ name: ModelName) -> Bool? {
        entries[name].map(\.wanted)
    }

    func keepsFiles(_ name: ModelName) -> Bool? {
        entries[name].map(\.keepFiles)
    }

    // MARK: - Requests

    mutating func admit(_ name: ModelName) -> Admission {
        guard var entry = entries[name], entry.declared else { return .unmanaged }
        if entry.isTooLarge { return .refused(.tooLarge) }
        if entry.loadFailed { return .refused(.loadFailed) }
        clock += 1
        entry.recency = clock
        defer { entries[name] = entry }
        if entry.isServing {
            entry.pins += 1
            return .admitted
        }
        guard entry.held < maxHeld else { return .refused(.queueFull) }
        entry.pins += 1
        entry.held += 1
        if entry.demandSince == nil { entry.demandSince = clock }
        if !entry.filesReady { owedLoads.insert(name) }
        return .held
    }

    /// A request admitted or held (`wasHeld`: still waiting) has finished or gone.
    mutating func finished(_ name: ModelName, wasHeld: Bool) {
        guard var entry = entries[name] else { return }
        entry.pins = max(0, entry.pins - 1)
        if wasHeld {
            entry.held = max(0, entry.held - 1)
            if entry.held == 0 && !owedLoads.contains(name) { entry.demandSince = nil }
        }
        entries[name] = entry.isForgettable ? nil : entry
    }

    /// The held requests of `name` were answered (sent on or refused): they stay pinned
    /// until each one finishes, but no longer wait.
    mutating func heldAnswered(_ name: ModelName) {
        entries[name]?.held = 0
        entries[name]?.demandSince = nil
    }

    // MARK: - Reports from the model's worker

    /// What the worker knows at the start of each step: whether the files of the wanted
    /// spec are ready, whether the server holds the model (nil: not known), whether any of
    /// its files are on disk and what they took when last measured. A model the server
    /// turns out to hold that the cache did not want is kept if it fits (a restarted
    /// agent), else evicted.
    /// Returns whether anything changed.
    @discardableResult
    mutating func sync(
        _ name: ModelName, filesReady: Bool, served: Bool?, onDisk: Bool? = nil, diskBytes: Int64? = nil
    ) -> Bool {
        guard var entry = entries[name] else { return false }
        let before = entry
        // Files the disk tier no longer keeps are not ready: they may be going.
        entry.filesReady = filesReady && entry.declared && entry.keepFiles
        if let onDisk { entry.onDisk = onDisk }
        if let diskBytes { entry.diskBytes = max(0, diskBytes) }
        if served == true && entry.served != true && !entry.wanted && entry.declared && !entry.isTooLarge {
            // Against what is known: of models found loaded at startup, the first ones
            // reported are kept and the later ones that do not fit are unloaded.
            let others = entries.reduce(Int64(0)) { sum, other in
                other.key == name || other.value.served == nil ? sum : Self.add(sum, other.value.charge)
            }
            if Self.add(others, entry.size) <= capacity { entry.wanted = true }
        }
        if let served, entry.served == nil || entry.loadFailed {
            // The worker asked the server again: a failed load may be retried on demand.
            entry.loadFailed = false
            entry.served = served
        } else if let served {
            entry.served = served
        }
        if served == true && !entry.loading { entry.servedSize = max(entry.servedSize, entry.size) }
        entries[name] = entry.isForgettable ? nil : entry
        return entry != before || entry.isForgettable
    }

    /// Whether a load may start now (the cache still wants it); marks it loading.
    mutating func beginLoad(_ name: ModelName) -> Bool {
        guard let entry = entries[name], entry.wanted else { return false }
        entries[name]?.loading = true
        entries[name]?.loadingSize = entry.size
        return true
    }

    mutating func loadEnded(_ name: ModelName, succeeded: Bool) {
        guard var entry = entries[name] else { return }
        entry.loading = false
        if succeeded {
            entry.served = true
            entry.servedSize = entry.loadingSize
        } else {
            // The server may have loaded it after all: charged until the worker asks.
            entry.served = nil
            entry.servedSize = max(entry.servedSize, entry.loadingSize)
            entry.wanted = false
            entry.loadFailed = true
        }
        entries[name] = entry
        forgetOwedLoad(name)
    }

    /// A download failed. A model the server does not hold gives its memory back and
    /// refuses requests until its worker tries again; one still served (a new version
    /// failed) goes on serving. Returns whether requests are refused.
    mutating func fetchFailed(_ name: ModelName) -> Bool {
        forgetOwedLoad(name)
        guard var entry = entries[name], entry.served == false, !entry.loading else { return false }
        entry.loadFailed = true
        entry.wanted = false
        entries[name] = entry
        return true
    }

    /// The load owed to `name` was made, failed or is no longer owed; its requests, if
    /// any wait, keep their place in line.
    private mutating func forgetOwedLoad(_ name: ModelName) {
        guard owedLoads.remove(name) != nil, var entry = entries[name] else { return }
        if entry.held == 0 { entry.demandSince = nil }
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
        entries[name] = entry.isForgettable ? nil : entry
    }

    // MARK: - Decisions

    /// Meets waiting requests (and loads owed to requests that gave up, see `owedLoads`)
    /// in arrival order, evicting the least recently used models that
    /// have no request in flight (only when that makes enough room); then, if no request
    /// waits for memory, fills what is free with the most recently used models that fit.
    /// Call after every change.
    mutating func rebalance() -> Changes {
        var changes = Changes()
        var free = Self.subtract(capacity, used)
        // Memory that unloads already decided will give back.
        var incoming = entries.values.reduce(Int64(0)) { sum, entry in
            entry.served == true && !entry.wanted && !entry.loading ? Self.add(sum, entry.servedSize) : sum
        }
        let demands = entries.filter { ($0.value.held > 0 || owedLoads.contains($0.key)) && $0.value.declared }
            .sorted { ($0.value.demandSince ?? 0, $0.key) < ($1.value.demandSince ?? 0, $1.key) }
        var waitingForMemory = false
        for (name, entry) in demands {
            let waits = entry.held > 0
            if entry.isTooLarge {
                if waits { changes.refuse.append(name) }
                continue
            }
            if entry.isServing {
                forgetOwedLoad(name)
                if waits { changes.release.append(name) }
                continue
            }
            // Loading, reloading, downloading, or not known yet: its worker moves on its own.
            guard !entry.wanted, !entry.loadFailed, entry.filesReady, let served = entry.served else { continue }
            if served {
                // Chosen for eviction: it stays, unless its unload has begun. Its worker
                // calls the unload off; it serves now, so its requests go on at once (no
                // later step of its worker would decide again).
                if entry.unloading { continue }
                incoming = Self.subtract(incoming, entry.servedSize)
                entries[name]?.wanted = true
                changes.wake.append(name)
                if entries[name]?.isServing == true {
                    forgetOwedLoad(name)
                    if waits { changes.release.append(name) }
                }
                continue
            }
            if free >= entry.size {
                free -= entry.size
                grant(name, &changes, waits: waits)
                continue
            }
            // A load owed to nobody waiting takes only what is less recently used.
            let candidates = victims(excluding: name, usedBefore: waits ? nil : entry.recency)
            let reclaimable = candidates.reduce(Int64(0)) { Self.add($0, entries[$1]?.charge ?? 0) }
            // Nothing is evicted for a request that cannot be met now (every other model in
            // use): it waits for a request to end; later demands may still be met. A load
            // owed to nobody waiting is not: the model is Standby like another, its files
            // placed by recency (nothing past the disk capacity waits on requests to end).
            guard Self.add(Self.add(free, incoming), reclaimable) >= entry.size else {
                if waits { waitingForMemory = true } else { forgetOwedLoad(name) }
                continue
            }
            for victim in candidates {
                if Self.add(free, incoming) >= entry.size { break }
                guard var evicted = entries[victim] else { continue }
                let before = evicted.charge
                evicted.wanted = false
                let after = evicted.charge
                entries[victim] = evicted
                changes.wake.append(victim)
                free = Self.add(free, before - after)
                if evicted.served == true {
                    changes.evicted.append(Eviction(victim: victim, making: name))
                    incoming = Self.add(incoming, after)
                }
            }
            if free >= entry.size {
                free -= entry.size
                grant(name, &changes, waits: waits)
            } else {
                // Waits for the unloads; what it needs is spoken for.
                incoming = Self.subtract(incoming, Self.subtract(entry.size, free))
                free = 0
                if waits { waitingForMemory = true }
            }
        }
        var byRecency = diskCapacity != nil || !waitingForMemory ? declaredByRecency() : []
        placeFiles(&byRecency, &changes)
        if !waitingForMemory {
            for (name, entry) in byRecency
            where !entry.wanted && !entry.isTooLarge && !entry.loadFailed && entry.keepFiles {
                // A more recent model the server still holds (an old version being replaced,
                // or not known yet) comes first: nothing less recent takes the room meanwhile.
                if entry.served != false { break }
                if entry.size <= free {
                    free -= entry.size
                    grant(name, &changes, fill: true)
                }
            }
        }
        return changes
    }

    /// The disk tier: the files of models that must stay (see `Entry.mustKeepFiles`) stay
    /// whatever they take; then the most recently used Standby models keep theirs while they
    /// fit in what is left, and the others leave the disk. A model off disk is fetched again
    /// when it gets room: at once when a request waits for it, else once the room is free
    /// (files leaving count until they are gone).
    /// `byRecency`: the declared models, most recent first; their entries are kept in step.
    private mutating func placeFiles(_ byRecency: inout [(name: ModelName, entry: Entry)], _ changes: inout Changes) {
        guard let diskCapacity else { return }
        var room = diskCapacity
        var keep: [Int] = []
        var leave: [Int] = []
        for (index, item) in byRecency.enumerated() where mustKeepFiles(item.name, item.entry) {
            room = Self.subtract(room, item.entry.diskExpected)
            keep.append(index)
        }
        for (index, item) in byRecency.enumerated() where !mustKeepFiles(item.name, item.entry) {
            let entry = item.entry
            if entry.served == nil {
                // The server may hold it (found on disk, or a load failed part-way): it
                // stays until its worker has asked, and takes its place by recency, so
                // that it never pushes out a more recent model.
                room = Self.subtract(room, entry.diskExpected)
                keep.append(index)
            } else if !entry.isTooLarge && entry.diskExpected <= room {
                room -= entry.diskExpected
                keep.append(index)
            } else {
                leave.append(index)
            }
        }
        for index in leave.reversed() where byRecency[index].entry.keepFiles {
            // Its files are about to go: nothing may be granted on them meanwhile.
            byRecency[index].entry.keepFiles = false
            byRecency[index].entry.filesReady = false
            let name = byRecency[index].name
            entries[name] = byRecency[index].entry
            changes.wake.append(name)
            if byRecency[index].entry.onDisk { changes.leavingDisk.append(name) }
        }
        var free = Self.subtract(diskCapacity, diskUsed)
        for index in keep where !byRecency[index].entry.keepFiles {
            let (name, entry) = byRecency[index]
            // Files still there cost nothing more; a model in use does not wait for room.
            if !entry.onDisk {
                if !mustKeepFiles(name, entry) && entry.served != nil && entry.diskExpected > free { continue }
                free = Self.subtract(free, entry.diskExpected)
            }
            byRecency[index].entry.keepFiles = true
            entries[name] = byRecency[index].entry
            changes.wake.append(name)
            if entry.pins > 0 && !entry.onDisk { changes.fetches.append(name) }
        }
    }

    /// `fill`: free memory taken by a Standby model; else a cold load, for requests that
    /// wait (`waits`) or for a load owed to requests that gave up.
    private mutating func grant(_ name: ModelName, _ changes: inout Changes, waits: Bool = true, fill: Bool = false) {
        entries[name]?.wanted = true
        changes.wake.append(name)
        if fill { return }
        if waits { changes.coldLoads.append(name) } else { changes.owedLoads.append(name) }
    }

    /// Files that stay whatever the disk capacity: see `Entry.mustKeepFiles`, and a model
    /// whose load is owed (its files are on their way or about to be loaded).
    private func mustKeepFiles(_ name: ModelName, _ entry: Entry) -> Bool {
        entry.mustKeepFiles || owedLoads.contains(name)
    }

    /// Models whose memory can be taken back, least recently used first: wanted, no
    /// request in flight, no load or unload under way, known to the server or not, no
    /// owed load granted; with `usedBefore`, only those used less recently than that.
    private func victims(excluding name: ModelName, usedBefore recency: UInt64? = nil) -> [ModelName] {
        entries.filter {
            $0.key != name && $0.value.wanted && $0.value.pins == 0 && !$0.value.loading && !$0.value.unloading
                && $0.value.served != nil && !owedLoads.contains($0.key) && $0.value.recency < (recency ?? .max)
        }
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
