import NIOCore
import NIOHTTP1

#if canImport(Glibc)
    import Glibc
#endif

/// What an upstream connection reports to the client connection it serves. Both live on
/// the same event loop, so calls are direct.
protocol UpstreamReceiver: AnyObject {
    /// Whether the client can take more bytes now; when not, the upstream stops reading.
    var canAcceptResponse: Bool { get }
    /// The connection can take request bytes again.
    func upstreamWritable(_ connection: UpstreamConnection)
    func responseHead(_ head: HTTPResponseHead, from connection: UpstreamConnection)
    func responseBody(_ body: ByteBuffer, from connection: UpstreamConnection)
    func responseEnd(_ trailers: HTTPHeaders?, from connection: UpstreamConnection)
    func responseFlush()
    /// The connection failed or closed before the response ended.
    func upstreamFailed(_ reason: String, from connection: UpstreamConnection)
}

/// One HTTP/1.1 connection to the model server, the last handler of its pipeline. While
/// it serves a request it forwards the response to its receiver, and stops reading from
/// the server while the client cannot take more (backpressure: a slow client never makes
/// the agent buffer a response).
final class UpstreamConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var receiver: (any UpstreamReceiver)?
    private var pendingRead = false
    /// The server said it will close the connection (or spoke HTTP/1.0 without keep-alive).
    private(set) var mayReuse = true
    /// True once it has served a request: the server may have closed it since, so a request
    /// sent on it that fails before any answer may be sent again on a new connection.
    var reused = false
    var idleTimer: Scheduled<Void>?

    init() {}

    var isActive: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func attach(_ receiver: any UpstreamReceiver) {
        self.receiver = receiver
    }

    func detach() {
        receiver = nil
        resumeReads()
    }

    func send(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    func resumeReads() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    func close() {
        receiver = nil
        context?.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if let receiver, !receiver.canAcceptResponse {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let receiver else {
            // Nothing was asked: an idle connection that talks is not to be trusted.
            if case .end = part {} else { context.close(promise: nil) }
            return
        }
        switch part {
        case .head(let head) where head.status == .switchingProtocols:
            // Never asked for (Upgrade is not forwarded), and NIO's parser stops after it.
            mayReuse = false
            self.receiver = nil
            receiver.upstreamFailed("the model server switched protocols", from: self)
            context.close(promise: nil)
        case .head(let head):
            if head.status.code >= 200 && !head.isKeepAlive { mayReuse = false }
            receiver.responseHead(head, from: self)
        case .body(let buffer):
            receiver.responseBody(buffer, from: self)
        case .end(let trailers):
            self.receiver = nil
            receiver.responseEnd(trailers, from: self)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { receiver?.upstreamWritable(self) }
        context.fireChannelWritabilityChanged()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        receiver?.responseFlush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        mayReuse = false
        idleTimer?.cancel()
        idleTimer = nil
        if let receiver {
            self.receiver = nil
            receiver.upstreamFailed("connection closed by the model server", from: self)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        mayReuse = false
        if let receiver {
            self.receiver = nil
            receiver.upstreamFailed(Self.describe(error), from: self)
        }
        context.close(promise: nil)
    }

    /// A short reason for logs and 502 bodies: what went wrong, not how NIO saw it.
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if error is HTTPParserError { return "invalid HTTP from the model server" }
        if case ChannelError.connectTimeout = error { return "connect timed out" }
        // NIO's descriptions name hosts and internals: a client of the proxy gets a category.
        return "connection failed"
    }
}
