import NIOCore
import Synchronization

/// A counting semaphore for async code: at most `limit` holders at once, waiters
/// served in arrival order, urgent ones first. Waiting never blocks a thread: a task
/// suspends (`acquire`), or a callback is queued without any task (`enter`), so any number
/// of models can queue for a slot. `reserved` slots are for urgent holders only (work a
/// request waits for), so that slow background work cannot take every slot.
final class AsyncLimiter: Sendable {
    /// How a waiter learns that it holds a slot, or that it left the line without one.
    private enum Grant {
        case resume(CheckedContinuation<Void, any Error>)
        case call(@Sendable (Bool) -> Void)

        func give() {
            switch self {
            case .resume(let continuation): continuation.resume()
            case .call(let start): start(true)
            }
        }

        func refuse() {
            switch self {
            case .resume(let continuation): continuation.resume(throwing: CancellationError())
            case .call(let start): start(false)
            }
        }
    }

    private struct Waiter {
        let id: UInt64
        var urgent: Bool
        /// Who waits (a model's name): `promote` and `demote` find it by this.
        let tag: String?
        let grant: Grant
    }

    private struct State {
        var available: Int
        /// Urgent waiters first, each kind in arrival order. A ring: the head is taken in
        /// constant time with 10,000 models in line.
        var waiters = CircularBuffer<Waiter>()
        var nextID: UInt64 = 0
        /// Tags promoted and not demoted since: their waiters are urgent, even those that
        /// come after the promotion (a worker about to queue must not miss it).
        var urgentTags: Set<String> = []

        func canTake(urgent: Bool, reserved: Int) -> Bool {
            urgent ? available > 0 : available > reserved
        }

        /// Gives `waiter` a slot when it need not wait (true), else queues it.
        mutating func take(_ waiter: Waiter, _ reserved: Int) -> Bool {
            var waiter = waiter
            waiter.urgent = waiter.urgent || waiter.tag.map { urgentTags.contains($0) } == true
            // Urgent waiters are queued first, so one waits ahead of an urgent one exactly
            // when the first does.
            let ahead = waiter.urgent ? waiters.first?.urgent == true : !waiters.isEmpty
            if !ahead && canTake(urgent: waiter.urgent, reserved: reserved) {
                available -= 1
                return true
            }
            enqueue(waiter)
            return false
        }

        /// Urgent waiters go after the urgent ones already waiting, before the others.
        mutating func enqueue(_ waiter: Waiter) {
            if waiter.urgent, let firstOrdinary = waiters.firstIndex(where: { !$0.urgent }) {
                waiters.insert(waiter, at: firstOrdinary)
            } else {
                waiters.append(waiter)
            }
        }

        /// An ordinary waiter that waited as urgent takes its place among the ordinary ones
        /// by arrival.
        mutating func enqueueByArrival(_ waiter: Waiter) {
            let later = waiters.firstIndex { !$0.urgent && $0.id > waiter.id }
            waiters.insert(waiter, at: later ?? waiters.endIndex)
        }
    }

    private let state: Mutex<State>
    let limit: Int
    let reserved: Int

    init(limit: Int, reserved: Int = 0) {
        self.limit = max(1, limit)
        self.reserved = min(max(0, reserved), self.limit - 1)
        state = Mutex(State(available: self.limit))
    }

    var inUse: Int { state.withLock { limit - $0.available } }
    /// Tasks waiting for a slot.
    var waiting: Int { state.withLock { $0.waiters.count } }

    func withPermit<T>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    /// Waits for a slot. `tag` names the waiter for `promote`.
    func acquire(urgent: Bool = false, tag: String? = nil) async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { s -> Bool? in
                    if Task.isCancelled { return false }
                    let waiter = Waiter(id: id, urgent: urgent, tag: tag, grant: .resume(continuation))
                    return s.take(waiter, reserved) ? true : nil
                }
                switch outcome {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            withdraw(id)
        }
    }

    /// Queues `start` for a slot without a task: it is called with true once the caller
    /// holds a slot (at once when one is free), or with false when `withdraw` takes it out
    /// of the line. A waiting task keeps its frames; a queued callback costs only its
    /// closure. `start` is called outside the limiter's lock but maybe under a caller's
    /// (`promote` is called under the cache's): it must not block. Returns the ticket for
    /// `withdraw`.
    @discardableResult
    func enter(urgent: Bool = false, tag: String? = nil, start: @escaping @Sendable (Bool) -> Void) -> UInt64 {
        let (id, granted) = state.withLock { s -> (UInt64, Bool) in
            s.nextID += 1
            let waiter = Waiter(id: s.nextID, urgent: urgent, tag: tag, grant: .call(start))
            return (s.nextID, s.take(waiter, reserved))
        }
        if granted { start(true) }
        return id
    }

    /// Takes a waiter out of the line (`acquire` throws, `enter`'s callback gets false);
    /// nothing when it already holds its slot.
    func withdraw(_ ticket: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            guard let index = s.waiters.firstIndex(where: { $0.id == ticket }) else { return nil }
            defer { s.waiters.releaseSpareCapacity() }
            return s.waiters.remove(at: index)
        }
        waiter?.grant.refuse()
    }

    /// Moves the waiter holding `ticket` among the urgent ones, and gives it a slot at once
    /// if one is free for urgent work; nothing when it is not waiting or is urgent already.
    /// For a removal: short work that ends what a user asked to end, which should not wait
    /// behind every model queued before it.
    func hasten(_ ticket: UInt64) {
        let grant = state.withLock { s -> Grant? in
            guard let index = s.waiters.firstIndex(where: { $0.id == ticket }), !s.waiters[index].urgent else {
                return nil
            }
            var waiter = s.waiters.remove(at: index)
            waiter.urgent = true
            s.enqueue(waiter)
            guard let first = s.waiters.first, first.id == ticket, s.canTake(urgent: true, reserved: reserved) else {
                return nil
            }
            s.available -= 1
            return s.waiters.removeFirst().grant
        }
        grant?.give()
    }

    /// Makes the waiters tagged `tag` urgent (a request now waits for their work), and
    /// those that come until `demote`; they may take a slot at once if one is free for
    /// urgent work.
    func promote(_ tag: String) {
        let ready = state.withLock { s -> [Grant] in
            s.urgentTags.insert(tag)
            let promoted = s.waiters.filter { $0.tag == tag && !$0.urgent }
            guard !promoted.isEmpty else { return [] }
            s.waiters.removeAll { $0.tag == tag && !$0.urgent }
            for var waiter in promoted {
                waiter.urgent = true
                s.enqueue(waiter)
            }
            var ready: [Grant] = []
            while let first = s.waiters.first, first.urgent, s.canTake(urgent: true, reserved: reserved) {
                s.available -= 1
                ready.append(s.waiters.removeFirst().grant)
            }
            return ready
        }
        for grant in ready { grant.give() }
    }

    /// Makes the urgent waiters tagged `tag` ordinary again (no request waits for their
    /// work any more); they keep their place by arrival among the ordinary ones.
    func demote(_ tag: String) {
        state.withLock { s in
            s.urgentTags.remove(tag)
            let demoted = s.waiters.filter { $0.tag == tag && $0.urgent }
            guard !demoted.isEmpty else { return }
            s.waiters.removeAll { $0.tag == tag && $0.urgent }
            for var waiter in demoted {
                waiter.urgent = false
                s.enqueueByArrival(waiter)
            }
        }
    }

    func release() {
        let next = state.withLock { s -> Grant? in
            s.available += 1
            guard let first = s.waiters.first, s.canTake(urgent: first.urgent, reserved: reserved) else { return nil }
            s.available -= 1
            defer { s.waiters.releaseSpareCapacity() }
            return s.waiters.removeFirst().grant
        }
        next?.give()
    }
}
