import Dispatch
import Synchronization

/// A fixed set of lanes (threads, each with its own libcurl handle and connections)
/// fed from one FIFO queue. The lane count bounds threads, sockets and the memory held
/// in receive buffers, whatever the number of models or files.
public final class TransferPool: Sendable {
    private struct Job: Sendable {
        let request: HTTPRequest
        let sink: ResponseSink
        let cancel: CancelFlag
        let continuation: CheckedContinuation<TransferAttempt, any Error>
    }

    private struct Queue {
        var jobs: [Job?] = []
        var head = 0
        var closed = false

        mutating func push(_ job: Job) { jobs.append(job) }

        mutating func pop() -> Job? {
            guard head < jobs.count else { return nil }
            let job = jobs[head]
            jobs[head] = nil
            head += 1
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)
    public let lanes: Int

    public init(lanes: Int, settings: TransportSettings) {
        self.lanes = max(1, lanes)
        for _ in 0..<self.lanes {
            startDetachedThread { [self] in self.runLane(settings: settings) }
        }
    }

    /// Performs `request` on the next free lane; throws on any failure.
    public func perform(_ request: HTTPRequest, sink: ResponseSink = .memory(limit: 16 << 20)) async throws
        -> HTTPResponse
    {
        let attempt = try await attempt(request, sink: sink)
        if let error = attempt.error { throw error }
        return attempt.response
    }

    /// Performs `request` on the next free lane and reports how far it got, failure or
    /// not. Throws only CancellationError: cancelling the calling task aborts the
    /// transfer at its next progress callback.
    public func attempt(_ request: HTTPRequest, sink: ResponseSink = .memory(limit: 16 << 20)) async throws
        -> TransferAttempt
    {
        let cancel = CancelFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let accepted = queue.withLock { queue -> Bool in
                    guard !queue.closed else { return false }
                    queue.push(Job(request: request, sink: sink, cancel: cancel, continuation: continuation))
                    return true
                }
                if accepted {
                    ready.signal()
                } else {
                    continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            cancel.set()
        }
    }

    /// Stops the lanes once the queued work is done; later requests fail as cancelled.
    public func shutdown() {
        queue.withLock { $0.closed = true }
        for _ in 0..<lanes { ready.signal() }
    }

    private func runLane(settings: TransportSettings) {
        let easy = CurlEasy(settings: settings)
        while true {
            ready.wait()
            let (job, closed) = queue.withLock { ($0.pop(), $0.closed) }
            guard let job else {
                if closed { return }
                continue
            }
            if job.cancel.isSet {
                job.continuation.resume(throwing: CancellationError())
                continue
            }
            let attempt = easy.perform(job.request, sink: job.sink, cancel: job.cancel)
            if job.cancel.isSet {
                job.continuation.resume(throwing: CancellationError())
            } else {
                job.continuation.resume(returning: attempt)
            }
        }
    }
}
