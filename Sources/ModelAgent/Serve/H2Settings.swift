import NIOHTTP2
import Synchronization

/// HTTP/2 settings of both sides of the proxy. Windows are HTTP/2's default 64 KiB: a
/// stream's reads stop while the other side cannot take more, so its window is about what
/// it may hold in the agent; 100 streams per client connection, as NIO and most servers.
enum H2Settings {
    /// `server`: the side facing clients. NIO's denial-of-service limits (200 resets or
    /// stream errors in 30 s end the connection) guard that side; the model server is
    /// trusted, and one that answers before reading a body resets each such stream (nginx
    /// does), which at a few thousand requests a second would cut the connection every
    /// few hundred requests.
    static func stream(server: Bool) -> NIOHTTP2Handler.StreamConfiguration {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.targetWindowSize = 65535
        configuration.outboundBufferSizeHighWatermark = 64 << 10
        configuration.outboundBufferSizeLowWatermark = 32 << 10
        if !server {
            // A window of 1 ns: the count keeps its default (NIO sizes a buffer by it).
            configuration.streamResetFrameRateLimit.windowLength = .nanoseconds(1)
            configuration.streamErrorRateLimit.windowLength = .nanoseconds(1)
        }
        return configuration
    }

    /// `server`: the side facing clients; the side facing the model server takes no
    /// pushed or server-opened streams.
    static func connection(server: Bool) -> NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: server ? 100 : 0),
            HTTP2Setting(parameter: .initialWindowSize, value: 65535),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 64 << 10),
        ]
        if !server {
            configuration.initialSettings.append(HTTP2Setting(parameter: .enablePush, value: 0))
            // Every stream error counts as a glitch for the connection's whole life (200 end
            // it); a trusted server's resets are not glitches.
            configuration.maximumConnectionGlitches = .max
        }
        configuration.targetWindowSize = 1 << 20
        return configuration
    }
}

/// Requests in flight over HTTP/2 on the proxied port, across connections: one client
/// connection may carry 100 at once, so without a common bound h2 clients could hold far
/// more than the `--max-connections` requests HTTP/1.1 clients can. Streams beyond it are
/// refused (REFUSED_STREAM: never processed, so clients retry them safely).
final class H2StreamBudget: Sendable {
    private let limit: Int
    private let used: Mutex<Int>

    init(limit: Int) {
        self.limit = limit
        used = Mutex(0)
    }

    func acquire() -> Bool {
        used.withLock { used in
            guard used < limit else { return false }
            used += 1
            return true
        }
    }

    func release() {
        used.withLock { $0 -= 1 }
    }
}
