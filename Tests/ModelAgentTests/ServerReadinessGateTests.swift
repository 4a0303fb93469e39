import Logging
import Synchronization
import TestSupport
import Testing

@testable import ModelAgent

/// The gate that holds loads back until the model server is ready, with a server in memory
/// that answers its health probe only when told to.
@Suite(.timeLimit(.minutes(2)))
struct ServerReadinessGateTests {
    final class SlowServer: ModelServer {
        let ready = Mutex(false)
        /// Probes after the first never answer (until cancelled), so only cancellation can
        /// end a poller that is in one.
        let hangAfterFirstProbe: Bool
        let probes = Mutex(0)
        let baseURL = "memory://slow"

        init(hangAfterFirstProbe: Bool = false) { self.hangAfterFirstProbe = hangAfterFirstProbe }

        func probe(_ path: String) async -> Bool {
            let count = probes.withLock { n -> Int in
                n += 1
                return n
            }
            if hangAfterFirstProbe && count > 1 {
                try? await Task.sleep(for: .seconds(3600))
                return false
            }
            return ready.withLock { $0 }
        }
        func metadata() async -> ModelServerClient.Metadata { .described(name: "memory", version: "1") }
        func isModelReady(_ name: ModelName) async throws -> Bool { false }
        func load(_ name: ModelName, logger: Logger) async throws {}
        func unload(_ name: ModelName, logger: Logger) async throws {}
    }

    @Test("waiters are let through once the server answers ready; the poller then ends")
    func opensOnceReady() async throws {
        let server = SlowServer()
        let gate = ServerReadinessGate(client: server, logger: Logger(label: "test"))
        let waiter = Task { try await gate.wait() }
        try await eventually("the gate to poll") { server.probes.withLock { $0 } >= 2 }
        server.ready.withLock { $0 = true }
        try await waiter.value
        #expect(gate.isOpen && !gate.isPolling)
        #expect(try await gate.flavor() == .generic)
    }

    @Test("a callback waits without a task and is called once the server is ready; none when open")
    func callbacksWaitWithoutATask() async throws {
        final class Calls: Sendable {
            let count = Mutex(0)
        }
        let server = SlowServer()
        let gate = ServerReadinessGate(client: server, logger: Logger(label: "test"))
        let calls = Calls()
        #expect(gate.whenOpen { calls.count.withLock { $0 += 1 } })
        #expect(gate.whenOpen { calls.count.withLock { $0 += 1 } })
        try await eventually("the gate to poll for its callbacks") { server.probes.withLock { $0 } >= 2 }
        #expect(gate.waiterCount == 2 && calls.count.withLock { $0 } == 0)
        server.ready.withLock { $0 = true }
        try await eventually("both callbacks") { calls.count.withLock { $0 } == 2 }
        #expect(gate.isOpen && !gate.isPolling && gate.knownFlavor == .generic)
        // Open already: nothing registered, nothing called.
        #expect(!gate.whenOpen { calls.count.withLock { $0 += 1 } })
        #expect(calls.count.withLock { $0 } == 2)
    }

    @Test("close fails the waits and cancels the poller of a server that never becomes ready")
    func closeEndsThePoller() async throws {
        let server = SlowServer(hangAfterFirstProbe: true)
        let gate = ServerReadinessGate(client: server, flavor: .generic, logger: Logger(label: "test"))
        let waiters = (0..<3).map { _ in Task { try await gate.wait() } }
        // All three wait, and the poller hangs in its second probe: only its cancellation
        // by close can end it.
        try await eventually("three waiters and a hanging probe") {
            gate.waiterCount == 3 && server.probes.withLock { $0 } == 2
        }
        gate.close()
        for waiter in waiters {
            await #expect(throws: CancellationError.self) { try await waiter.value }
        }
        try await eventually("the poller to end") { !gate.isPolling }
        #expect(server.probes.withLock { $0 } == 2)
        // A wait after close fails at once instead of starting another poller.
        await #expect(throws: CancellationError.self) { try await gate.wait() }
        #expect(!gate.isPolling && !gate.isOpen && server.probes.withLock { $0 } == 2)
    }
}
