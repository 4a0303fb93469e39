import NIOCore
import NIOHTTP2

/// One stream of the h2c connection to the model server, carrying one client stream's
/// request (see `H2StreamProxy`): it relays the server's frames to that client stream and
/// stops reading while the client stream cannot take more.
final class H2UpstreamStream: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private weak var client: H2StreamProxy?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// The server's END_STREAM arrived: a close after it is not a failure.
    private var responseEnded = false

    init(client: H2StreamProxy) {
        self.client = client
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func send(_ payload: HTTP2Frame.FramePayload) {
        context?.write(wrapOutboundOut(payload), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// Cancels the stream (RST_STREAM to the server) unless it has already ended.
    func close() {
        client = nil
        context?.close(promise: nil)
    }

    func resumeReads() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if headers.endStream { responseEnded = true }
            client?.responseHeaders(headers, from: self)
        case .data(let data):
            if data.endStream { responseEnded = true }
            client?.responseData(data, from: self)
        case .rstStream:
            if !responseEnded { client?.upstreamFailed("the model server reset the stream", from: self) }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        client?.responseFlush()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if client?.canAcceptResponse ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { client?.upstreamWritable(from: self) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !responseEnded { client?.upstreamFailed("the model server closed the stream", from: self) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
