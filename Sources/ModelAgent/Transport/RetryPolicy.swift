/// Exponential backoff with jitter: attempt n waits a random time between half and
/// all of min(maxDelay, initialDelay * 2^(n-1)), so retries from many clients spread out.
package struct RetryPolicy: Sendable {
    package var maxAttempts: Int
    var initialDelay: Duration
    var maxDelay: Duration

    package init(maxAttempts: Int, initialDelay: Duration, maxDelay: Duration) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    func delay(afterAttempt attempt: Int) -> Duration {
        let base = initialDelay.seconds * Double(1 << min(max(attempt - 1, 0), 30))
        let capped = min(base, maxDelay.seconds)
        return .milliseconds(Int(capped * Double.random(in: 0.5...1.0) * 1000))
    }

    /// Runs `body` until it succeeds, fails permanently or runs out of attempts.
    /// `onRetry` hears about each transient failure before the wait.
    func run<T>(
        _ body: (_ attempt: Int) async throws -> T,
        onRetry: (_ attempt: Int, _ error: any Error, _ delay: Duration) -> Void = { _, _, _ in }
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body(attempt)
            } catch {
                if error is CancellationError || !error.isTransient || attempt >= maxAttempts { throw error }
                let wait = delay(afterAttempt: attempt)
                onRetry(attempt, error, wait)
                try await Task.sleep(for: wait)
                attempt += 1
            }
        }
    }
}
