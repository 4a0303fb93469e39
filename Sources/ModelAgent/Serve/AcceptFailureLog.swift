import Logging
import NIOCore
import Synchronization

/// On a listening socket's pipeline, after NIO's accept handler: logs why accepted
/// connections could not be set up (a socket option refused, the connection initializer
/// failing, descriptors exhausted). NIO closes such a connection and fires the error from
/// its accept handler towards the tail, so this handler must come after it: `attach`, after
/// bind, puts it there. Without it clients see resets and the log says nothing. One line per
/// port every `interval` at most, with the count of the ones not logged.
final class AcceptFailureLog: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel

    private struct State {
        var lastLogged: ContinuousClock.Instant?
        var suppressed = 0
    }

    private let logger: Logger
    private let port: String
    private let interval: Duration
    private let state = Mutex(State())

    init(logger: Logger, port: String, interval: Duration = .seconds(60)) {
        self.logger = logger
        self.port = port
        self.interval = interval
    }

    /// Adds the log at the end of a bound server channel's pipeline, behind NIO's accept
    /// handler (a `serverChannelInitializer` would put it in front, where child errors never pass).
    /// If that fails, the channel is closed: a listening socket is never left without its log.
    static func attach(to serverChannel: any Channel, logger: Logger, port: String) async throws {
        do {
            try await serverChannel.pipeline.addHandler(AcceptFailureLog(logger: logger, port: port)).get()
        } catch {
            try? await serverChannel.close()
            throw error
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let now = ContinuousClock.now
        let suppressed = state.withLock { s -> Int? in
            if let last = s.lastLogged, now - last < interval {
                s.suppressed += 1
                return nil
            }
            defer { s = State(lastLogged: now) }
            return s.suppressed
        }
        if let suppressed {
            logger.error(
                "Cannot set up a connection accepted on the \(port): \(error)",
                metadata: suppressed > 0 ? ["not_logged_since_last": "\(suppressed)"] : [:])
        }
        context.fireErrorCaught(error)
    }
}
