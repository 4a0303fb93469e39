import Logging
import Synchronization

/// Holds back the first loads until the model server reports ready, then stays open.
/// One poller serves every waiting model, so a slow server costs one request per interval.
/// The gate owns the poller: it ends when the server is ready, or at `close`.
final class ServerReadinessGate: Sendable {
    private struct State {
        var open = false
        var closed = false
        var flavor: ServerFlavor?
        var polling = false
        var poller: Task<Void, Never>?
        var waiters: [@Sendable () -> Void] = []
    }

    private let state: Mutex<State>
    private let client: any ModelServer
    private let logger: Logger

    /// `flavor` nil: learn it from `GET /v2` once the server answers.
    init(client: any ModelServer, flavor: ServerFlavor? = nil, logger: Logger) {
        self.client = client
        self.logger = logger
        state = Mutex(State(flavor: flavor))
    }

    var isOpen: Bool { state.withLock { $0.open } }
    /// The server's flavor when known (given, or learnt from `GET /v2`), without waiting.
    var knownFlavor: ServerFlavor? { state.withLock { $0.flavor } }
    /// A poller runs (someone waits for a server that is not ready yet).
    var isPolling: Bool { state.withLock { $0.polling } }
    /// Waits registered now (for tests).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Calls `callback` once the server is ready, without a task waiting meanwhile (a
    /// model's worker parks on it: 10,000 workers waiting for a server that is still
    /// starting cost a closure each, not their frames). False, and no call, when the gate is
    /// open already. After `close` the callback is never called. It is called outside the
    /// gate's lock.
    func whenOpen(_ callback: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            if s.open { return false }
            if s.closed { return true }
            s.waiters.append(callback)
            // Started under the lock: `close` either sees the poller to cancel or refuses.
            if !s.polling {
                s.polling = true
                s.poller = Task { await self.poll() }
            }
            return true
        }
    }

    /// At shutdown: stops the poller and drops the callbacks (the gate stays open if it
    /// was). Final: a closed gate that is not open never calls back.
    func close() {
        let poller = state.withLock { s -> Task<Void, Never>? in
            s.closed = true
            s.waiters = []
            return s.poller
        }
        poller?.cancel()
    }

    private func poll() async {
        var delay = Duration.milliseconds(100)
        var announced = false
        var description = ""
        // GET /v2 without an answer while the server says it is ready: after a few polls it
        // is a server that does not implement it (or hangs on it), not one still starting.
        var unansweredWhileReady = 0
        while true {
            var flavor = state.withLock { $0.flavor }
            if flavor == nil {
                switch await client.metadata() {
                case .described(let name, let version):
                    flavor = ServerFlavor.detect(serverName: name)
                    description = " (\(name) \(version); flavor from GET /v2)"
                case .undescribed(let reason):
                    // Any V2 server has the health endpoint; without a name it is generic.
                    if await client.probe(ServerFlavor.generic.readinessPath) {
                        flavor = .generic
                        description = " (\(reason), so treated as a generic V2 server)"
                    }
                case .unreachable:
                    if await client.probe(ServerFlavor.generic.readinessPath) {
                        unansweredWhileReady += 1
                        if unansweredWhileReady >= 3 {
                            flavor = .generic
                            description = " (GET /v2 does not answer, so treated as a generic V2 server)"
                        }
                    }
                }
                if let flavor { state.withLock { $0.flavor = flavor } }
            }
            if let flavor, await client.probe(flavor.readinessPath) { break }
            if !announced {
                logger.info("Waiting for the model server at \(client.baseURL) to become ready")
                announced = true
            }
            let abandoned = state.withLock { s -> Bool in
                guard s.closed || Task.isCancelled else { return false }
                (s.polling, s.poller) = (false, nil)
                return true
            }
            if abandoned { return }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
        let flavor = state.withLock { $0.flavor } ?? .generic
        logger.info(
            "Model server at \(client.baseURL) is ready\(description)",
            metadata: ["flavor": "\(flavor.rawValue)", "checked": "\(flavor.readinessPath)"])
        let waiters = state.withLock { s -> [@Sendable () -> Void] in
            // After close, nobody waits; the gate still records that the server is ready.
            s.open = true
            (s.polling, s.poller) = (false, nil)
            defer { s.waiters = [] }
            return s.waiters
        }
        for callback in waiters { callback() }
    }
}
