import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import ModelAgent

struct UpstreamPoolTests {
    @Test("idle connections close after the idle timeout; one taken again in time stays open")
    func idleConnectionsExpire() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let serverClosed = NIOLockedValueBox(0)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.closeFuture.whenComplete { _ in serverClosed.withLockedValue { $0 += 1 } }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let loop = group.next()
        let pool = UpstreamPool(
            eventLoop: loop, host: "127.0.0.1", port: server.localAddress?.port ?? 0, idleTimeout: .milliseconds(200))
        let taken = NIOLoopBoundBox<UpstreamConnection?>.makeEmptyBox(eventLoop: loop)
        let ready = loop.makePromise(of: Void.self)
        loop.execute {
            pool.acquire(fresh: true) { first in
                pool.acquire(fresh: true) { second in
                    guard case .success(let a) = first, case .success(let b) = second else {
                        return ready.fail(UpstreamUnavailable(reason: "no connection"))
                    }
                    pool.release(a)
                    pool.release(b)
                    // The most recently released is taken again and held past the timeout.
                    pool.acquire { again in
                        if case .success(let connection) = again { taken.value = connection }
                        ready.succeed()
                    }
                }
            }
        }
        try await ready.futureResult.get()
        try await eventually("the idle connection to be closed", timeout: .seconds(30)) {
            serverClosed.withLockedValue { $0 } >= 1
        }
        // The sweep that closed it has run: the connection held then is still open.
        let held = try await loop.submit { (taken.value?.isActive ?? false, taken.value?.reused ?? false) }.get()
        #expect(held == (true, true))
        #expect(serverClosed.withLockedValue { $0 } == 1)
        try await loop.submit {
            if let connection = taken.value { pool.release(connection) }
            taken.value = nil
        }.get()
        try await eventually("the connection given back to be closed in turn", timeout: .seconds(30)) {
            serverClosed.withLockedValue { $0 } == 2
        }
        pool.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}
