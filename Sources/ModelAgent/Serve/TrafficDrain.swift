import Synchronization

/// The proxied port's drain, with knative's semantics: once it begins (SIGTERM), health
/// checks answer 503 so the pod leaves the endpoints, while requests keep being proxied;
/// the port closes only after a quiet period without a new request, and once the requests
/// still running have finished (or, at the latest, one more quiet period later).
final class TrafficDrain: Sendable {
    private struct State {
        var draining = false
        var inFlight = 0
        var lastActivity = ContinuousClock.now
    }

    private let state = Mutex(State())

    init() {}

    var isDraining: Bool { state.withLock { $0.draining } }
    var inFlight: Int { state.withLock { $0.inFlight } }

    func begin() {
        state.withLock { s in
            if !s.draining {
                s.draining = true
                s.lastActivity = .now
            }
        }
    }

    func requestStarted() {
        state.withLock { s in
            s.inFlight += 1
            s.lastActivity = .now
        }
    }

    func requestFinished() {
        state.withLock { s in s.inFlight -= 1 }
    }

    /// Returns once `quietPeriod` has passed without a new request since the drain began.
    func waitUntilQuiet(_ quietPeriod: Duration) async {
        begin()
        while true {
            let quietUntil = state.withLock { $0.lastActivity } + quietPeriod
            if ContinuousClock.now >= quietUntil { return }
            do { try await Task.sleep(until: quietUntil) } catch { return }
        }
    }

    /// Returns once no request is in flight, or after `limit`.
    func waitForInFlight(upTo limit: Duration) async {
        let giveUp = ContinuousClock.now + limit
        while inFlight > 0 && ContinuousClock.now < giveUp {
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return }
        }
    }
}
