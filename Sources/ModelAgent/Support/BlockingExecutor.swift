import Dispatch
import Synchronization

/// Runs work that blocks on the disk (archive extraction, local copies, directory swaps
/// and deletions) off Swift's cooperative threads, which the rest of the agent needs to
/// make progress, at most `threads` jobs at a time. Jobs run on Dispatch's overcommit
/// threads (one serial queue per slot), which exist only while there is work: an idle
/// agent holds none of them.
final class BlockingExecutor: Sendable {
    private struct Job: Sendable {
        let run: @Sendable () -> Void
    }

    private struct State {
        var jobs: [Job] = []
        var head = 0
        /// Slots not draining the queue now.
        var free: [Int]

        mutating func pop() -> Job? {
            guard head < jobs.count else { return nil }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll()
                head = 0
            } else if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    private let state: Mutex<State>
    private let slots: [DispatchQueue]

    static let shared = BlockingExecutor(threads: 4)

    init(threads: Int) {
        let count = max(1, threads)
        state = Mutex(State(free: Array((0..<count).reversed())))
        slots = (0..<count).map { DispatchQueue(label: "model-agent.blocking.\($0)") }
    }

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let slot = state.withLock { s -> Int? in
                s.jobs.append(Job { continuation.resume(with: Result { try body() }) })
                return s.free.popLast()
            }
            if let slot { slots[slot].async { self.drain(slot) } }
        }
    }

    /// Runs queued jobs until there are none, then gives the slot back.
    private func drain(_ slot: Int) {
        while let job = state.withLock({ s -> Job? in
            if let job = s.pop() { return job }
            s.free.append(slot)
            return nil
        }) {
            job.run()
        }
    }
}
