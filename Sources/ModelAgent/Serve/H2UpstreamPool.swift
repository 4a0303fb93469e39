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
        case ready(any Channel, Multiplexer)
        case closed
    }

    let eventLoop: any EventLoop
    private let host: String
    private let port: Int
    private let connectTimeout: TimeAmount
    private let state: NIOLoopBoundBox<State>

    init(eventLoop: any EventLoop, host: String, port: Int, connectTimeout: TimeAmount = .seconds(5)) {
        self.eventLoop = eventLoop
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
        state = NIOLoopBoundBox.makeBoxSendingValue(.none, eventLoop: eventLoop)
    }

    /// Settings for both sides of the proxy's HTTP/2: 128 KiB per-stream windows keep a
    /// stalled stream's buffered bytes small (a stream's reads stop while the other side
    /// cannot take more, so its window is what it may hold).
    static let streamConfiguration: NIOHTTP2Handler.StreamConfiguration = {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.targetWindowSize = 128 << 10
        configuration.outboundBufferSizeHighWatermark = 64 << 10
        configuration.outboundBufferSizeLowWatermark = 32 << 10
        return configuration
    }()

    /// `server`: the side facing clients, which open up to 256 concurrent streams; the
    /// side facing the model server takes no pushed or server-opened streams.
    static func connectionConfiguration(server: Bool) -> NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: server ? 256 : 0),
            HTTP2Setting(parameter: .initialWindowSize, value: 128 << 10),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 64 << 10),
        ]
        if !server { configuration.initialSettings.append(HTTP2Setting(parameter: .enablePush, value: 0)) }
        configuration.targetWindowSize = 1 << 20
        return configuration
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
        case .ready(let channel, let multiplexer) where channel.isActive:
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
                        let multiplexer = try sync.configureHTTP2Pipeline(
                            mode: .client, connectionConfiguration: Self.connectionConfiguration(server: false),
                            streamConfiguration: Self.streamConfiguration,
                            inboundStreamInitializer: { stream in stream.close() })
                        try sync.addHandler(H2UpstreamConnectionWatch(pool: bound))
                        if case .closed = pool.state.value {
                            channel.close(promise: nil)
                            return pool.settle(.failure(UpstreamUnavailable(reason: "the agent is shutting down")))
                        }
                        pool.settle(.success((channel, multiplexer)))
                    } catch {
                        channel.close(promise: nil)
                        pool.settle(.failure(UpstreamUnavailable(reason: "connection setup failed")))
                    }
                }
            }
    }

    private func settle(_ result: Result<(any Channel, Multiplexer), UpstreamUnavailable>) {
        guard case .connecting(let waiters) = state.value else { return }
        switch result {
        case .success(let (channel, multiplexer)):
            state.value = .ready(channel, multiplexer)
            for waiter in waiters { waiter(.success(multiplexer)) }
        case .failure(let failure):
            state.value = .none
            for waiter in waiters { waiter(.failure(failure)) }
        }
    }

    /// The server closed `channel` or will not take new streams on it: the next stream
    /// opens a new connection; streams running on the old one finish there.
    fileprivate func retire(_ channel: any Channel) {
        if case .ready(let current, _) = state.value, current === channel { state.value = .none }
    }

    /// Closes the connection (its open streams end) and refuses new ones.
    func close() {
        eventLoop.execute { [self] in
            if case .ready(let channel, _) = state.value { channel.close(promise: nil) }
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

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A connection-level protocol error (NIO sends GOAWAY and closes): nothing new
        // goes there.
        pool.value.retire(context.channel)
    }
}
