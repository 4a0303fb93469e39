import Dispatch
import Synchronization

/// Up to `lanes` lanes (threads, each with its own libcurl handle and connections) fed
/// from one FIFO queue. The lane count bounds threads, sockets and the memory held in
/// receive buffers, whatever the number of models or files. A lane starts when work finds
/// no idle one and ends after an idle spell (`TransportSettings.idleRelease`), so an
/// agent with nothing to download holds no transfer threads. Work goes to the lane that
/// went idle last, so a download needing six connections keeps using the same six
/// threads (and their malloc arenas) instead of touching all of them.
package final class TransferPool: Sendable {
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
        /// Lanes waiting for work, the most recently idle last.
        var idle: [Int] = []
        /// Lane numbers with no thread; a new lane takes the lowest.
        var vacant: [Int]
        /// Threads started and not yet ended (idle, working or ending).
        var live = 0

        init(lanes: Int) { vacant = Array((0..<lanes).reversed()) }

        var isEmpty: Bool { head >= jobs.count }

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

    /// What a new job needs: nothing (every lane busy: it waits its turn), an idle lane
    /// woken, or a new lane.
    private enum Assignment {
        case refused
        case queued
        case wake(Int)
        case start(Int)
    }

    private let queue: Mutex<Queue>
    /// One per lane: a lane sleeps on its own semaphore so that it can be woken by name.
    private let wakeups: [DispatchSemaphore]
    /// Signalled once, by the last lane to end after `shutdown` closed the queue.
    private let finished = DispatchSemaphore(value: 0)
    private let settings: TransportSettings
    let lanes: Int

    package init(lanes: Int, settings: TransportSettings) {
        self.lanes = max(1, lanes)
        self.settings = settings
        queue = Mutex(Queue(lanes: self.lanes))
        wakeups = (0..<self.lanes).map { _ in DispatchSemaphore(value: 0) }
    }

    /// Threads running now (for tests and the idle-footprint benchmark).
    var liveLanes: Int { queue.withLock { $0.live } }

    /// Performs `request` on the next free lane; throws on any failure.
    func perform(_ request: HTTPRequest, sink: ResponseSink = .memory(limit: 16 << 20)) async throws
        -> HTTPResponse
    {
        let attempt = try await attempt(request, sink: sink)
        if let error = attempt.error { throw error }
        return attempt.response
    }

    /// Performs `request` on the next free lane and reports how far it got, failure or
    /// not. Throws only CancellationError: cancelling the calling task aborts the
    /// transfer at its next progress callback.
    func attempt(_ request: HTTPRequest, sink: ResponseSink = .memory(limit: 16 << 20)) async throws
        -> TransferAttempt
    {
        let cancel = CancelFlag()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let assignment = queue.withLock { queue -> Assignment in
                    guard !queue.closed else { return .refused }
                    queue.push(Job(request: request, sink: sink, cancel: cancel, continuation: continuation))
                    if let lane = queue.idle.popLast() { return .wake(lane) }
                    guard let lane = queue.vacant.popLast() else { return .queued }
                    queue.live += 1
                    return .start(lane)
                }
                switch assignment {
                case .refused: continuation.resume(throwing: CancellationError())
                case .queued: break
                case .wake(let lane): wakeups[lane].signal()
                case .start(let lane): startLane(lane)
                }
            }
        } onCancel: {
            cancel.set()
        }
    }

    /// Cancels what is queued or running, and waits (up to `timeout`) until every lane
    /// has released its libcurl handle. Exiting the process before that races OpenSSL's
    /// exit-time cleanup against lanes still closing TLS connections.
    package func shutdown(timeout: Duration = .seconds(5)) async {
        let (queued, running, idle, live) = queue.withLock { q -> ([Job], [CancelFlag], [Int], Int) in
            q.closed = true
            var queued: [Job] = []
            while let job = q.pop() { queued.append(job) }
            defer { q.idle = [] }
            return (queued, Array(q.running.values), q.idle, q.live)
        }
        for job in queued { job.continuation.resume(throwing: CancellationError()) }
        for flag in running { flag.set() }
        for lane in idle { wakeups[lane].signal() }
        guard live > 0 else { return }
        let deadline = DispatchTime.now() + .milliseconds(timeout.milliseconds)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let refused = startDetachedThread(name: "transfer-wait") { [self] in
                _ = finished.wait(timeout: deadline)
                continuation.resume()
            }
            if refused != 0 { continuation.resume() }
        }
    }

    private enum Next {
        case job(Job)
        case wait
        case exit
    }

    private func startLane(_ lane: Int) {
        let refused = startDetachedThread(name: "transfer-\(lane)") { [self] in
            while true {
                runLane(lane)
                let (again, last) = queue.withLock { q -> (Bool, Bool) in
                    // Work queued while the lane was ending found no idle lane to wake:
                    // this one takes it.
                    if !q.closed && !q.isEmpty { return (true, false) }
                    q.live -= 1
                    q.vacant.append(lane)
                    q.vacant.sort(by: >)
                    return (false, q.closed && q.live == 0)
                }
                if again { continue }
                if last { finished.signal() }
                return
            }
        }
        guard refused != 0 else { return }
        // No thread: the lane number goes back. Lanes still running take the queued work;
        // with none, it fails (transient: the download is retried later).
        let orphaned = queue.withLock { q -> [Job] in
            q.live -= 1
            q.vacant.append(lane)
            q.vacant.sort(by: >)
            var orphaned: [Job] = []
            if q.live == 0 {
                while let job = q.pop() { orphaned.append(job) }
            }
            if q.closed && q.live == 0 { finished.signal() }
            return orphaned
        }
        let failed = HTTPResponse(status: 0, headers: [:], body: [], bytesWritten: 0)
        for job in orphaned {
            job.continuation.resume(returning: TransferAttempt(response: failed, error: .noThread(refused)))
        }
    }

    private func runLane(_ lane: Int) {
        // Created on demand and dropped with the lane: the handle holds the receive buffer
        // and idle connections, which a sidecar should not keep between downloads.
        var easy: CurlEasy?
        while true {
            let next = queue.withLock { q -> Next in
                if let job = q.pop() {
                    q.running[lane] = job.cancel
                    return .job(job)
                }
                if q.closed { return .exit }
                q.idle.append(lane)
                return .wait
            }
            switch next {
            case .exit:
                return
            case .wait:
                let deadline = DispatchTime.now() + .milliseconds(settings.idleRelease.milliseconds)
                if wakeups[lane].wait(timeout: deadline) == .timedOut {
                    let stillIdle = queue.withLock { q -> Bool in
                        guard let index = q.idle.lastIndex(of: lane) else { return false }
                        q.idle.remove(at: index)
                        return true
                    }
                    // Idle for the whole spell: the lane ends (its handle with it, before
                    // it stops counting as live, so shutdown waits for the cleanup).
                    if stillIdle { return }
                    wakeups[lane].wait()  // picked just now: its wake-up is on the way
                }
            case .job(let job):
                defer { queue.withLock { _ = $0.running.removeValue(forKey: lane) } }
                if job.cancel.isSet {
                    job.continuation.resume(throwing: CancellationError())
                    continue
                }
                let handle = easy ?? CurlEasy(settings: settings)
                easy = handle
                let attempt = handle.perform(job.request, sink: job.sink, cancel: job.cancel)
                if handle.needsReplacement { easy = nil }
                if job.cancel.isSet {
                    job.continuation.resume(throwing: CancellationError())
                } else {
                    job.continuation.resume(returning: attempt)
                }
            }
        }
    }
}
