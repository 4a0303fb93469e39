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
                if entry.wanted && entry.served == false && entry.filesReady {
                    let began = book.beginLoad(name)
                    #expect(began)
                    book.loadEnded(name, succeeded: true)
                    acted = true
                } else if !entry.wanted && entry.served == true && book.beginUnload(name, required: !entry.declared) {
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
        Set(book.entries.filter { $0.value.served == true }.map(\.key.rawValue))
    }

    static func allReady(_ book: inout CacheBook) {
        for (name, entry) in book.entries { book.sync(name, filesReady: true, served: entry.served ?? false) }
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
        #expect(changes.release == [a], "its requests go on in the same decision: no later one comes")
        #expect(changes.coldLoads.isEmpty, "nothing is loaded")
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
        #expect(book.admit(b) == .refused(.queueFull))
        book.finished(b, wasHeld: true)
        #expect(book.admit(b) == .held)
    }

    @Test func aRequestWaitsForFilesWithoutTakingMemory() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        book.sync(a, filesReady: true, served: false)
        Self.settle(&book)
        #expect(book.admit(b) == .held)
        #expect(book.rebalance().evicted.isEmpty, "b is still downloading")
        book.sync(b, filesReady: true, served: false)
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
        #expect(book.used == 2, "the server may have loaded it after all")
        book.sync(a, filesReady: true, served: false)
        #expect(book.used == 1)
    }

    @Test func whatTheServerMayHoldAtStartupIsChargedUntilKnownThenKeptIfItFits() {
        var book = CacheBook(capacity: 1, maxHeld: 8)
        book.declare([(a, 1), (b, 1)], servedUnknown: [a, b])
        #expect(book.used == 2, "either may be loaded: both count")
        #expect(book.rebalance().wake.isEmpty, "nothing is loaded while that is not known")
        book.sync(b, filesReady: true, served: true)
        #expect(book.wantsLoaded(b) == true)
        book.sync(a, filesReady: true, served: true)
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
        book.sync(c, filesReady: true, served: false)
        #expect(book.rebalance().wake == [c])
    }

    @Test func aChangedSizeKeepsItsPlaceOnlyIfItFitsAndTheLoadedVersionCounts() {
        var book = Self.book(3, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        book.declare([(a, 2), (b, 1)])
        #expect(book.wantsLoaded(a) == true, "2 + 1 fit in 3: requests keep reaching the loaded version")
        #expect(book.entries[a]?.filesReady == false)
        #expect(book.used == 3)
        book.declare([(a, 3), (b, 1)])
        #expect(book.wantsLoaded(a) == false, "3 + 1 do not fit")
        #expect(book.used == 2, "the loaded version (1) counts until it is unloaded")
        // Smaller again while the server holds the bigger one: the bigger one counts.
        var shrink = Self.book(4, [("a", 3)])
        _ = shrink.rebalance()
        Self.allReady(&shrink)
        Self.settle(&shrink)
        shrink.declare([(a, 1)])
        #expect(shrink.used == 3)
    }

    @Test func freedMemoryWaitsForAMoreRecentModelBeingReplaced() {
        var book = Self.book(2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        // a, the most recent, grows past what fits beside b: its old version stays loaded.
        book.declare([(a, 2), (b, 1), (c, 1)])
        #expect(book.wantsLoaded(a) == false)
        // b leaves models.json and is unloaded: its room is not given to c, less recent.
        book.declare([(a, 2), (c, 1)])
        let unloading = book.beginUnload(b, required: true)
        #expect(unloading)
        book.unloadEnded(b, succeeded: true)
        #expect(!book.rebalance().wake.contains(c))
        // Once a's old version is unloaded, a takes the room.
        book.sync(a, filesReady: true, served: true)
        let replacing = book.beginUnload(a, required: true)
        #expect(replacing)
        book.unloadEnded(a, succeeded: true)
        #expect(book.rebalance().wake == [a])
    }

    @Test func aLoadInFlightCountsWhateverModelsJsonSaysMeanwhile() {
        var book = Self.book(4, [("a", 3), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        let began = book.beginLoad(a)
        #expect(began)
        book.declare([(b, 1)])
        #expect(book.entries[a] != nil && book.used == 4, "removed mid-load: still charged")
        book.declare([(a, 1), (b, 1)])
        #expect(book.used == 4, "resized mid-load: the size being loaded counts")
        book.loadEnded(a, succeeded: true)
        #expect(book.entries[a]?.servedSize == 3)
    }

    @Test func aFailedLoadIsRefusedWithoutEvictingUntilItsWorkerAsksTheServerAgain() {
        var book = Self.book(1, [("a", 1), ("b", 1)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(b) == .held)
        _ = book.rebalance()
        let unloading = book.beginUnload(a, required: false)
        #expect(unloading)
        book.unloadEnded(a, succeeded: true)
        _ = book.rebalance()
        let loading = book.beginLoad(b)
        #expect(loading)
        book.loadEnded(b, succeeded: false)
        #expect(book.used == 1, "the server may have loaded it after all")
        #expect(book.admit(b) == .refused(.loadFailed))
        #expect(book.rebalance().evicted.isEmpty)
        book.sync(b, filesReady: true, served: false)
        #expect(book.used == 0)
        #expect(book.admit(b) == .held)
    }

    @Test func aRequestThatCannotBeMetEvictsNothingAndDoesNotBlockOthers() {
        // a is in use; c needs more than b alone gives back: nothing is evicted, and a
        // request for d (which b's memory fits) still gets it.
        var book = Self.book(10, [("a", 5), ("b", 5), ("c", 8), ("d", 5)])
        _ = book.rebalance()
        Self.allReady(&book)
        Self.settle(&book)
        #expect(book.admit(a) == .admitted)
        #expect(book.admit(c) == .held)
        #expect(book.rebalance().evicted.isEmpty)
        #expect(book.admit(d) == .held)
        #expect(book.rebalance().evicted == [.init(victim: b, making: d)])
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
