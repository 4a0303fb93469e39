import Dispatch
import Synchronization

/// A few dedicated threads for work that blocks on the disk (archive extraction, local
/// copies, directory swaps and deletions), so it never holds Swift's cooperative
/// threads, which the rest of the agent needs to make progress.
final class BlockingExecutor: Sendable {
    private struct Job: Sendable {
        let run: @Sendable () -> Void
    }

    private let jobs = Mutex<[Job]>([])
    private let ready = DispatchSemaphore(value: 0)

    static let shared = BlockingExecutor(threads: 4)

    init(threads: Int) {
        for _ in 0..<max(1, threads) {
            startDetachedThread { [self] in
                while true {
                    ready.wait()
                    let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                    job?.run()
                }
            }
        }
    }

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            jobs.withLock {
                $0.append(Job { continuation.resume(with: Result { try body() }) })
            }
            ready.signal()
        }
    }
}
