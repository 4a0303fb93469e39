import Testing

@testable import ModelAgent

/// The disk tier's decisions (`--disk-capacity`): which Standby models keep their files,
/// which leave the disk, which are fetched again for a request, and what never leaves.
@Suite struct CacheDiskTierTests {
    static func name(_ text: String) -> ModelName { CacheBookTests.name(text) }
    let a = name("a")
    let b = name("b")
    let c = name("c")
    let d = name("d")
    let e = name("e")

    /// Plays the workers with files: a model kept and not on disk is downloaded (taking
    /// `bytes`), one not kept is unloaded and then its files go; wanted models load. Returns
    /// the models whose waiting requests were released meanwhile.
    @discardableResult
    static func settle(_ book: inout CacheBook, bytes: Int64 = 1) -> Set<ModelName> {
        var released: Set<ModelName> = []
        for _ in 0..<30 {
            let changes = book.rebalance()
            for name in changes.release {
                book.heldAnswered(name)
                released.insert(name)
            }
            var acted = false
            for (name, entry) in book.entries.sorted(by: { $0.key < $1.key }) {
                if entry.keepFiles && !entry.onDisk && entry.declared {
                    book.sync(name, filesReady: true, served: entry.served ?? false, onDisk: true, diskBytes: bytes)
                    acted = true
                } else if entry.wanted && entry.served == false && entry.filesReady {
                    let began = book.beginLoad(name)
                    #expect(began)
                    book.loadEnded(name, succeeded: true)
                    acted = true
                } else if !entry.wanted && entry.served == true && book.beginUnload(name, required: !entry.declared) {
                    book.unloadEnded(name, succeeded: true)
                    acted = true
                } else if !entry.keepFiles && entry.onDisk && entry.served == false && !entry.loading {
                    book.sync(name, filesReady: false, served: false, onDisk: false)
                    acted = true
                }
            }
            if !acted { return released }
        }
        Issue.record("workers did not settle")
        return released
    }

    static func onDisk(_ book: CacheBook) -> Set<String> {
        Set(book.entries.filter(\.value.onDisk).map(\.key.rawValue))
    }

    static func loaded(_ book: CacheBook) -> Set<String> {
        Set(book.entries.filter { $0.value.served == true }.map(\.key.rawValue))
    }

    /// Memory for one model of size 1; disk for `disk` bytes.
    static func book(disk: Int64, _ models: [(String, Int64)] = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)])
        -> CacheBook
    {
        var book = CacheBook(capacity: 1, maxHeld: 8, diskCapacity: disk)
        book.declare(models.map { (name($0.0), $0.1) })
        return book
    }

    @Test func onlyTheMostRecentModelsThatFitAreDownloaded() {
        var book = Self.book(disk: 3)
        _ = book.rebalance()
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"])
        #expect(Self.onDisk(book) == ["a", "b", "c"])
        #expect(book.keepsFiles(d) == false && book.keepsFiles(e) == false)
        #expect(book.diskUsed == 3)
    }

    @Test func aRequestForAModelOffDiskFetchesItAndTheLeastRecentlyUsedStandbyLeaves() {
        var book = Self.book(disk: 3)
        _ = book.rebalance()
        Self.settle(&book)
        #expect(book.admit(e) == .held)
        let changes = book.rebalance()
        #expect(changes.fetches == [e])
        // a is loaded and e is in use: one place is left, for b (more recent than c).
        #expect(changes.leavingDisk == [c])
        #expect(book.keepsFiles(e) == true && book.keepsFiles(c) == false)
        #expect(Self.settle(&book) == [e])
        #expect(Self.loaded(book) == ["e"])
        #expect(Self.onDisk(book) == ["a", "b", "e"])
        #expect(book.entries[e]?.held == 0 && book.entries[e]?.isServing == true)
    }

    @Test func aHeldRequestIsReleasedOnceItsModelIsFetchedAndLoaded() {
        var book = Self.book(disk: 2)
        _ = book.rebalance()
        Self.settle(&book)
        #expect(book.admit(d) == .held)
        #expect(Self.settle(&book) == [d])
        #expect(Self.loaded(book) == ["d"])
        #expect(book.entries[d]?.held == 0)
    }

    @Test func sizesNotYetMeasuredCountAtTheirMemoryAndMeasuredOnesReplaceThem() {
        // Memory sizes of 10 (each over the memory capacity 20 / 2), disk 15: at first only
        // one estimate fits; once measured at 1 byte each, all fit.
        var book = CacheBook(capacity: 20, maxHeld: 8, diskCapacity: 15)
        book.declare([(a, 10), (b, 10), (c, 10)])
        _ = book.rebalance()
        #expect(book.keepsFiles(a) == true)
        #expect(book.keepsFiles(b) == false && book.keepsFiles(c) == false)
        Self.settle(&book, bytes: 1)
        #expect(Self.onDisk(book) == ["a", "b", "c"])
        #expect(book.diskUsed == 3)
    }

    @Test func filesLeavingCountUntilTheyAreGone() {
        // Startup: a and b found on disk (the server not yet asked), c new and ranked first.
        var book = CacheBook(capacity: 1, maxHeld: 8, diskCapacity: 2)
        book.declare([(c, 1), (a, 1), (b, 1)], servedUnknown: [a, b], diskBytes: [a: 1, b: 1])
        _ = book.rebalance()
        #expect(book.keepsFiles(c) == false, "no room while a and b are there")
        // b turns out not to be served: it is to leave, but c (not requested) is not
        // fetched while b's files are there.
        book.sync(b, filesReady: true, served: false, onDisk: true)
        _ = book.rebalance()
        #expect(book.keepsFiles(b) == false)
        #expect(book.keepsFiles(c) == false)
        #expect(book.diskUsed == 2)
        book.sync(b, filesReady: false, served: false, onDisk: false)
        _ = book.rebalance()
        #expect(book.keepsFiles(c) == true)
    }

    @Test func modelsLoadedOrInUseKeepTheirFilesPastTheCapacity() {
        var book = CacheBook(capacity: 2, maxHeld: 8, diskCapacity: 2)
        book.declare([(a, 1), (b, 1), (c, 1)])
        _ = book.rebalance()
        Self.settle(&book, bytes: 1)
        #expect(Self.loaded(book) == ["a", "b"])
        #expect(Self.onDisk(book) == ["a", "b"])
        // A request for c fetches it although the disk is full; no loaded model's files go.
        #expect(book.admit(c) == .held)
        let changes = book.rebalance()
        #expect(changes.fetches == [c])
        #expect(changes.leavingDisk.isEmpty)
        book.sync(c, filesReady: true, served: false, onDisk: true, diskBytes: 1)
        #expect(book.diskUsed == 3)
        // Once c is loaded in b's place, b is Standby and leaves the disk.
        Self.settle(&book, bytes: 1)
        #expect(Self.loaded(book) == ["a", "c"])
        #expect(Self.onDisk(book) == ["a", "c"])
    }

    @Test func modelsTooLargeForMemoryTakeNoDisk() {
        var book = Self.book(disk: 10, [("a", 1), ("b", 5)])
        _ = book.rebalance()
        Self.settle(&book)
        #expect(Self.onDisk(book) == ["a"])
        #expect(book.keepsFiles(b) == false)
    }

    @Test(arguments: [["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"]])
    func modelsFoundOnDiskAtStartupStayUntilTheServerIsAskedAndTheMostRecentRemain(reports: [String]) {
        // a is the most recent; disk for two; whatever order their workers report in.
        var book = CacheBook(capacity: 1, maxHeld: 8, diskCapacity: 2)
        book.declare([(a, 1), (b, 1), (c, 1)], servedUnknown: [a, b, c], diskBytes: [a: 1, b: 1, c: 1])
        _ = book.rebalance()
        #expect([a, b, c].allSatisfy { book.keepsFiles($0) == true })
        var left: [ModelName] = []
        for report in reports {
            book.sync(Self.name(report), filesReady: true, served: false, onDisk: true)
            left += book.rebalance().leavingDisk
        }
        #expect(left == [c], "reported in \(reports)")
        Self.settle(&book)
        #expect(Self.onDisk(book) == ["a", "b"])
    }

    @Test func aModelRemovedAndAddedAgainIsFetchedOnRequest() {
        for disk: Int64? in [nil, 2] {
            var book = CacheBook(capacity: 1, maxHeld: 8, diskCapacity: disk)
            book.declare([(a, 1), (b, 1)])
            Self.settle(&book)
            #expect(Self.loaded(book) == ["a"])
            // b leaves models.json; its worker removes its files; it comes back before the
            // book forgets it.
            book.declare([(a, 1)])
            book.declare([(a, 1), (b, 1)])
            book.sync(b, filesReady: false, served: false, onDisk: false)
            #expect(book.admit(b) == .held)
            #expect(Self.settle(&book) == [b], "disk capacity \(String(describing: disk))")
            #expect(Self.loaded(book) == ["b"])
        }
    }

    @Test func aSpecChangeOfAModelOffDiskWaitsForARequest() {
        var book = Self.book(disk: 2)
        Self.settle(&book)
        #expect(book.keepsFiles(e) == false)
        // A new size for e: still off disk, nothing fetched until a request.
        book.declare([(a, 1), (b, 1), (c, 1), (d, 1), (e, 2)])
        Self.settle(&book)
        #expect(book.keepsFiles(e) == false && book.entries[e]?.onDisk == false)
        #expect(book.admit(e) == .refused(.tooLarge))
        book.declare([(a, 1), (b, 1), (c, 1), (d, 1), (e, 1)])
        #expect(book.admit(e) == .held)
        #expect(Self.settle(&book) == [e])
    }

    @Test func filesLeavingAreNotReadyForALoad() {
        var book = Self.book(disk: 1, [("a", 1), ("b", 1)])
        // b is on disk and Standby, then leaves: a request for it finds its files not ready
        // and gets them kept again rather than a load on files being removed.
        book.sync(b, filesReady: true, served: false, onDisk: true, diskBytes: 1)
        Self.settle(&book)
        #expect(book.keepsFiles(b) == false)
        book.sync(b, filesReady: true, served: false, onDisk: true)
        #expect(book.entries[b]?.filesReady == false)
        #expect(book.admit(b) == .held)
        let changes = book.rebalance()
        #expect(!changes.coldLoads.contains(b))
        #expect(book.keepsFiles(b) == true)
    }

    @Test func aRemovedModelIsCountedUntilItsFilesAreGone() {
        var book = Self.book(disk: 2, [("a", 1), ("b", 1), ("c", 1)])
        _ = book.rebalance()
        Self.settle(&book)
        book.declare([(a, 1), (c, 1)])
        _ = book.rebalance()
        #expect(book.entries[b] != nil)
        #expect(book.keepsFiles(c) == false)
        book.sync(b, filesReady: false, served: false, onDisk: false)
        #expect(book.entries[b] == nil)
        _ = book.rebalance()
        #expect(book.keepsFiles(c) == true)
    }

    @Test func withoutADiskCapacityEveryModelKeepsItsFiles() {
        var book = CacheBook(capacity: 1, maxHeld: 8)
        book.declare([(a, 1), (b, 1), (c, 5)])
        let changes = book.rebalance()
        #expect(changes.leavingDisk.isEmpty)
        #expect([a, b, c].allSatisfy { book.keepsFiles($0) == true })
    }

    @Test func aFailedFetchRefusesRequestsUntilTheWorkerTriesAgainButAServedModelGoesOn() {
        var book = Self.book(disk: 3)
        Self.settle(&book)
        #expect(book.admit(e) == .held)
        #expect(book.rebalance().fetches == [e])
        let refused = book.fetchFailed(e)
        #expect(refused)
        book.heldAnswered(e)
        #expect(book.admit(e) == .refused(.loadFailed))
        #expect(book.entries[e]?.wanted == false)
        book.finished(e, wasHeld: false)
        // Its worker, after its backoff, reports again: requests wait for a new try.
        book.sync(e, filesReady: false, served: false, onDisk: false)
        #expect(book.admit(e) == .held)
        // A loaded model whose new version fails to download goes on serving the old one.
        #expect(Self.loaded(book).contains("a"))
        let refusedServed = book.fetchFailed(a)
        #expect(!refusedServed)
        #expect(book.admit(a) == .admitted)
    }

    @Test func aFetchWhoseRequestGaveUpIsLoadedWhenItLandsAndKeepsItsFiles() {
        // Disk for the loaded model only: no Standby model keeps its files.
        var book = Self.book(disk: 1)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"] && Self.onDisk(book) == ["a"])
        #expect(book.admit(c) == .held)
        #expect(book.rebalance().fetches == [c])
        // The request gives up (a client with a short timeout) before c's files land.
        book.finished(c, wasHeld: true)
        #expect(book.rebalance().leavingDisk.isEmpty)
        #expect(book.keepsFiles(c) == true, "the download goes on")
        // They land: c, the most recently used, is loaded in a's place, and keeps its
        // files; a client asking again finds it loaded.
        Self.settle(&book)
        #expect(Self.loaded(book) == ["c"])
        #expect(Self.onDisk(book) == ["c"])
        #expect(!book.owedLoads.contains(c))
        #expect(book.admit(c) == .admitted)
    }

    @Test func aLoadOwedWhileEveryModelIsInUseIsGivenUpAndTheFilesPlacedByRecency() {
        var book = Self.book(disk: 2)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"] && Self.onDisk(book) == ["a", "b"])
        #expect(book.admit(a) == .admitted)
        #expect(book.admit(c) == .held)
        Self.settle(&book)
        // c's files are there, but a is in use: c's request gives up meanwhile. Nothing
        // waits on a's request for c: c is Standby, the most recent, and keeps its files
        // (b leaves for it).
        book.finished(c, wasHeld: true)
        Self.settle(&book)
        #expect(book.owedLoads.isEmpty)
        #expect(Self.loaded(book) == ["a"] && Self.onDisk(book) == ["a", "c"])
        book.finished(a, wasHeld: false)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"], "a Standby model is loaded only on request")
        #expect(book.admit(c) == .held)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["c"])
    }

    @Test func aLoadOwedEvictsOnlyModelsUsedLessRecentlyThanItsRequest() {
        var book = Self.book(disk: 1)
        Self.settle(&book)
        #expect(book.admit(c) == .held)
        #expect(book.rebalance().fetches == [c])
        book.finished(c, wasHeld: true)
        _ = book.rebalance()
        // a is used after c's request gave up: when c's files land, a stays (without that
        // use, a is evicted for c: see above).
        #expect(book.admit(a) == .admitted)
        book.finished(a, wasHeld: false)
        book.sync(c, filesReady: true, served: false, onDisk: true, diskBytes: 1)
        let changes = book.rebalance()
        #expect(changes.evicted.isEmpty && changes.owedLoads.isEmpty)
        #expect(book.owedLoads.isEmpty)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"] && Self.onDisk(book) == ["a"])
    }

    @Test func aGrantedOwedLoadIsNotTakenBackForAnother() {
        // Memory for one model, disk for all; nothing loaded yet (no files).
        var book = CacheBook(capacity: 1, maxHeld: 8, diskCapacity: 10)
        book.declare([(a, 1), (b, 1), (c, 1)])
        _ = book.rebalance()
        // Requests for b, then c, give up before any files land.
        #expect(book.admit(b) == .held)
        #expect(book.admit(c) == .held)
        book.finished(b, wasHeld: true)
        book.finished(c, wasHeld: true)
        for name in [a, b, c] { book.sync(name, filesReady: true, served: false, onDisk: true, diskBytes: 1) }
        let changes = book.rebalance()
        // b asked first: it gets the memory, and c does not take it back.
        #expect(changes.owedLoads == [b])
        #expect(changes.evicted.isEmpty && changes.coldLoads.isEmpty)
        #expect(book.wantsLoaded(b) == true && book.wantsLoaded(c) == false)
        #expect(book.owedLoads == [b])
        Self.settle(&book)
        #expect(Self.loaded(book) == ["b"] && book.owedLoads.isEmpty)
    }

    @Test func aFailedFetchOwesNoLoad() {
        var book = Self.book(disk: 1)
        Self.settle(&book)
        #expect(book.admit(c) == .held)
        _ = book.rebalance()
        book.finished(c, wasHeld: true)
        _ = book.fetchFailed(c)
        #expect(!book.owedLoads.contains(c))
        _ = book.rebalance()
        #expect(book.keepsFiles(c) == false)
        Self.settle(&book)
        #expect(Self.loaded(book) == ["a"] && Self.onDisk(book) == ["a"])
    }
}
