import Testing

@testable import ModelAgent

/// The cache's decisions without locks, workers or a server: admission in recency order,
/// LRU eviction that spares models with requests in flight, holding, too-large models, and
/// the reports of workers (loads, unloads, what the server holds).
@Suite struct CacheBookTests {
    static func name(_ text: String) -> ModelName { try! ModelName(validating: text) }
    let a = name("a")
    let b = name("b")
    let c = name("c")
    let d = name("d")

    /// A book of capacity `capacity` with `models` (name, size), ranked in the given order.
    static func book(_ capacity: Int64, _ models: [(String, Int64)], maxHeld: Int = 8) -> CacheBook {
        var book = CacheBook(capacity: capacity, maxHeld: maxHeld)
        book.declare(models.map { (name($0.0), $0.1) })
        return book
    }

    /// Plays the workers: every wanted model whose files are ready is loaded, every
    /// unwanted one the server holds is unloaded, until nothing changes.
    static func settle(_ book: inout CacheBook) {
        for _ in 0..<20 {
            var acted = false
            for (name, entry) in book.entries.sorted(by: { $0.key < $1.key }) {
                if entry.wanted && !entry.served && entry.filesReady {
                    let began = book.beginLoad(name)
                    #expect(began)
                    book.loadEnded(name, succeeded: true)
                    acted = true
                } else if !entry.wanted && entry.served && book.beginUnload(name, required: !entry.declared) {
                    book.unloadEnded(name, succeeded: true)
                    acted = true
                }
            }
            _ = book.rebalance()
            if !acted { return }
        }
        Issue.record("workers did not settle")
    }

    static func loaded(_ book: CacheBook) -> Set<String> {
        Set(book.entries.filter(\.value.served).map(\.key.rawValue))
    }

    static func allReady(_ book: inout CacheBook) {
        for name in book.entries.keys { book.setFilesReady(name, true) }
    }

    @Test func fillsInRankOrderWhileModelsFit() {
        var book = Self.book(3, [("a", 1), ("b", 1), ("c", 1), ("d", 1)])
        let changes = book.rebalance()
        #expect(Set(changes.wake) == [a, b, c])
        #expect(changes.coldLoads.isEmpty)
        Self.allReady(&book)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a", "b", "c"])
        #expect(book.used == 3)
    }

    @Test func aSmallerLaterModelFillsWhatABiggerOneLeaves() {
        var book = Self.book(3, [("a", 2), ("b", 2), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a", "c"])
    }

    @Test func aRequestForAStandbyModelEvictsTheLeastRecentlyUsed() {
        var book = Self.book(2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        // b used after a: a is the least recently used.
        #expect(book.admit(a) == .admitted)
        book.finished(a, wasHeld: false)
        #expect(book.admit(b) == .admitted)
        book.finished(b, wasHeld: false)
        #expect(book.admit(c) == .held)
        let changes = book.rebalance()
        #expect(changes.evicted == [.init(victim: a, making: c)])
        #expect(changes.coldLoads.isEmpty, "c waits for a's unload")
        #expect(book.used == 2, "a's memory counts until it is unloaded")
        let began = book.beginUnload(a, required: false)
        #expect(began)
        book.unloadEnded(a, succeeded: true)
        let next = book.rebalance()
        #expect(next.coldLoads == [c])
        let loading = book.beginLoad(c)
        #expect(loading)
        book.loadEnded(c, succeeded: true)
        #expect(book.rebalance().release == [c])
        book.heldAnswered(c)
        #expect(Self.loaded(book) == ["b", "c"])
    }

    @Test func aModelWithARequestInFlightIsNeverEvicted() {
        var book = Self.book(2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(a) == .admitted)  // in flight: a is pinned
        #expect(book.admit(b) == .admitted)
        book.finished(b, wasHeld: false)
        #expect(book.admit(c) == .held)
        let changes = book.rebalance()
        #expect(changes.evicted.map(\.victim) == [b], "a is older but in use")
    }

    @Test func whenEverythingIsInUseTheRequestWaitsForOneToEnd() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(a) == .admitted)
        #expect(book.admit(b) == .held)
        #expect(book.rebalance().evicted.isEmpty)
        book.finished(a, wasHeld: false)
        #expect(book.rebalance().evicted.map(\.victim) == [a])
    }

    @Test func requestsForAModelBeingEvictedWaitAndKeepIt() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(b) == .held)
        #expect(book.rebalance().evicted.map(\.victim) == [a])
        // A request for a arrives before its worker starts the unload.
        #expect(book.admit(a) == .held)
        let changes = book.rebalance()
        #expect(changes.wake.contains(a))
        let unloading = book.beginUnload(a, required: false)
        #expect(!unloading, "the eviction is called off")
        #expect(changes.release == [a] || book.rebalance().release == [a])
    }

    @Test func concurrentRequestsShareOneLoad() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(b) == .held)
        #expect(book.admit(b) == .held)
        var grants = 0
        for _ in 0..<3 {
            let changes = book.rebalance()
            grants += changes.coldLoads.filter { $0 == b }.count
            if book.entries[a]?.served == true && book.beginUnload(a, required: false) {
                book.unloadEnded(a, succeeded: true)
            }
        }
        #expect(grants == 1)
        #expect(book.entries[b]?.held == 2)
    }

    @Test func aModelLargerThanTheCapacityIsRefused() {
        var book = Self.book(2, [("a", 3), ("b", 1)])
        #expect(book.entries[a]?.isTooLarge == true)
        let admission = book.admit(a)
        #expect(admission == .refused(.tooLarge))
        _ = book.rebalance()
        #expect(book.wantsLoaded(a) == false)
        #expect(book.wantsLoaded(b) == true)
    }

    @Test func theHeldQueueIsBounded() {
        var book = Self.book(1, [("a", 1), ("b", 1)], maxHeld: 2)
        #expect(book.admit(b) == .held)
        #expect(book.admit(b) == .held)
        #expect(book.admit(b) == .refused(.queueFull(limit: 2)))
        book.finished(b, wasHeld: true)
        #expect(book.admit(b) == .held)
    }

    @Test func aRequestWaitsForFilesWithoutTakingMemory() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        book.setFilesReady(a, true)
        Self.settle(&book)
        #expect(book.admit(b) == .held)
        #expect(book.rebalance().evicted.isEmpty, "b is still downloading")
        book.setFilesReady(b, true)
        #expect(book.rebalance().evicted.map(\.victim) == [a])
    }

    @Test func aFailedLoadGivesItsMemoryBack() {
        var book = Self.book(2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        let began = book.beginLoad(a)
        #expect(began)
        book.loadEnded(a, succeeded: false)
        #expect(book.wantsLoaded(a) == false)
        #expect(book.used == 1)
    }

    @Test func aModelTheServerHoldsAtStartupIsKeptIfItFits() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        book.observedServed(b, true)
        #expect(book.wantsLoaded(b) == true)
        book.observedServed(a, true)
        #expect(book.wantsLoaded(a) == false, "no room left: a is unloaded")
        let unloading = book.beginUnload(a, required: false)
        #expect(unloading)
    }

    @Test func removedModelsCountUntilUnloaded() {
        var book = Self.book(2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        book.declare([(b, 1), (c, 1)])
        #expect(book.used == 2, "a is still in the server")
        #expect(book.admit(a) == .unmanaged)
        #expect(book.rebalance().wake.isEmpty)
        let unloading = book.beginUnload(a, required: true)
        #expect(unloading)
        book.unloadEnded(a, succeeded: true)
        #expect(book.entries[a] == nil)
        book.setFilesReady(c, true)
        #expect(book.rebalance().wake == [c])
    }

    @Test func aChangedSizeCompetesAgain() {
        var book = Self.book(2, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        book.declare([(a, 2), (b, 1)])
        #expect(book.wantsLoaded(a) == false)
        #expect(book.entries[a]?.filesReady == false)
    }

    @Test func recencyFollowsUseAndSurvivesRedeclaration() {
        var book = Self.book(4, [("a", 1), ("b", 1), ("c", 1)])
        #expect(book.recencyOrder == [a, b, c])
        _ = book.admit(c)
        book.finished(c, wasHeld: true)
        #expect(book.recencyOrder == [c, a, b])
        book.declare([(a, 1), (b, 1), (c, 1), (d, 1)])
        #expect(book.recencyOrder == [c, a, b, d], "a new model ranks below the known ones")
    }

    @Test func hugeSizesNeitherTrapNorOvercommit() {
        var book = Self.book(.max, [("a", .max), ("b", .max), ("c", -5)])
        _ = book.rebalance()
        #expect(book.used == .max)
        #expect(book.wantsLoaded(b) == false)
    }

    @Test func recencyFileLinesAreValidatedNames() {
        let parsed = RecencyFile.parse(Array("b\n\n../x\na\nb\n\u{FF}\n".utf8) + [0xFF, 0x0A, 0x63])
        #expect(parsed == [b, a, c])
    }
}
