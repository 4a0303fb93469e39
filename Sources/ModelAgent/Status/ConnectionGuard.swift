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

    private struct Tracked {
        let channel: any Channel
        var busy = false
        var lastActive: UInt64
    }

    private struct State {
        var open: [ObjectIdentifier: Tracked] = [:]
        var clock: UInt64 = 0
    }

    let limits: Limits
    private let state = Mutex(State())

    init(limits: Limits) {
        self.limits = limits
    }

    /// Registers a new connection; false when it must be closed at once.
    func admit(_ channel: any Channel) -> Bool {
        let (accepted, victim) = state.withLock { s -> (Bool, (any Channel)?) in
            var victim: (any Channel)?
            if s.open.count >= limits.maxConnections {
                guard let idle = s.open.values.filter({ !$0.busy }).min(by: { $0.lastActive < $1.lastActive }) else {
                    return (false, nil)
                }
                s.open[ObjectIdentifier(idle.channel)] = nil
                victim = idle.channel
            }
            s.clock += 1
            s.open[ObjectIdentifier(channel)] = Tracked(channel: channel, lastActive: s.clock)
            return (true, victim)
        }
        victim?.close(promise: nil)
        if accepted {
            channel.closeFuture.whenComplete { [self] _ in
                state.withLock { _ = $0.open.removeValue(forKey: ObjectIdentifier(channel)) }
            }
        }
        return accepted
    }

    func markBusy(_ channel: any Channel, _ busy: Bool) {
        state.withLock { s in
            s.clock += 1
            s.open[ObjectIdentifier(channel)]?.busy = busy
            s.open[ObjectIdentifier(channel)]?.lastActive = s.clock
        }
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

    private var headDeadline: NIODeadline?

    /// `headDeadline`: the connection was registered already (by `ProxyProtocolDetector`)
    /// and must deliver its first request head by then.
    init(_ connections: ConnectionGuard, headDeadline: NIODeadline? = nil) {
        self.connections = connections
        self.admitted = headDeadline != nil
        self.headDeadline = headDeadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if let headDeadline {
            let channel = context.channel
            deadline = context.eventLoop.scheduleTask(deadline: headDeadline) { channel.close(promise: nil) }
        } else if context.channel.isActive {
            admit(context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard !admitted else { return }
        admitted = true
        guard connections.admit(context.channel) else {
            context.close(promise: nil)
            return
        }
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
            connections.markBusy(context.channel, true)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        context.write(data, promise: written)
        let (connections, channel) = (self.connections, context.channel)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenSuccess {
            connections.markBusy(channel, false)
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
