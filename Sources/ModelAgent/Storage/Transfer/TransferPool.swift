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
        /// Cancel flags of the transfers running now, by lane.
        var running: [Int: CancelFlag] = [:]

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
    private let finished = DispatchSemaphore(value: 0)
    public let lanes: Int

    public init(lanes: Int, settings: TransportSettings) {
        self.lanes = max(1, lanes)
        for lane in 0..<self.lanes {
            startDetachedThread { [self] in
                self.runLane(lane, settings: settings)
                self.finished.signal()
            }
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

    /// Cancels what is queued or running, and waits (up to `timeout`) until every lane
    /// has released its libcurl handle. Exiting the process before that races OpenSSL's
    /// exit-time cleanup against lanes still closing TLS connections.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        let (queued, running) = queue.withLock { q -> ([Job], [CancelFlag]) in
            q.closed = true
            var queued: [Job] = []
            while let job = q.pop() { queued.append(job) }
            return (queued, Array(q.running.values))
        }
        for job in queued { job.continuation.resume(throwing: CancellationError()) }
        for flag in running { flag.set() }
        for _ in 0..<lanes { ready.signal() }
        let deadline = DispatchTime.now() + .milliseconds(timeout.milliseconds)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            startDetachedThread { [self] in
                for _ in 0..<lanes { _ = finished.wait(timeout: deadline) }
                continuation.resume()
            }
        }
    }

    private func runLane(_ lane: Int, settings: TransportSettings) {
        let easy = CurlEasy(settings: settings)
        while true {
            ready.wait()
            let (job, closed) = queue.withLock { q -> (Job?, Bool) in
                let job = q.pop()
                if let job { q.running[lane] = job.cancel }
                return (job, q.closed)
            }
            guard let job else {
                if closed { return }
                continue
            }
            defer { queue.withLock { _ = $0.running.removeValue(forKey: lane) } }
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
