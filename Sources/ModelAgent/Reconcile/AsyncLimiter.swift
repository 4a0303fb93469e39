import Synchronization

/// A counting semaphore for async code: at most `limit` holders at once, waiters
/// served in arrival order, urgent ones first. Waiting suspends the task; it never blocks
/// a thread, so any number of models can queue for a slot. `reserved` slots are for
/// urgent holders only (downloads a request waits for), so that slow background work
/// cannot take every slot.
final class AsyncLimiter: Sendable {
    private struct Waiter {
        let id: UInt64
        let urgent: Bool
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var available: Int
        /// Urgent waiters first, each kind in arrival order.
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0

        func canTake(urgent: Bool, reserved: Int) -> Bool {
            urgent ? available > 0 : available > reserved
        }
    }

    private let state: Mutex<State>
    let limit: Int
    let reserved: Int

    init(limit: Int, reserved: Int = 0) {
        self.limit = max(1, limit)
        self.reserved = min(max(0, reserved), self.limit - 1)
        state = Mutex(State(available: self.limit))
    }

    var inUse: Int { state.withLock { limit - $0.available } }
    /// Tasks waiting for a slot.
    var waiting: Int { state.withLock { $0.waiters.count } }

    func withPermit<T>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    func acquire(urgent: Bool = false) async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { s -> Bool? in
                    if Task.isCancelled { return false }
                    let ahead = urgent ? s.waiters.contains(where: \.urgent) : !s.waiters.isEmpty
                    if !ahead && s.canTake(urgent: urgent, reserved: reserved) {
                        s.available -= 1
                        return true
                    }
                    let waiter = Waiter(id: id, urgent: urgent, continuation: continuation)
                    if urgent, let firstOrdinary = s.waiters.firstIndex(where: { !$0.urgent }) {
                        s.waiters.insert(waiter, at: firstOrdinary)
                    } else {
                        s.waiters.append(waiter)
                    }
                    return nil
                }
                switch outcome {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            s.available += 1
            guard let first = s.waiters.first, s.canTake(urgent: first.urgent, reserved: reserved) else { return nil }
            s.available -= 1
            return s.waiters.removeFirst().continuation
        }
        next?.resume()
    }
}
