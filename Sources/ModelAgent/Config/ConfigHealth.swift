import Synchronization

/// Whether the last read of models.json could be used, and if not why: shown by /readyz,
/// /metrics and the log while the agent keeps serving the last good state.
final class ConfigHealth: Sendable {
    private let problem = Mutex<String?>(nil)

    init() {}

    /// Nil when the last read was usable.
    var currentProblem: String? { problem.withLock { $0 } }

    func report(_ text: String?) { problem.withLock { $0 = text } }
}
