import NIOCore
import Synchronization

/// Answers the proxied port's health checks: the pod is ready when the initial model sync
/// is done and the user container passes its readiness probe. Checks that arrive while a
/// probe runs share the next run, so a flood of probes costs one probe at a time; the runs
/// happen in `run`, owned by the proxy's service.
final class HealthChecker: Sendable {
    private struct State {
        var waiters: [EventLoopPromise<Bool>] = []
        var running = false
        var stopped = false
    }

    private let state = Mutex(State())
    private let triggers: AsyncStream<Void>
    private let trigger: AsyncStream<Void>.Continuation
    private let isReady: @Sendable () async -> Bool

    init(isReady: @escaping @Sendable () async -> Bool) {
        self.isReady = isReady
        (triggers, trigger) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Completes `promise` with the result of a probe run that starts after this call.
    func check(_ promise: EventLoopPromise<Bool>) {
        enum Action { case refuse, start, wait }
        let action = state.withLock { s -> Action in
            if s.stopped { return .refuse }
            s.waiters.append(promise)
            if s.running { return .wait }
            s.running = true
            return .start
        }
        switch action {
        case .refuse: promise.succeed(false)
        case .start: trigger.yield()
        case .wait: break
        }
    }

    /// Runs probes for waiting checks until cancelled; then every waiting check gets false.
    func run() async {
        for await _ in triggers {
            while !Task.isCancelled {
                let batch = state.withLock { s -> [EventLoopPromise<Bool>] in
                    let batch = s.waiters
                    s.waiters = []
                    if batch.isEmpty { s.running = false }
                    return batch
                }
                if batch.isEmpty { break }
                let ready = await isReady()
                for promise in batch { promise.succeed(ready && !Task.isCancelled) }
            }
            if Task.isCancelled { break }
        }
        stop()
    }

    func stop() {
        trigger.finish()
        let left = state.withLock { s -> [EventLoopPromise<Bool>] in
            s.stopped = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for promise in left { promise.succeed(false) }
    }
}
