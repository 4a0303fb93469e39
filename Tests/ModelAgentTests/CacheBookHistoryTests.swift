import Testing

@testable import ModelAgent

/// Random histories of requests, worker steps, slow loads and unloads, failed loads and
/// models.json changes, played against `CacheBook` and a simulated server: whatever
/// happens, the server never holds (or is loading) more than the capacity, the book's
/// counters stay consistent, and every request that waits is eventually answered. Half the
/// histories have a disk tier: the server never holds a model whose files were removed, and
/// once quiet, Standby files stay within the disk capacity.
@Suite struct CacheBookHistoryTests {
    /// A small deterministic generator (SplitMix64), so that a failure can be replayed.
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
    }

    struct Ticket {
        var model: ModelName
        var waiting: Bool
    }

    @Test(arguments: 0..<40)
    func theServerNeverHoldsMoreThanTheCapacity(seed: Int) {
        var random = Generator(state: UInt64(seed) &* 7919)
        let names = (0..<6).map { try! ModelName(validating: "m\($0)") }
        let capacity: Int64 = 10
        let diskCapacity: Int64? = seed % 2 == 1 ? 14 : nil
        var book = CacheBook(capacity: capacity, maxHeld: 3, diskCapacity: diskCapacity)
        var server: [ModelName: Int64] = [:]
        /// Files on disk: the size of the spec they are for, and what they take (which the
        /// book learns only once they are there).
        var files: [ModelName: (size: Int64, bytes: Int64)] = [:]
        var loads: [ModelName: Int64] = [:]
        var unloads: Set<ModelName> = []
        var tickets: [Ticket] = []
        var declared: [ModelName: Int64] = [:]

        func declareRandom() {
            declared = [:]
            for name in names where random.next(5) > 0 { declared[name] = Int64(1 + random.next(6)) }
            book.declare(declared.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            // As `ModelCache` does: requests waiting for a model gone from models.json go on.
            for name in names where declared[name] == nil { answer(name) }
        }

        func answer(_ name: ModelName) {
            book.heldAnswered(name)
            for index in tickets.indices where tickets[index].model == name { tickets[index].waiting = false }
        }

        /// One step of a model's worker, as `ModelController` takes it.
        func work(_ name: ModelName) {
            guard book.entries[name] != nil else {
                // Forgotten by the cache: the worker only removes what the server holds,
                // then the files.
                if server[name] != nil && loads[name] == nil && !unloads.contains(name)
                    && book.beginUnload(name, required: true)
                {
                    unloads.insert(name)
                }
                if server[name] == nil && loads[name] == nil { files[name] = nil }
                return
            }
            let size = declared[name]
            let servedVersionIsCurrent = server[name] != nil && server[name] == size
            book.sync(
                name, filesReady: size != nil && files[name]?.size == size, served: server[name] != nil,
                onDisk: files[name] != nil, diskBytes: files[name]?.bytes)
            guard loads[name] == nil, !unloads.contains(name) else { return }
            let wanted = book.wantsLoaded(name) ?? false
            let keepFiles = size != nil && (book.keepsFiles(name) ?? true)
            if server[name] != nil && (size == nil || !servedVersionIsCurrent || !wanted || !keepFiles) {
                let required = size == nil || !servedVersionIsCurrent
                if book.beginUnload(name, required: required) { unloads.insert(name) }
            } else if server[name] == nil && !keepFiles {
                files[name] = nil
            } else if let size, keepFiles && files[name]?.size != size && server[name] == nil {
                if random.next(6) == 0 {
                    // The download fails: as `ModelCache` does, waiting requests are refused.
                    if book.fetchFailed(name) { answer(name) }
                    return
                }
                // Downloaded (at once here): what it takes is not what its memory says.
                files[name] = (size, Int64(1 + random.next(5)))
            } else if server[name] == nil && wanted && size != nil && files[name]?.size == size {
                if book.beginLoad(name) { loads[name] = size }
            }
            book.sync(
                name, filesReady: size != nil && files[name]?.size == size, served: server[name] != nil,
                onDisk: files[name] != nil, diskBytes: files[name]?.bytes)
        }

        func apply(_ changes: CacheBook.Changes) {
            for name in changes.release + changes.refuse { answer(name) }
            for name in changes.wake { work(name) }
        }

        declareRandom()
        apply(book.rebalance())
        for _ in 0..<400 {
            switch random.next(10) {
            case 0, 1:
                let name = names[random.next(names.count)]
                switch book.admit(name) {
                case .admitted: tickets.append(Ticket(model: name, waiting: false))
                case .held: tickets.append(Ticket(model: name, waiting: true))
                case .refused, .unmanaged: break
                }
            case 2:
                if !tickets.isEmpty {
                    let ticket = tickets.remove(at: random.next(tickets.count))
                    book.finished(ticket.model, wasHeld: ticket.waiting)
                }
            case 3, 4:
                work(names[random.next(names.count)])
            case 5, 6:
                if let name = loads.keys.sorted().first(where: { _ in random.next(2) == 0 }) {
                    let size = loads.removeValue(forKey: name)!
                    let succeeded = random.next(5) > 0
                    // A failed load may still have loaded the model in the server.
                    if succeeded || random.next(2) == 0 { server[name] = size }
                    book.loadEnded(name, succeeded: succeeded)
                    // As `ModelCache` does: a failed load's waiting requests are refused.
                    if !succeeded { answer(name) }
                }
            case 7:
                if let name = unloads.sorted().first {
                    unloads.remove(name)
                    server[name] = nil
                    book.unloadEnded(name, succeeded: true)
                }
            case 8:
                if random.next(6) == 0 { declareRandom() }
            default:
                break
            }
            apply(book.rebalance())
            let held = server.values.reduce(0, +) + loads.values.reduce(0, +)
            #expect(held <= capacity, "seed \(seed): the server holds \(held) of \(capacity)")
            for (name, entry) in book.entries {
                #expect(entry.held >= 0 && entry.pins >= entry.held, "seed \(seed): \(name) \(entry)")
                let open = tickets.filter { $0.model == name }
                #expect(entry.pins == open.count, "seed \(seed): \(name) pins \(entry.pins), tickets \(open.count)")
            }
            #expect(book.used >= held, "seed \(seed): the book counts \(book.used), the server holds \(held)")
            for (name, entry) in book.entries
            where entry.declared && (entry.served != false || entry.loading || entry.pins > 0) {
                #expect(entry.keepFiles, "seed \(seed): \(name) may be served or in use, its files are to go: \(entry)")
            }
        }
        // Quiet: requests sent on end, every step is taken, every call returns; every
        // request that waits is answered in the end (sent on, or refused).
        for _ in 0..<40 {
            for ticket in tickets where !ticket.waiting { book.finished(ticket.model, wasHeld: false) }
            tickets.removeAll { !$0.waiting }
            apply(book.rebalance())
            for name in names { work(name) }
            for (name, size) in loads {
                server[name] = size
                book.loadEnded(name, succeeded: true)
            }
            loads = [:]
            for name in unloads {
                server[name] = nil
                book.unloadEnded(name, succeeded: true)
            }
            unloads = []
        }
        #expect(tickets.isEmpty, "seed \(seed): requests still wait: \(tickets.map(\.model))")
        // Loads owed to requests that gave up were made (or failed) too.
        #expect(book.owedLoads.isEmpty, "seed \(seed): loads still owed: \(book.owedLoads)")
        guard let diskCapacity else { return }
        let onDisk = files.values.reduce(Int64(0)) { $0 + $1.bytes }
        let standbyOnDisk = files.keys.filter { server[$0] == nil }
        #expect(
            standbyOnDisk.isEmpty || onDisk <= diskCapacity,
            "seed \(seed): \(onDisk) bytes on disk, Standby \(standbyOnDisk.sorted()), capacity \(diskCapacity)")
    }
}
