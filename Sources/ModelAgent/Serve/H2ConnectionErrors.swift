import NIOCore
import NIOHTTP2

/// Which errors NIO reports on an HTTP/2 connection's pipeline end the connection. For a
/// connection error NIO sends GOAWAY but leaves closing to the application; a peer that
/// then keeps sending would have its bytes accumulate in the frame decoder until a
/// ByteBuffer size check traps (seen in the hostile run: zero bytes streamed after the
/// preface), so the connection is closed. Stream errors end only their stream and are
/// reported here too; `NoSuchStream` also comes from a client whose new stream raced our
/// GOAWAY. Those leave the connection open (NIO escalates many of them to a connection
/// error itself). The same policy as grpc-swift's server.
enum H2ConnectionErrors {
    static func endsConnection(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.StreamError, is NIOHTTP2Errors.NoSuchStream: false
        default: true
        }
    }
}

/// Last handler of an h2c client connection: closes it on a connection error.
final class H2ClientConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if H2ConnectionErrors.endsConnection(error) { context.close(promise: nil) }
    }
}
