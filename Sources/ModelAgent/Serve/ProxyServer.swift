import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The agent's proxied port (`--port`, KServe's 9081): in serverless mode queue-proxy sends
/// every request of the pod here, HTTP/1.1 or h2c (`ProxyProtocolDetector`). Probes are
/// answered (`ProbeRequest`), everything else is streamed to the model server. The agent's
/// own endpoints are not served here; they are on the admin port.
final class ProxyServer: Sendable {
    private let channel: any Channel
    private let pools: [UpstreamPool]
    private let h2Pools: [H2UpstreamPool]

    var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel, pools: [UpstreamPool], h2Pools: [H2UpstreamPool]) {
        self.channel = channel
        self.pools = pools
        self.h2Pools = h2Pools
    }

    /// `upstream`: host and port of the model server for HTTP/1.x clients; `h2Upstream`:
    /// where HTTP/2 (h2c) clients' requests go, spoken as h2c (the model server's gRPC port).
    /// Both are plain TCP: TLS is not spoken upstream.
    static func start(
        group: MultiThreadedEventLoopGroup, host: String, port: Int, upstream: (host: String, port: Int),
        h2Upstream: (host: String, port: Int), shared: ProxyContext, limits: ConnectionGuard.Limits,
        logger: Logger
    ) async throws -> ProxyServer {
        let pools = group.makeIterator().map { UpstreamPool(eventLoop: $0, host: upstream.host, port: upstream.port) }
        let h2Pools = group.makeIterator().map {
            H2UpstreamPool(eventLoop: $0, host: h2Upstream.host, port: h2Upstream.port)
        }
        let connections = ConnectionGuard(limits: limits)
        let h2Streams = H2StreamBudget(limit: limits.maxConnections)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let pool = pools.first(where: { $0.eventLoop === channel.eventLoop }),
                        let h2Pool = h2Pools.first(where: { $0.eventLoop === channel.eventLoop })
                    else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ProxyProtocolDetector(
                            .init(
                                shared: shared, pool: pool, h2Pool: h2Pool, connections: connections,
                                h2Streams: h2Streams)))
                }
            }
            .bind(host: host, port: port).get()
        try await AcceptFailureLog.attach(to: channel, logger: logger, port: "agent port")
        return ProxyServer(channel: channel, pools: pools, h2Pools: h2Pools)
    }

    /// Stops accepting connections and closes the idle upstream ones; connections still
    /// open end with the event loops.
    func stop() async {
        try? await channel.close()
        for pool in pools { pool.close() }
        for pool in h2Pools { pool.close() }
    }
}
