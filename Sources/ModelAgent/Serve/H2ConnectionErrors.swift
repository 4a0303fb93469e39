import NIOCore
import NIOHTTP2

/// Which errors NIO reports on an HTTP/2 connection's pipeline end the connection. NIO
/// reports stream errors there too (`StreamClosed` for a frame that crossed a reset, for
/// one, which a busy server causes every few thousand requests), and for a connection error
/// it sends GOAWAY but leaves closing to the application. Closed: a peer whose bytes cannot
/// be framed any more (after such an error, bytes that kept coming piled up in the frame
/// decoder until a ByteBuffer size check trapped: the hostile run), one NIO's denial-of-
/// service checks caught, and I/O errors. Other protocol errors end their stream, or the
/// connection by GOAWAY, after which the peer closes it or it idles out.
enum H2ConnectionErrors {
    static func endsConnection(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.UnableToParseFrame, is NIOHTTP2Errors.BadClientMagic,
            is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock, is NIOHTTP2Errors.ExcessiveContinuationFrames,
            is NIOHTTP2Errors.ExcessiveEmptyDataFrames, is NIOHTTP2Errors.ExcessiveNumberOfGlitches,
            is NIOHTTP2Errors.ExcessiveRSTFrames, is NIOHTTP2Errors.ExcessiveControlFrames,
            is NIOHTTP2Errors.ExcessiveStreamErrors, is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering:
            true
        case is any NIOHTTP2Error, is NIOHTTP2Errors.StreamError:
            false
        default:
            true
        }
    }
}

/// Last handler of an h2c client connection: closes it on a connection error.
final class H2ClientConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    /// Also on any error while the client is not reading: NIO answers each protocol error
    /// with a GOAWAY written past its control-frame cap, so a client that provokes them
    /// without reading would grow that queue without bound.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if H2ConnectionErrors.endsConnection(error) || !context.channel.isWritable { context.close(promise: nil) }
    }
}
