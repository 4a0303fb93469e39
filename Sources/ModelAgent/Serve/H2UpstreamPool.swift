import NIOCore
import NIOHTTP2
import NIOPosix

/// The h2c (cleartext HTTP/2, prior knowledge) connections to the model server that carry
/// the HTTP/2 requests (gRPC) of one event loop's clients, each request as its own stream.
/// A connection takes at most `streamsPerConnection` streams (NIO's assumption when the
/// server sets no limit); past that another connection opens, so clients that hold streams
/// open cannot queue everyone else's behind them. A connection is replaced once the server
/// closes it or sends GOAWAY, and closes after a minute without streams.
final class H2UpstreamPool: Sendable {
    typealias Multiplexer = NIOHTTP2Handler.StreamMultiplexer
    typealias Waiter = (Result<Connection, UpstreamUnavailable>) -> Void

    static let streamsPerConnection = 100

    struct Connection {
        let channel: any Channel
        let multiplexer: Multiplexer
        let streams: H2UpstreamStreams
    }

    private struct State {
        var ready: [Connection] = []
        var waiters: [Waiter] = []
        var connecting = false
        var closed = false
    }

    let eventLoop: any EventLoop
    private let host: String
    private let port: Int
    private let connectTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let state: NIOLoopBoundBox<State>

    init(
        eventLoop: any EventLoop, host: String, port: Int, connectTimeout: TimeAmount = .seconds(5),
        idleTimeout: TimeAmount = .seconds(60)
    ) {
        self.eventLoop = eventLoop
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: eventLoop)
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
            case .success(let connection):
                // Counted from now, so the next request sees this one's slot taken.
                connection.streams.assigned += 1
                let promise = eventLoop.makePromise(of: (any Channel).self)
                connection.multiplexer.createStreamChannel(promise: promise, initializer)
                promise.futureResult.assumeIsolated().whenComplete { result in
                    switch result {
                    case .success(let stream):
                        stream.closeFuture.assumeIsolated().whenComplete { _ in connection.streams.assigned -= 1 }
                        done(.success(stream))
                    case .failure(let error):
                        connection.streams.assigned -= 1
                        done(
                            .failure(
                                UpstreamUnavailable(
                                    reason: "cannot open a stream: \(UpstreamConnection.describe(error))")))
                    }
                }
            }
        }
    }

    private func connection(_ waiter: @escaping Waiter) {
        if state.value.closed { return waiter(.failure(UpstreamUnavailable(reason: "the agent is shutting down"))) }
        if let ready = state.value.ready.first(where: { $0.channel.isActive && $0.streams.hasRoom }) {
            return waiter(.success(ready))
        }
        state.value.waiters.append(waiter)
        if !state.value.connecting {
            state.value.connecting = true
            connect()
        }
    }

    private func connect() {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
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
                            streamConfiguration: H2Settings.stream(server: false), streamDelegate: streams,
                            inboundStreamInitializer: { stream in stream.close() })
                        try sync.addHandler(H2UpstreamConnectionWatch(pool: bound))
                        if pool.state.value.closed {
                            channel.close(promise: nil)
                            return pool.settle(.failure(UpstreamUnavailable(reason: "the agent is shutting down")))
                        }
                        pool.settle(.success(Connection(channel: channel, multiplexer: multiplexer, streams: streams)))
                    } catch {
                        channel.close(promise: nil)
                        pool.settle(.failure(UpstreamUnavailable(reason: "connection setup failed")))
                    }
                }
            }
    }

    /// Hands the new connection to the waiters it has room for; the rest wait for the next.
    private func settle(_ result: Result<Connection, UpstreamUnavailable>) {
        state.value.connecting = false
        var waiters = state.value.waiters
        state.value.waiters = []
        switch result {
        case .success(let connection):
            state.value.ready.append(connection)
            while connection.streams.hasRoom, !waiters.isEmpty {
                waiters.removeFirst()(.success(connection))
            }
            if !waiters.isEmpty {
                state.value.waiters = waiters
                state.value.connecting = true
                connect()
            }
        case .failure(let failure):
            for waiter in waiters { waiter(.failure(failure)) }
        }
    }

    /// The server closed `channel` or will not take new streams on it, or it idled: it
    /// gets no new streams; the ones running finish there, and it closes after the last.
    fileprivate func retire(_ channel: any Channel) {
        guard let index = state.value.ready.firstIndex(where: { $0.channel === channel }) else { return }
        let connection = state.value.ready.remove(at: index)
        connection.streams.retire()
    }

    /// Refuses new streams; each connection closes once its streams have ended (requests
    /// still running when the event loops stop end with them).
    func close() {
        eventLoop.execute { [self] in
            state.value.closed = true
            for connection in state.value.ready { connection.streams.retire() }
            state.value.ready = []
            let waiting = state.value.waiters
            state.value.waiters = []
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
        var assigned = 0
        var retired = false
        var timer: Scheduled<Void>?
    }

    private let channel: any Channel
    private let idleTimeout: TimeAmount
    private let state: NIOLoopBoundBox<State>

    /// Streams handed out on this connection and not yet closed (including those NIO has
    /// not opened yet).
    var assigned: Int {
        get { state.value.assigned }
        set { state.value.assigned = newValue }
    }

    var hasRoom: Bool { !state.value.retired && state.value.assigned < H2UpstreamPool.streamsPerConnection }

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
