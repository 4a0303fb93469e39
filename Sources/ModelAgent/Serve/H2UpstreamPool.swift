import NIOCore
import NIOHTTP2
import NIOPosix

/// The h2c (cleartext HTTP/2, prior knowledge) connection to the model server that carries
/// the HTTP/2 requests (gRPC) of one event loop's clients, each as its own stream. It is
/// opened on first use and replaced once the server closes it or sends GOAWAY; streams
/// beyond the server's concurrency limit wait in NIO's buffer for a free slot.
final class H2UpstreamPool: Sendable {
    typealias Multiplexer = NIOHTTP2Handler.StreamMultiplexer
    typealias Waiter = (Result<Multiplexer, UpstreamUnavailable>) -> Void

    private enum State {
        case none
        case connecting([Waiter])
        case ready(any Channel, Multiplexer, H2UpstreamStreams)
        case closed
    }

    let eventLoop: any EventLoop
    private let host: String
    private let port: Int
    private let connectTimeout: TimeAmount
    private let state: NIOLoopBoundBox<State>

    private let idleTimeout: TimeAmount

    init(
        eventLoop: any EventLoop, host: String, port: Int, connectTimeout: TimeAmount = .seconds(5),
        idleTimeout: TimeAmount = .seconds(60)
    ) {
        self.eventLoop = eventLoop
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        state = NIOLoopBoundBox.makeBoxSendingValue(.none, eventLoop: eventLoop)
    }

    /// Opens a stream to the server; `initializer` sets up its pipeline. `done` is called
    /// on the pool's loop with the stream's channel, or the reason there is none.
    func openStream(
        _ initializer: @escaping NIOChannelInitializer,
        _ done: @escaping (Result<any Channel, UpstreamUnavailable>) -> Void
    ) {
        eventLoop.preconditionInEventLoop()
        connection { [eventLoop] result in
            switch result {
            case .failure(let failure):
                done(.failure(failure))
            case .success(let multiplexer):
                let promise = eventLoop.makePromise(of: (any Channel).self)
                multiplexer.createStreamChannel(promise: promise, initializer)
                promise.futureResult.assumeIsolated().whenComplete { result in
                    done(
                        result.mapError {
                            UpstreamUnavailable(reason: "cannot open a stream: \(UpstreamConnection.describe($0))")
                        })
                }
            }
        }
    }

    private func connection(_ waiter: @escaping Waiter) {
        switch state.value {
        case .ready(let channel, let multiplexer, _) where channel.isActive:
            waiter(.success(multiplexer))
        case .connecting(var waiters):
            state.value = .none
            waiters.append(waiter)
            state.value = .connecting(waiters)
        case .closed:
            waiter(.failure(UpstreamUnavailable(reason: "the agent is shutting down")))
        case .none, .ready:
            state.value = .connecting([waiter])
            connect()
        }
    }

    private func connect() {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in
                let pool = bound.value
                switch result {
                case .failure(let error):
                    pool.settle(.failure(UpstreamUnavailable(reason: UpstreamPool.describeConnectError(error))))
                case .success(let channel):
                    do {
                        let sync = channel.pipeline.syncOperations
                        let streams = H2UpstreamStreams(channel: channel, idleTimeout: pool.idleTimeout)
                        let multiplexer = try sync.configureHTTP2Pipeline(
                            mode: .client, connectionConfiguration: H2Settings.connection(server: false),
                            streamConfiguration: H2Settings.stream, streamDelegate: streams,
                            inboundStreamInitializer: { stream in stream.close() })
                        try sync.addHandler(H2UpstreamConnectionWatch(pool: bound))
                        if case .closed = pool.state.value {
                            channel.close(promise: nil)
                            return pool.settle(.failure(UpstreamUnavailable(reason: "the agent is shutting down")))
                        }
                        pool.settle(.success((channel, multiplexer, streams)))
                    } catch {
                        channel.close(promise: nil)
                        pool.settle(.failure(UpstreamUnavailable(reason: "connection setup failed")))
                    }
                }
            }
    }

    private func settle(_ result: Result<(any Channel, Multiplexer, H2UpstreamStreams), UpstreamUnavailable>) {
        guard case .connecting(let waiters) = state.value else { return }
        switch result {
        case .success(let (channel, multiplexer, streams)):
            state.value = .ready(channel, multiplexer, streams)
            for waiter in waiters { waiter(.success(multiplexer)) }
        case .failure(let failure):
            state.value = .none
            for waiter in waiters { waiter(.failure(failure)) }
        }
    }

    /// The server closed `channel` or will not take new streams on it, or it idled: the
    /// next stream opens a new connection; streams running on the old one finish there,
    /// and it closes after the last.
    fileprivate func retire(_ channel: any Channel) {
        guard case .ready(let current, _, let streams) = state.value, current === channel else { return }
        state.value = .none
        streams.retire()
    }

    /// Refuses new streams; the connection closes once its streams have ended (requests
    /// still running when the event loops stop end with them).
    func close() {
        eventLoop.execute { [self] in
            if case .ready(_, _, let streams) = state.value { streams.retire() }
            let waiting: [Waiter]
            if case .connecting(let waiters) = state.value { waiting = waiters } else { waiting = [] }
            state.value = .closed
            for waiter in waiting { waiter(.failure(UpstreamUnavailable(reason: "the agent is shutting down"))) }
        }
    }
}

/// Last handler of an upstream h2c connection: it sees the frames of stream 0, so it
/// learns of GOAWAY, and of the connection's end.
private final class H2UpstreamConnectionWatch: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let pool: NIOLoopBound<H2UpstreamPool>

    init(pool: NIOLoopBound<H2UpstreamPool>) {
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway = unwrapInboundIn(data).payload { pool.value.retire(context.channel) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool.value.retire(context.channel)
        context.fireChannelInactive()
    }

    /// A connection error closes the connection (the close retires it); stream errors, which
    /// NIO reports here too (a stream reset while the server still sent on it), do not.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if H2ConnectionErrors.endsConnection(error) { context.close(promise: nil) }
    }
}

/// The streams open on one h2c connection to the model server: once retired (GOAWAY,
/// shutdown) the connection closes after its last stream, and one left without streams for
/// the idle timeout is retired and closed, so idle connections do not pile up on the server.
final class H2UpstreamStreams: NIOHTTP2StreamDelegate {
    private struct State {
        var open = 0
        var retired = false
        var timer: Scheduled<Void>?
    }

    private let channel: any Channel
    private let idleTimeout: TimeAmount
    private let state: NIOLoopBoundBox<State>

    init(channel: any Channel, idleTimeout: TimeAmount) {
        self.channel = channel
        self.idleTimeout = idleTimeout
        state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: channel.eventLoop)
        armIdle()
    }

    func streamCreated(_ id: HTTP2StreamID, channel _: any Channel) {
        state.value.open += 1
        state.value.timer?.cancel()
        state.value.timer = nil
    }

    func streamClosed(_ id: HTTP2StreamID, channel _: any Channel) {
        state.value.open -= 1
        guard state.value.open == 0 else { return }
        if state.value.retired { channel.close(promise: nil) } else { armIdle() }
    }

    func retire() {
        state.value.retired = true
        state.value.timer?.cancel()
        state.value.timer = nil
        if state.value.open == 0 { channel.close(promise: nil) }
    }

    private func armIdle() {
        let channel = self.channel
        state.value.timer = channel.eventLoop.scheduleTask(in: idleTimeout) {
            // Closing makes the pool retire it (the watch sees the close).
            channel.close(promise: nil)
        }
    }
}
