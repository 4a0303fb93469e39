import Foundation
import Logging
import Prometheus
import Synchronization
import TestSupport
import Testing

@testable import ModelAgent

/// The reconciler and its workers in process, with local sources and an in-memory model
/// server: what reaches the server, and what ends up on disk, without any process.
@Suite(.timeLimit(.minutes(2)))
struct ReconcilerTests {
    /// A V2 server in memory: it holds a set of loaded models, records every call, and
    /// fails the calls a test asks it to.
    final class MemoryServer: ModelServer {
        struct State {
            var loaded: Set<String> = []
            var calls: [String] = []
            var failLoads: [String: Int] = [:]
        }
        let state = Mutex(State())
        /// Whether the health probe says ready.
        let ready = Mutex(true)
        let baseURL = "memory://server"

        func probe(_ path: String) async -> Bool { ready.withLock { $0 } }
        func metadata() async -> ModelServerClient.Metadata { .described(name: "memory", version: "1") }

        func isModelReady(_ name: ModelName) async throws -> Bool {
            state.withLock { s in
                s.calls.append("ready \(name)")
                return s.loaded.contains("\(name)")
            }
        }

        func load(_ name: ModelName, logger: Logger) async throws {
            let failing = state.withLock { s -> Bool in
                s.calls.append("load \(name)")
                if let left = s.failLoads["\(name)"], left > 0 {
                    s.failLoads["\(name)"] = left - 1
                    return true
                }
                s.loaded.insert("\(name)")
                return false
            }
            if failing {
                throw LoadFailure(model: name, operation: "load", status: 500, body: Array(#"{"error":"boom"}"#.utf8))
            }
        }

        func unload(_ name: ModelName, logger: Logger) async throws {
            state.withLock { s in
                s.calls.append("unload \(name)")
                s.loaded.remove("\(name)")
            }
        }

        var calls: [String] { state.withLock { $0.calls } }
        var loaded: Set<String> { state.withLock { $0.loaded } }
    }

    final class World: @unchecked Sendable {
        let temp: TemporaryDirectory
        let sources: String
        let store: ModelStore
        let server = MemoryServer()
        let board = StatusBoard()
        let context: WorkerContext
        let reconciler: Reconciler

        /// `workers`: how many models' workers may run at once (nil: the agent's default;
        /// with `cache`, one of them kept for models a request waits for); `backoff`: the
        /// first retry delay after a failure; `flavor` nil: learnt from the server once it answers.
        init(
            disk: Bool = false, workers: Int? = nil, backoff: Duration = .milliseconds(10), cache: ModelCache? = nil,
            flavor: ServerFlavor? = .generic, serverReady: Bool = true
        ) throws {
            server.ready.withLock { $0 = serverReady }
            temp = try TemporaryDirectory("reconciler")
            sources = try temp.subdirectory("sources")
            for version in ["v1", "v2"] {
                try FileManager.default.createDirectory(
                    atPath: sources + "/\(version)", withIntermediateDirectories: true)
                try Data("weights \(version)".utf8).write(to: URL(fileURLWithPath: sources + "/\(version)/w.bin"))
            }
            store = ModelStore(modelDir: temp.path + "/models")
            let logger = Logger(label: "reconciler-test")
            try store.prepare(logger: logger)
            context = WorkerContext(
                store: store, storage: StorageRouter(local: LocalStorageProvider(roots: [temp.path])), server: server,
                gate: ServerReadinessGate(client: server, flavor: flavor, logger: logger),
                downloads: AsyncLimiter(limit: 2), loads: AsyncLimiter(limit: 2), board: board,
                metrics: AgentMetrics(), logger: logger,
                failureBackoff: RetryPolicy(
                    maxAttempts: .max, initialDelay: backoff, maxDelay: max(backoff, .milliseconds(50))),
                workers: workers.map { AsyncLimiter(limit: $0, reserved: cache == nil ? 0 : 1) }, cache: cache)
            reconciler = Reconciler(context: context, disk: try store.recover(logger: logger))
        }

        func spec(_ version: String) -> ModelSpec {
            ModelSpec(storageUri: "file://" + sources + "/" + version, framework: "sklearn")
        }

        func name(_ text: String) throws -> ModelName { try ModelName(validating: text) }

        func settle(_ expected: [String: ModelState]) async throws {
            try await eventually("states \(expected)") {
                let states = Dictionary(uniqueKeysWithValues: board.snapshot().map { ("\($0.name)", $0.state) })
                return states == expected
            }
        }
    }

    @Test func wishesReachTheServerAndTheDiskInOrder() async throws {
        let w = try World()
        try w.reconciler.apply([w.name("m"): w.spec("v1"), w.name("n"): w.spec("v1")])
        try await w.settle(["m": .loaded, "n": .loaded])
        #expect(w.reconciler.isReady)
        #expect(w.server.loaded == ["m", "n"])
        #expect(try String(contentsOfFile: w.store.path(of: w.name("m")) + "/w.bin", encoding: .utf8) == "weights v1")

        // A spec change: the old version leaves the server before its files are replaced.
        try w.reconciler.apply([w.name("m"): w.spec("v2"), w.name("n"): w.spec("v1")])
        try await eventually("m to be reloaded") { w.server.calls.filter { $0 == "load m" }.count == 2 }
        try await w.settle(["m": .loaded, "n": .loaded])
        #expect(w.server.calls.filter { $0.hasSuffix(" m") } == ["load m", "unload m", "load m"])
        #expect(try String(contentsOfFile: w.store.path(of: w.name("m")) + "/w.bin", encoding: .utf8) == "weights v2")

        // Removal: unloaded, then its directory goes.
        try w.reconciler.apply([w.name("m"): w.spec("v2")])
        try await w.settle(["m": .loaded])
        try await eventually("n's directory to go") { !w.store.directoryExists(try w.name("n")) }
        #expect(w.server.loaded == ["m"])
        await w.reconciler.shutdown(timeout: .seconds(10))
    }

    @Test func aModelRemovedWhileItWaitsForADownloadSlotLeavesAtOnce() async throws {
        let w = try World()
        // Every download slot is taken (by the test): m waits in line.
        try await w.context.downloads.acquire()
        try await w.context.downloads.acquire()
        try w.reconciler.apply([w.name("m"): w.spec("v1")])
        try await w.settle(["m": .pending])
        try await eventually("m in line for a download slot") { w.context.downloads.waiting == 1 }
        // Removed from models.json: it leaves the line and the list while the slots are taken.
        w.reconciler.apply([:])
        try await w.settle([:])
        #expect(w.context.downloads.waiting == 0 && w.context.downloads.inUse == 2)
        // Added back, it waits again and is served once a slot is free.
        try w.reconciler.apply([w.name("m"): w.spec("v2")])
        try await w.settle(["m": .pending])
        try await eventually("m in line again") { w.context.downloads.waiting == 1 }
        w.context.downloads.release()
        try await w.settle(["m": .loaded])
        #expect(try String(contentsOfFile: w.store.path(of: w.name("m")) + "/w.bin", encoding: .utf8) == "weights v2")
        w.context.downloads.release()
        await w.reconciler.shutdown(timeout: .seconds(10))
        #expect(w.context.downloads.inUse == 0 && w.context.workers.inUse == 0)
    }

    @Test func aModelRemovedWhileItWaitsForAWorkerSlotGoesAheadOfTheLine() async throws {
        let w = try World(workers: 1)
        // The only worker slot and both download slots are the test's: a worker that gets
        // the slot and needs a download keeps it while it waits for one.
        try await w.context.workers.acquire()
        try await w.context.downloads.acquire()
        try await w.context.downloads.acquire()
        try w.reconciler.apply([w.name("m1"): w.spec("v1"), w.name("m2"): w.spec("v1"), w.name("m3"): w.spec("v1")])
        try await eventually("three workers in line") { w.context.workers.waiting == 3 }
        // m3, last in line, is removed: once the slot is free its removal runs first, and
        // m1 then waits for a download holding the slot. In arrival order, m1 would take
        // the slot and m3 would wait behind it for as long as downloads are held.
        try w.reconciler.apply([w.name("m1"): w.spec("v1"), w.name("m2"): w.spec("v1")])
        w.context.workers.release()
        try await w.settle(["m1": .pending, "m2": .pending])
        try await eventually("m1 waits for a download, m2 for the worker slot") {
            w.context.downloads.waiting == 1 && w.context.workers.waiting == 1
        }
        w.context.downloads.release()
        w.context.downloads.release()
        try await w.settle(["m1": .loaded, "m2": .loaded])
        await w.reconciler.shutdown(timeout: .seconds(10))
        #expect(w.context.downloads.inUse == 0 && w.context.workers.inUse == 0)
    }

    @Test func shutdownEndsWorkersStillWaitingForAWorkerSlotAtOnce() async throws {
        let w = try World(workers: 1)
        // m0 loads; its next loop (a recheck) is a second loop of the same worker.
        try w.reconciler.apply([w.name("m0"): w.spec("v1")])
        try await w.settle(["m0": .loaded])
        // The only worker slot is taken (by the test): the recheck of m0, m1 and m2 wait for
        // it, without tasks.
        try await w.context.workers.acquire()
        try w.reconciler.apply([w.name("m0"): w.spec("v1"), w.name("m1"): w.spec("v1"), w.name("m2"): w.spec("v1")])
        w.reconciler.recheckServed()
        try await eventually("three workers in line") { w.context.workers.waiting == 3 }
        let controllers = try ["m0", "m1", "m2"].map { try #require(w.reconciler.controller(for: w.name($0))) }
        #expect(controllers.allSatisfy { !$0.isIdle })
        // They leave the line and end; the slot stays the test's. A worker left in line
        // would keep shutdown waiting for the whole timeout.
        #expect(await w.reconciler.shutdown(timeout: .seconds(60)))
        #expect(controllers.allSatisfy { $0.isIdle })
        #expect(w.context.workers.waiting == 0 && w.context.workers.inUse == 1)
        #expect(w.server.calls == ["load m0"])
        w.context.workers.release()
    }

    @Test func workersWaitingForTheServerParkWithoutTasksWhileTheOthersDownload() async throws {
        // One worker slot; a server not ready yet, its kind unknown. Each model downloads
        // (the first one's files staged, to be shaped for the server once its kind is known;
        // the others' committed, once the gate has learnt it), then parks without a task and
        // gives the slot to the next.
        let w = try World(workers: 1, flavor: nil, serverReady: false)
        let names = try ["m0", "m1", "m2"].map { try w.name($0) }
        w.reconciler.apply(Dictionary(uniqueKeysWithValues: names.map { ($0, w.spec("v1")) }))
        try await eventually("three parked workers") {
            w.context.gate.waiterCount == 3 && w.context.workers.inUse == 0
        }
        let controllers = try names.map { try #require(w.reconciler.controller(for: $0)) }
        #expect(controllers.allSatisfy { $0.isIdle })
        #expect(w.server.calls.isEmpty)
        // The resync's rechecks wake them; they park again, still one callback each.
        w.reconciler.recheckServed()
        #expect(controllers.allSatisfy { !$0.isIdle })
        try await eventually("parked again") { controllers.allSatisfy { $0.isIdle } }
        #expect(w.context.gate.waiterCount == 3)
        try await w.settle(["m0": .loading, "m1": .loading, "m2": .loading])
        // The server comes up: each is shaped, committed and loaded.
        w.server.ready.withLock { $0 = true }
        try await w.settle(["m0": .loaded, "m1": .loaded, "m2": .loaded])
        #expect(w.server.calls.filter { $0.hasPrefix("load") }.sorted() == ["load m0", "load m1", "load m2"])
        #expect(names.allSatisfy { w.store.directoryExists($0) })
        #expect(await w.reconciler.shutdown(timeout: .seconds(10)))
    }

    @Test func aModelRemovedWhileItWaitsForALoadSlotLeavesAtOnce() async throws {
        let w = try World()
        // Every load slot is taken (by the test): m downloads, then waits in line to load.
        try await w.context.loads.acquire()
        try await w.context.loads.acquire()
        try w.reconciler.apply([w.name("m"): w.spec("v1")])
        try await eventually("m in line for a load slot") { w.context.loads.waiting == 1 }
        // Removed from models.json: it leaves the line (no load, no unload) and the list.
        w.reconciler.apply([:])
        try await w.settle([:])
        try await eventually("m's directory to go") { !w.store.directoryExists(try w.name("m")) }
        #expect(w.context.loads.waiting == 0 && w.context.loads.inUse == 2)
        #expect(w.server.calls.isEmpty)
        w.context.loads.release()
        w.context.loads.release()
        #expect(await w.reconciler.shutdown(timeout: .seconds(10)))
    }

    @Test func aRequestedModelsWorkerStartsAndDownloadsFirstWhileOthersHoldTheWorkerSlots() async throws {
        let temp = try TemporaryDirectory("reconciler-cache")
        let logger = Logger(label: "reconciler-test")
        let cache = ModelCache(
            options: CacheOptions(capacity: 1 << 40), recency: RecencyFile(modelDir: temp.path, logger: logger),
            metrics: CacheMetrics(registry: PrometheusCollectorRegistry(), capacity: 1 << 40), logger: logger)
        // Two worker slots, one kept for requested models; every download slot is taken (by
        // the test). m1's worker takes the ordinary slot and waits for a download slot,
        // holding its worker slot (its frames stay in that line); m2's worker waits for a
        // worker slot.
        let w = try World(workers: 2, cache: cache)
        try await w.context.downloads.acquire()
        try await w.context.downloads.acquire()
        try w.reconciler.apply([w.name("m1"): w.spec("v1")])
        try await eventually("m1 in line for a download slot") { w.context.downloads.waiting == 1 }
        try w.reconciler.apply([w.name("m1"): w.spec("v1"), w.name("m2"): w.spec("v2")])
        try await eventually("m2 in line for a worker slot") { w.context.workers.waiting == 1 }
        // A request for m2: its worker takes the kept slot, and its download goes first.
        guard case .held(let ticket) = cache.admit(try w.name("m2"), whenHeldEnds: { _ in }) else {
            Issue.record("the request for m2 waits")
            return
        }
        try await eventually("m2 in line for a download slot") { w.context.downloads.waiting == 2 }
        #expect(w.context.workers.waiting == 0 && w.context.workers.inUse == 2)
        // One download slot for both: m2's goes first, though m1 queued before it.
        w.context.downloads.release()
        try await w.settle(["m1": .loaded, "m2": .loaded])
        #expect(w.server.calls.filter { $0.hasPrefix("load") } == ["load m2", "load m1"])
        cache.finished(ticket)
        w.context.downloads.release()
        await w.reconciler.shutdown(timeout: .seconds(10))
        #expect(w.context.downloads.inUse == 0 && w.context.workers.inUse == 0)
    }

    @Test func oneWorkerSlotServesEveryModelAndAFailingModelWaitsWithoutIt() async throws {
        // The failing model's retry is ten minutes away: holding the only slot through it
        // would leave the others pending past the test's time limit.
        let w = try World(workers: 1, backoff: .seconds(600))
        w.server.state.withLock { $0.failLoads["bad"] = 1_000 }
        var desired = [try w.name("bad"): w.spec("v1")]
        w.reconciler.apply(desired)
        try await w.settle(["bad": .failed])
        for index in 0..<6 { desired[try w.name("m\(index)")] = w.spec(index % 2 == 0 ? "v1" : "v2") }
        w.reconciler.apply(desired)
        var expected = ["bad": ModelState.failed]
        for index in 0..<6 { expected["m\(index)"] = .loaded }
        try await w.settle(expected)
        try await eventually("every worker to give its slot back") { w.context.workers.inUse == 0 }
        // Shutdown ends the waiting worker at once.
        await w.reconciler.shutdown(timeout: .seconds(10))
        #expect(w.context.workers.inUse == 0)
    }

    @Test func aFailingLoadIsReportedThenRetriedUntilItSucceeds() async throws {
        let w = try World()
        w.server.state.withLock { $0.failLoads["m"] = 2 }
        try w.reconciler.apply([w.name("m"): w.spec("v1")])
        try await w.settle(["m": .loaded])
        // Between failed loads the server is asked whether the model got loaded after all.
        #expect(w.server.calls == ["load m", "ready m", "load m", "ready m", "load m"])
        let status = try #require(w.board.status(of: w.name("m")))
        #expect(status.lastError == nil && status.failures == 0)
        await w.reconciler.shutdown(timeout: .seconds(10))
    }

    @Test func aRecheckReloadsWhatTheServerLostAndLeavesTheRestAlone() async throws {
        let w = try World()
        try w.reconciler.apply([w.name("m"): w.spec("v1"), w.name("n"): w.spec("v1")])
        try await w.settle(["m": .loaded, "n": .loaded])
        w.server.state.withLock { _ = $0.loaded.remove("m") }
        w.reconciler.recheckServed()
        try await eventually("m to be loaded again") { w.server.loaded == ["m", "n"] }
        try await eventually("both rechecks") { w.server.calls.filter { $0.hasPrefix("ready") }.count == 2 }
        #expect(w.server.calls.filter { $0 == "load n" }.count == 1)
        await w.reconciler.shutdown(timeout: .seconds(10))
    }

    @Test func aRestartWithMarkedModelsOnlyAsksTheServer() async throws {
        let first = try World()
        try first.reconciler.apply([first.name("m"): first.spec("v1")])
        try await first.settle(["m": .loaded])
        await first.reconciler.shutdown(timeout: .seconds(10))

        // A second reconciler over the same model dir, the server still holding m.
        let logger = Logger(label: "reconciler-test")
        // The first shutdown closed its gate for good: a restarted agent has a new one.
        var context = first.context
        context.gate = ServerReadinessGate(client: first.server, flavor: .generic, logger: logger)
        let second = Reconciler(context: context, disk: try first.store.recover(logger: logger))
        second.apply([try first.name("m"): first.spec("v1")])
        try await eventually("the restart to finish") { second.isReady }
        #expect(first.server.calls == ["load m", "ready m"])
        await second.shutdown(timeout: .seconds(10))
    }

    @Test func shutdownEndsAWorkerWaitingOutALongBackOffAndNothingOutlivesIt() async throws {
        let w = try World()
        w.server.state.withLock { $0.failLoads["m"] = 1 }
        final class Weak: @unchecked Sendable { weak var worker: ModelController? }
        let weak = Weak()
        do {
            let slow = WorkerContext(
                store: w.context.store, storage: w.context.storage, server: w.server, gate: w.context.gate,
                downloads: w.context.downloads, loads: w.context.loads, board: w.board, metrics: w.context.metrics,
                logger: w.context.logger,
                failureBackoff: RetryPolicy(maxAttempts: .max, initialDelay: .seconds(3600), maxDelay: .seconds(3600)))
            let reconciler = Reconciler(context: slow, disk: [:])
            reconciler.apply([try w.name("m"): w.spec("v1")])
            try await w.settle(["m": .failed])
            weak.worker = reconciler.controller(for: try w.name("m"))
            #expect(weak.worker != nil)
            // The worker now waits an hour; shutdown must not.
            let started = ContinuousClock.now
            await reconciler.shutdown(timeout: .seconds(600))
            #expect(ContinuousClock.now - started < .seconds(60))
            #expect(weak.worker?.isIdle == true, "shutdown returned before the worker stopped")
            // After shutdown nothing starts again: no wish, recheck or new worker.
            reconciler.apply([try w.name("m"): w.spec("v2"), try w.name("late"): w.spec("v1")])
            reconciler.recheckServed()
            #expect(reconciler.controller(for: try w.name("late")) == nil)
            #expect(weak.worker?.isIdle == true)
        }
        // No timer task keeps the worker alive for the rest of its hour.
        try await eventually("the worker to be released") { weak.worker == nil }
    }
}
