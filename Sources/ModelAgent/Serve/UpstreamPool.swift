import NIOCore
import NIOHTTP1
import NIOPosix

/// Kept-alive connections to the model server for the client connections of one event
/// loop: a request takes the most recently used idle connection (the least likely to have
/// been closed by the server's keep-alive timeout) or opens a new one on the same loop, so
/// bytes never change threads on their way through the proxy.
final class UpstreamPool: Sendable {
    let eventLoop: any EventLoop
    let host: String
    let port: Int
    /// `host:port` as a Host field names the server (an IPv6 address in brackets).
    let authority: String
    private let idle: NIOLoopBoundBox<[UpstreamConnection]>
    private let closed: NIOLoopBoundBox<Bool>
    /// Closes the connections idle for `idleTimeout`: one timer for the pool, due when the
    /// oldest idle connection expires, not one per connection scheduled at every release.
    private let sweep: NIOLoopBoundBox<Scheduled<Void>?>
    private let maxIdle: Int
    private let idleTimeout: TimeAmount
    private let connectTimeout: TimeAmount

    init(
        eventLoop: any EventLoop, host: String, port: Int, maxIdle: Int = 512, idleTimeout: TimeAmount = .seconds(60),
        connectTimeout: TimeAmount = .seconds(5)
    ) {
        self.eventLoop = eventLoop
        self.host = host
        self.port = port
        authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self.connectTimeout = connectTimeout
        idle = NIOLoopBoundBox.makeBoxSendingValue([], eventLoop: eventLoop)
        closed = NIOLoopBoundBox.makeBoxSendingValue(false, eventLoop: eventLoop)
        sweep = NIOLoopBoundBox.makeBoxSendingValue(nil, eventLoop: eventLoop)
    }

    /// Calls `done` on the pool's loop with a connection, or the reason there is none;
    /// `fresh`: a new connection, not one kept alive.
    func acquire(fresh: Bool = false, _ done: @escaping (Result<UpstreamConnection, UpstreamUnavailable>) -> Void) {
        eventLoop.preconditionInEventLoop()
        while !fresh, let connection = idle.value.popLast() {
            if connection.isActive {
                connection.reused = true
                return done(.success(connection))
            }
        }
        if closed.value { return done(.failure(UpstreamUnavailable(reason: "the agent is shutting down"))) }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection())
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard let connection = try? channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                    else {
                        channel.close(promise: nil)
                        return done(.failure(UpstreamUnavailable(reason: "connection setup failed")))
                    }
                    done(.success(connection))
                case .failure(let error):
                    done(.failure(UpstreamUnavailable(reason: Self.describeConnectError(error))))
                }
            }
    }

    /// Takes back a connection whose exchange completed cleanly; others are closed.
    func release(_ connection: UpstreamConnection) {
        eventLoop.preconditionInEventLoop()
        connection.detach()
        guard connection.mayReuse, connection.isActive, !closed.value, idle.value.count < maxIdle else {
            connection.close()
            return
        }
        connection.idleSince = .now()
        idle.value.append(connection)
        armSweep()
    }

    /// Idle connections are in the order they were given back (taken from the end), so the
    /// first is the next to expire.
    private func armSweep() {
        guard sweep.value == nil, let oldest = idle.value.first else { return }
        sweep.value = eventLoop.assumeIsolated().scheduleTask(deadline: oldest.idleSince + idleTimeout) { [self] in
            sweep.value = nil
            let now = NIODeadline.now()
            idle.value.removeAll { connection in
                guard !connection.isActive || connection.idleSince + idleTimeout <= now else { return false }
                connection.close()
                return true
            }
            armSweep()
        }
    }

    /// Closes the idle connections and refuses new ones.
    func close() {
        eventLoop.execute { [self] in
            closed.value = true
            sweep.value?.cancel()
            sweep.value = nil
            for connection in idle.value { connection.close() }
            idle.value.removeAll()
        }
    }

    static func describeConnectError(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first {
                return "cannot connect: \(UpstreamConnection.describe(first.error))"
            }
            if error.dnsAError != nil || error.dnsAAAAError != nil { return "cannot resolve the model server's host" }
            return "cannot connect"
        }
        return "cannot connect: \(UpstreamConnection.describe(error))"
    }
}

struct UpstreamUnavailable: Error {
    let reason: String

    /// What a client gets, with a 502, when its request never reached the server
    /// (HTTP/1.1 and HTTP/2 alike).
    static func answerBody(_ reason: String) -> String {
        "{\"error\":" + JSONText.quoted("model server unavailable: " + reason) + "}"
    }
}
