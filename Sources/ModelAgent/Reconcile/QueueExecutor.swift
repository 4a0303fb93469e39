import Dispatch

/// Runs an actor's jobs on its own serial DispatchQueue, so each model's work is
/// serialised on a named queue of its own.
final class QueueExecutor: SerialExecutor {
    let queue: DispatchQueue

    init(label: String) {
        // A plain serial queue targets the overcommitting global queue, which adds a
        // thread per busy queue: 500 models would mean hundreds of threads. Targeting the
        // regular global queue caps them near the core count; the jobs never block.
        queue = DispatchQueue(label: label, target: .global())
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
