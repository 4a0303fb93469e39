import Logging
import Synchronization

/// Logs failures to reach the model server once per burst, not once per request: the
/// first failure is logged with its reason, later ones are counted, and the count is
/// logged when a request gets through again (or a minute into a long outage, which then
/// starts a new burst).
final class UpstreamFailureLog: Sendable {
    private struct Burst {
        var started: ContinuousClock.Instant
        var suppressed = 0
    }

    private let burst = Mutex<Burst?>(nil)
    private let logger: Logger
    private let summaryInterval: Duration

    init(logger: Logger, summaryInterval: Duration = .seconds(60)) {
        self.logger = logger
        self.summaryInterval = summaryInterval
    }

    func failed(_ reason: String, target: String) {
        enum Action { case first, summary(Int), none }
        let now = ContinuousClock.now
        let action = burst.withLock { current -> Action in
            guard var b = current else {
                current = Burst(started: now)
                return .first
            }
            if now - b.started >= summaryInterval {
                let count = b.suppressed + 1
                current = Burst(started: now)
                return .summary(count)
            }
            b.suppressed += 1
            current = b
            return .none
        }
        switch action {
        case .first:
            logger.error("Proxy cannot reach the model server at \(target): \(reason)")
        case .summary(let count):
            logger.error("Proxy still cannot reach the model server at \(target): \(reason) (\(count) requests failed)")
        case .none: break
        }
    }

    func succeeded(target: String) {
        let ended = burst.withLock { current -> Int? in
            guard let b = current else { return nil }
            current = nil
            return b.suppressed
        }
        if let ended {
            logger.info("Proxy reaches the model server at \(target) again (\(ended + 1) requests failed)")
        }
    }
}
