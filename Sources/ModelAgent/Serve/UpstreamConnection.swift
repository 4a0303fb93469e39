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
    func responseHead(_ head: HTTP1ResponseHead, framing: HTTP1BodyFraming, from connection: UpstreamConnection)
    /// Body bytes as the server framed them (chunked framing included when asked for).
    func responseBody(_ body: ByteBuffer, from connection: UpstreamConnection)
    func responseEnd(from connection: UpstreamConnection)
    func responseFlush()
    /// The connection failed or closed before the response ended.
    func upstreamFailed(_ reason: String, from connection: UpstreamConnection)
}

/// One HTTP/1.1 connection to the model server, on the socket's bytes. While it serves a
/// request it parses the response's head (`HTTP1Parser`) and finds its body's end
/// (`HTTP1BodyReader`), passing the bytes to its receiver as they come, and stops reading
/// from the server while the client cannot take more (backpressure: a slow client never
/// makes the agent buffer a response).
final class UpstreamConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var receiver: (any UpstreamReceiver)?
    private var pendingRead = false
    /// The server said it will close the connection (or spoke HTTP/1.0 without keep-alive).
    private(set) var mayReuse = true
    /// True once it has served a request: the server may have closed it since, so a request
    /// sent on it that fails before any answer may be sent again on a new connection.
    var reused = false
    /// Some bytes came back since the current request was attached: a request is sent
    /// again only on a connection that said nothing, since one the server began to answer
    /// (however badly) may have been processed.
    private(set) var heardBack = false
    /// When it was last given back to the pool.
    var idleSince = NIODeadline.uptimeNanoseconds(0)
    private var requestMethod = HTTPMethod.GET
    /// Pass chunked bodies on with their framing (the client speaks HTTP/1.1).
    private var rawChunks = true
    private var inbound: ByteBuffer?
    private var headScanned = 0
    /// The current response's body, once its head has been read.
    private var body: HTTP1BodyReader?

    private static let switchedProtocols = HTTP1ParseError.malformed("the model server switched protocols")

    init() {}

    var isActive: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// `requestMethod`: a HEAD's answer has no body whatever its head says.
    func attach(_ receiver: any UpstreamReceiver, requestMethod: HTTPMethod, rawChunks: Bool) {
        self.receiver = receiver
        heardBack = false
        self.requestMethod = requestMethod
        self.rawChunks = rawChunks
    }

    func detach() {
        receiver = nil
        resumeReads()
    }

    func send(_ bytes: ByteBuffer) {
        context?.write(wrapOutboundOut(bytes), promise: nil)
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
        var incoming = unwrapInboundIn(data)
        guard receiver != nil else {
            // Nothing was asked: an idle connection that talks is not to be trusted.
            mayReuse = false
            context.close(promise: nil)
            return
        }
        heardBack = true
        if inbound == nil {
            inbound = incoming
        } else {
            inbound?.writeBuffer(&incoming)
        }
        do {
            try process()
        } catch {
            fail(context, error == Self.switchedProtocols ? error.reason : "invalid HTTP from the model server")
        }
    }

    private func process() throws(HTTP1ParseError) {
        while let receiver, var bytes = inbound, bytes.readableBytes > 0 {
            inbound = nil
            defer { if bytes.readableBytes > 0 { inbound = bytes } }
            if var reader = body {
                body = nil
                let ended = try reader.next(&bytes, raw: rawChunks) { receiver.responseBody($0, from: self) }
                guard ended else {
                    body = reader
                    return
                }
                self.receiver = nil
                // Bytes after a response nobody asked for: the connection is not reused.
                if bytes.readableBytes > 0 { mayReuse = false }
                receiver.responseEnd(from: self)
                return
            }
            guard let head = try HTTP1Parser.responseHead(&bytes, scanned: &headScanned) else { return }
            if head.code == 101 {
                // Never asked for (Upgrade is not forwarded).
                throw Self.switchedProtocols
            }
            let framing = try HTTP1Parser.responseFraming(head, requestMethod: requestMethod)
            if head.code < 200 {
                receiver.responseHead(head, framing: .none, from: self)
                continue
            }
            // A server that framed its answer two ways, or gave a 204 a body, may send bytes
            // after it that the next request on this connection would take for its answer.
            let ambiguous =
                (head.fields.contains(.transferEncoding) && head.fields.contains(.contentLength))
                || (head.code == 204
                    && (head.fields.contains(.transferEncoding) || (try? head.fields.contentLength()) ?? 0 != 0))
            if !head.isKeepAlive || framing == .untilClose || ambiguous { mayReuse = false }
            body = HTTP1BodyReader(framing)
            receiver.responseHead(head, framing: framing, from: self)
            if framing == .none {
                body = nil
                self.receiver = nil
                if bytes.readableBytes > 0 { mayReuse = false }
                receiver.responseEnd(from: self)
                return
            }
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        mayReuse = false
        inbound = nil
        body = nil
        if let receiver {
            self.receiver = nil
            receiver.upstreamFailed(reason, from: self)
        }
        context.close(promise: nil)
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
        if let receiver {
            self.receiver = nil
            if let reader = body, reader.isUntilClose {
                // The body was delimited by this close.
                body = nil
                receiver.responseEnd(from: self)
            } else {
                receiver.upstreamFailed("connection closed by the model server", from: self)
            }
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
        if case ChannelError.connectTimeout = error { return "connect timed out" }
        // NIO's descriptions name hosts and internals: a client of the proxy gets a category.
        return "connection failed"
    }
}
