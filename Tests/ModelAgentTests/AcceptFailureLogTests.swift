import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import TestSupport
import Testing

@testable import ModelAgent

/// A failure to set up an accepted connection reaches the log, once per interval.
struct AcceptFailureLogTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
    }

    struct Capture: LogHandler {
        let sink: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let extra = event.metadata.flatMap { $0.isEmpty ? nil : " \($0)" } ?? ""
            sink.lines.withLock { $0.append("\(event.level) \(event.message)\(extra)") }
        }
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String { "setsockopt: Permission denied" }
    }

    @Test(arguments: [(Duration.seconds(60), 1), (Duration.zero, 3)])
    func logsFailuresOfAcceptedConnections(interval: Duration, expectedLines: Int) throws {
        let sink = Lines()
        let logger = Logger(label: "test") { _ in Capture(sink: sink) }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            AcceptFailureLog(logger: logger, port: "agent port", interval: interval))
        for _ in 0..<3 { channel.pipeline.fireErrorCaught(Refused()) }
        let lines = sink.lines.withLock { $0 }
        #expect(lines.count == expectedLines, "\(lines)")
        #expect(
            lines.first == "error Cannot set up a connection accepted on the agent port: setsockopt: Permission denied")
        _ = try? channel.finish()
    }

    @Test("a connection whose set-up fails in a real server is logged, as attached after bind")
    func attachedAfterBindSeesChildFailures() async throws {
        let sink = Lines()
        let logger = Logger(label: "test") { _ in Capture(sink: sink) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in channel.eventLoop.makeFailedFuture(Refused()) }
            .bind(host: "127.0.0.1", port: 0).get()
        try await AcceptFailureLog.attach(to: server, logger: logger, port: "agent port")
        let client = try await ClientBootstrap(group: group).connect(
            host: "127.0.0.1", port: server.localAddress?.port ?? 0
        ).get()
        try await eventually("the failed connection to be logged", timeout: .seconds(30)) {
            sink.lines.withLock { $0.contains { $0.contains("accepted on the agent port: setsockopt") } }
        }
        try? await client.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}
