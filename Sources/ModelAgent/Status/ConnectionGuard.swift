import NIOCore
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Bounds what clients can hold on a listening port: at most `limit` connections, and
/// none may sit without delivering a complete request head for `headerTimeout` (after
/// it opens, or after its previous answer), nor take longer than `requestTimeout` from
/// its head to the end of its answer (a stalled body, a client that never reads). When
/// the limit is reached, the connection that has been idle longest makes room for the
/// new one, so a flood of idle clients cannot lock out the kubelet's probes; only when
/// every connection is mid-request is a newcomer turned away.
package final class ConnectionGuard: Sendable {
    package struct Limits: Sendable, Equatable {
        package var maxConnections = 256
        package var headerTimeout: Duration = .seconds(30)
        /// How long a kept-alive connection may wait for its next request head; nil: as
        /// long as `headerTimeout`.
        package var idleTimeout: Duration?
        /// From a request's head to the end of its answer; nil: no bound (the proxied
        /// port, where uploads, downloads and event streams take as long as they take).
        package var requestTimeout: Duration? = .seconds(30)

        init(requestTimeout: Duration? = .seconds(30)) {
            self.requestTimeout = requestTimeout
        }
    }

    /// One admitted connection's activity, kept by its own handler with atomics: marking
    /// it busy and idle around every request takes no lock shared by the event loops.
    final class Slot: Sendable {
        fileprivate let busy = Atomic<Bool>(false)
        /// Uptime in nanoseconds when it last started or finished a request.
        fileprivate let lastActive = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

        /// A request started (busy connections are never evicted) or its answer ended.
        func markBusy(_ isBusy: Bool) {
            busy.store(isBusy, ordering: .relaxed)
            lastActive.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        }
    }

    private struct Tracked {
        let channel: any Channel
        let slot: Slot
    }

    private struct State {
        var open: [ObjectIdentifier: Tracked] = [:]
    }

    let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits) {
        self.limits = limits
    }

    /// Registers a new connection and returns its slot; nil when it must be closed at once.
    func admit(_ channel: any Channel) -> Slot? {
        let slot = Slot()
        let (accepted, victim) = state.withLock { s -> (Bool, (any Channel)?) in
            var victim: (any Channel)?
            if s.open.count >= limits.maxConnections {
                let idle = s.open.values.filter { !$0.slot.busy.load(ordering: .relaxed) }
                guard
                    let oldest = idle.min(by: {
                        $0.slot.lastActive.load(ordering: .relaxed) < $1.slot.lastActive.load(ordering: .relaxed)
                    })
                else {
                    return (false, nil)
                }
                s.open[ObjectIdentifier(oldest.channel)] = nil
                victim = oldest.channel
            }
            s.open[ObjectIdentifier(channel)] = Tracked(channel: channel, slot: slot)
            return (true, victim)
        }
        victim?.close(promise: nil)
        guard accepted else { return nil }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { _ = $0.open.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        return slot
    }

    /// Raises the process's soft descriptor limit as far as the hard one allows, and
    /// returns the connection limit that leaves `reserve` descriptors for the agent's own
    /// work (downloads, config and marker reads, the admin port), counting
    /// `descriptorsPerConnection` for each (a proxied connection has its upstream twin).
    static func raisingDescriptorLimit(
        fitting requested: Limits, reserve: Int = 256, descriptorsPerConnection: Int = 1
    ) -> Limits {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return requested }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let available = Int(clamping: limit.rlim_cur)
        var fitted = requested
        fitted.maxConnections = max(8, min(requested.maxConnections, (available - reserve) / descriptorsPerConnection))
        return fitted
    }
}

/// In a connection's pipeline after the HTTP codec: registers the connection with the
/// guard (closing it when there is no room) and closes it when no complete request head
/// arrives in time; a request in progress is never cut off by the deadline.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let connections: ConnectionGuard
    private var deadline: Scheduled<Void>?
    private var admitted = false
    private var slot: ConnectionGuard.Slot?

    init(_ connections: ConnectionGuard) {
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard !admitted else { return }
        admitted = true
        guard let slot = connections.admit(context.channel) else {
            context.close(promise: nil)
            return
        }
        self.slot = slot
        arm(context)
    }

    private func arm(_ context: ChannelHandlerContext, for timeout: Duration? = nil) {
        deadline?.cancel()
        let channel = context.channel
        let wait = timeout ?? connections.limits.headerTimeout
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(wait.nanoseconds)) {
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            // Busy connections are never evicted, so on the admin port they too must end in
            // bounded time.
            if let timeout = connections.limits.requestTimeout {
                arm(context, for: timeout)
            } else {
                deadline?.cancel()
                deadline = nil
            }
            slot?.markBusy(true)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        context.write(data, promise: written)
        let (connections, channel, slot) = (self.connections, context.channel, self.slot)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenSuccess {
            slot?.markBusy(false)
            let (handler, context) = loopBound.value
            if channel.isActive { handler.arm(context, for: connections.limits.idleTimeout) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }
}
