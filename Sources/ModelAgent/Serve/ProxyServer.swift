import NIOCore
import NIOHTTP1
import NIOPosix

/// The agent's proxied port (`--port`, KServe's 9081): in serverless mode queue-proxy sends
/// every request of the pod here. Probes are answered (`ProbeRequest`), everything else is
/// streamed to the model server. The agent's own endpoints are not served here; they are
/// on the admin port.
final class ProxyServer: Sendable {
    private let channel: any Channel
    private let pools: [UpstreamPool]

    var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel, pools: [UpstreamPool]) {
        self.channel = channel
        self.pools = pools
    }

    /// `upstream`: host and port of the model server (plain HTTP; h2c and TLS are not spoken
    /// upstream).
    static func start(
        group: MultiThreadedEventLoopGroup, host: String, port: Int, upstream: (host: String, port: Int),
        shared: ProxyContext, limits: ConnectionGuard.Limits
    ) async throws -> ProxyServer {
        let pools = group.makeIterator().map { UpstreamPool(eventLoop: $0, host: upstream.host, port: upstream.port) }
        let connections = ConnectionGuard(limits: limits)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let pool = pools.first(where: { $0.eventLoop === channel.eventLoop }) else {
                        throw ChannelError.ioOnClosedChannel
                    }
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(ConnectionGuardHandler(connections))
                    try sync.addHandler(ProxyHandler(shared: shared, pool: pool))
                }
            }
            .bind(host: host, port: port).get()
        return ProxyServer(channel: channel, pools: pools)
    }

    /// Stops accepting connections and closes the idle upstream ones; connections still
    /// open end with the event loops.
    func stop() async {
        try? await channel.close()
        for pool in pools { pool.close() }
    }
}
