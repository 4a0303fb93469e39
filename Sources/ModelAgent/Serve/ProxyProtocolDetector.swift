import NIOCore
import NIOHTTP1
import NIOHTTP2

/// First handler of a proxied connection. It registers the connection with the guard,
/// then looks at the first bytes: a client speaking HTTP/2 with prior knowledge (h2c, as
/// gRPC clients and queue-proxy's h2c transport do) opens with the HTTP/2 connection
/// preface, anything else is HTTP/1.x. It sets up the pipeline for that protocol, hands it
/// the bytes read so far and leaves.
final class ProxyProtocolDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum WireProtocol: Equatable {
        case http1
        case h2
    }

    struct Setup: Sendable {
        var shared: ProxyContext
        var pool: UpstreamPool
        var h2Pool: H2UpstreamPool
        var connections: ConnectionGuard
        var h2Streams: H2StreamBudget
    }

    private let setup: Setup
    private var buffered: ByteBuffer?
    private var admitted = false
    private var slot: ConnectionGuard.Slot?
    private var deadline: Scheduled<Void>?
    /// When the first request head (or HTTP/2 stream) must have arrived.
    private var headDeadline = NIODeadline.now()

    init(_ setup: Setup) {
        self.setup = setup
    }

    /// Nil while the bytes so far are a prefix of the preface.
    static func decide(_ bytes: some Collection<UInt8>) -> WireProtocol? {
        for (byte, expected) in zip(bytes, preface) where byte != expected { return .http1 }
        return bytes.count >= preface.count ? .h2 : nil
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
        guard let slot = setup.connections.admit(context.channel) else {
            context.close(promise: nil)
            return
        }
        self.slot = slot
        // A connection that never says enough to tell its protocol is closed as one that
        // never sends a request head.
        let channel = context.channel
        let wait = setup.connections.limits.headerTimeout
        headDeadline = .now() + .nanoseconds(wait.nanoseconds)
        deadline = context.eventLoop.scheduleTask(deadline: headDeadline) {
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        var bytes = buffered ?? context.channel.allocator.buffer(capacity: incoming.readableBytes)
        buffered = nil
        bytes.writeBuffer(&incoming)
        guard let found = Self.decide(bytes.readableBytesView) else {
            buffered = bytes
            return
        }
        deadline?.cancel()
        deadline = nil
        do {
            try configure(found, context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    private func configure(_ found: WireProtocol, _ channel: any Channel) throws {
        guard let slot else { throw ChannelError.ioOnClosedChannel }
        let sync = channel.pipeline.syncOperations
        let setup = self.setup
        switch found {
        case .http1:
            try sync.addHandler(
                ProxyHandler(
                    shared: setup.shared, pool: setup.pool, connections: setup.connections, slot: slot,
                    headDeadline: headDeadline))
        case .h2:
            let activity = H2ConnectionActivity(
                channel: channel, connections: setup.connections, slot: slot, firstStreamBy: headDeadline)
            _ = try sync.configureHTTP2Pipeline(
                mode: .server, connectionConfiguration: H2Settings.connection(server: true),
                streamConfiguration: H2Settings.stream(server: true), streamDelegate: activity
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(
                        H2StreamProxy(
                            shared: setup.shared, pool: setup.h2Pool, budget: setup.h2Streams, connection: activity))
                }
            }
            try sync.addHandler(H2ClientConnectionGuard())
        }
    }
}
