import Logging
import Synchronization

/// Holds back the first loads until the model server reports ready, then stays open.
/// One poller serves every waiting model, so a slow server costs one request per interval.
public final class ServerReadinessGate: Sendable {
    private struct State {
        var open = false
        var polling = false
        var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let client: ModelServerClient
    private let path: String
    private let logger: Logger

    public init(client: ModelServerClient, path: String = "/v2/health/ready", logger: Logger) {
        self.client = client
        self.path = path
        self.logger = logger
    }

    public var isOpen: Bool { state.withLock { $0.open } }

    public func wait() async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (resumeNow, startPolling) = state.withLock { s -> (Bool, Bool) in
                    if s.open { return (true, false) }
                    if Task.isCancelled { return (true, false) }
                    s.waiters[id] = continuation
                    let start = !s.polling
                    s.polling = true
                    return (false, start)
                }
                if resumeNow {
                    if Task.isCancelled && !isOpen {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
                if startPolling { Task { await self.poll() } }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func poll() async {
        var delay = Duration.milliseconds(100)
        var announced = false
        while true {
            if await client.probe(path) { break }
            if !announced {
                logger.info("Waiting for the model server at \(client.baseURL) to become ready")
                announced = true
            }
            let abandoned = state.withLock { s -> Bool in
                guard s.waiters.isEmpty else { return false }
                s.polling = false
                return true
            }
            if abandoned { return }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
        logger.info("Model server at \(client.baseURL) is ready")
        let waiters = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.open = true
            s.polling = false
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }
}
