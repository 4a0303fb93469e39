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

    final class Calls: Sendable {
        let count = Mutex(0)
        func record() { count.withLock { $0 += 1 } }
        var made: Int { count.withLock { $0 } }
    }

    @Test("waiters are called back once the server answers ready, without a task; the poller then ends")
    func opensOnceReady() async throws {
        let server = SlowServer()
        let gate = ServerReadinessGate(client: server, logger: Logger(label: "test"))
        let calls = Calls()
        #expect(gate.whenOpen { calls.record() })
        #expect(gate.whenOpen { calls.record() })
        try await eventually("the gate to poll") { server.probes.withLock { $0 } >= 2 }
        #expect(gate.waiterCount == 2 && calls.made == 0)
        server.ready.withLock { $0 = true }
        try await eventually("both callbacks") { calls.made == 2 }
        #expect(gate.isOpen && !gate.isPolling)
        #expect(gate.knownFlavor == .generic)
        // Open already: nothing registered, nothing called.
        #expect(!gate.whenOpen { calls.record() })
        #expect(calls.made == 2)
    }

    @Test("close drops the waiters and cancels the poller of a server that never becomes ready")
    func closeEndsThePoller() async throws {
        let server = SlowServer(hangAfterFirstProbe: true)
        let gate = ServerReadinessGate(client: server, flavor: .generic, logger: Logger(label: "test"))
        let calls = Calls()
        for _ in 0..<3 { #expect(gate.whenOpen { calls.record() }) }
        // All three wait, and the poller hangs in its second probe: only its cancellation
        // by close can end it.
        try await eventually("three waiters and a hanging probe") {
            gate.waiterCount == 3 && server.probes.withLock { $0 } == 2
        }
        gate.close()
        try await eventually("the poller to end") { !gate.isPolling }
        #expect(server.probes.withLock { $0 } == 2)
        #expect(gate.waiterCount == 0 && calls.made == 0)
        // A wait after close is never called back and starts no other poller.
        #expect(gate.whenOpen { calls.record() })
        #expect(!gate.isPolling && !gate.isOpen && server.probes.withLock { $0 } == 2 && gate.waiterCount == 0)
    }
}
