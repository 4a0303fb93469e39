import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import TestSupport
import Testing

@testable import ModelAgent

#if canImport(Glibc)
    import Glibc
#endif

/// The admin port's `/v1/models`, in process: streamed in chunks over HTTP/1.1, whole
/// (with a length) over HTTP/1.0, the same list either way.
@Suite(.timeLimit(.minutes(1))) struct StatusServerTests {
    private struct Listed: Decodable, Equatable {
        let name: String
        let state: String
    }

    @Test func theModelListIsStreamedOverHTTP11AndWholeOverHTTP10() async throws {
        let board = StatusBoard()
        // More than two chunks' worth, added out of order: the list is sorted by name.
        let count = 600
        for index in (0..<count).reversed() {
            board.update(try ModelName(validating: String(format: "m%04d", index)), uri: "s3://b/\(index)") {
                $0.state = index % 2 == 0 ? .loaded : .downloading
            }
        }
        let server = try await StatusServer.start(
            group: MultiThreadedEventLoopGroup.singleton, host: "127.0.0.1", port: 0,
            sources: StatusSources(board: board, metrics: AgentMetrics(), isReady: { true }),
            logger: Logger(label: "status-test"))
        do {
            let expected = (0..<count).map {
                Listed(name: String(format: "m%04d", $0), state: $0 % 2 == 0 ? "Loaded" : "Downloading")
            }

            let streamed = try await TestHTTP.request("GET", "http://127.0.0.1:\(server.port)/v1/models")
            #expect(streamed.status == 200 && streamed.headers["transfer-encoding"] == "chunked")
            #expect(try streamed.json([Listed].self) == expected)

            // HEAD: the head a GET gets, no body.
            let head = try await TestHTTP.request("HEAD", "http://127.0.0.1:\(server.port)/v1/models")
            #expect(head.status == 200 && head.body.isEmpty && head.headers["transfer-encoding"] == "chunked")

            let whole = try Self.http10(port: server.port, path: "/v1/models")
            #expect(whole.head.contains("Content-Length: \(whole.body.count)"))
            #expect(try JSONDecoder().decode([Listed].self, from: whole.body) == expected)
            #expect(whole.body == streamed.body)

            // Emptied, it is an empty list again.
            for index in 0..<count { board.remove(try ModelName(validating: String(format: "m%04d", index))) }
            let empty = try await TestHTTP.request("GET", "http://127.0.0.1:\(server.port)/v1/models")
            #expect(empty.text == "[]")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test func aChunkWhoseModelsWereAllRemovedLeavesTheListWellFormed() throws {
        let board = StatusBoard()
        let names = try (0..<600).map { try ModelName(validating: String(format: "m%04d", $0)) }
        for name in names { board.update(name, uri: "s3://b/\(name)") { $0.state = .loaded } }
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try channel.pipeline.syncOperations.addHandler(ChannelInboundHandlerAdapterForContext())
        let context = try channel.pipeline.syncOperations.context(
            handlerType: ChannelInboundHandlerAdapterForContext.self)
        let stream = ModelListStream(
            sources: StatusSources(board: board, metrics: AgentMetrics(), isReady: { true }), keepAlive: true)
        // Listed, then the whole first chunk and one model of the second removed.
        for name in names[0..<257] { board.remove(name) }
        stream.start(context: context, version: .http1_1, bodyless: false)
        channel.embeddedEventLoop.run()
        var body = Data()
        var ended = false
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            switch part {
            case .head(let head): #expect(head.headers["transfer-encoding"] == ["chunked"])
            case .body(.byteBuffer(let buffer)): body.append(contentsOf: buffer.readableBytesView)
            case .body: Issue.record("unexpected body part")
            case .end: ended = true
            }
        }
        #expect(ended)
        let listed = try JSONDecoder().decode([Listed].self, from: body)
        #expect(listed.map(\.name) == names[257...].map(\.rawValue))
    }

    @Test func aClientResettingPipelinedListRequestsLeavesTheServerUp() async throws {
        let board = StatusBoard()
        // More than one chunk: the first list is still being streamed when the reset comes.
        for index in 0..<600 {
            board.update(try ModelName(validating: String(format: "m%04d", index)), uri: "s3://b") { _ in }
        }
        let server = try await StatusServer.start(
            group: MultiThreadedEventLoopGroup.singleton, host: "127.0.0.1", port: 0,
            sources: StatusSources(board: board, metrics: AgentMetrics(), isReady: { true }),
            logger: Logger(label: "status-test"))
        do {
            // Two pipelined requests, then a reset before reading: NIO hands the second to the
            // handler mid-stream as the connection goes (this trapped the agent).
            let request = Array("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            for second in ["/v1/models", "/livez"] {
                for _ in 0..<5 {
                    let fd = try connectLoopback(port: server.port)
                    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                    let both = request + Array("GET \(second) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
                    _ = send(fd, both, both.count, 0)
                    close(fd)
                }
            }
            let live = try await TestHTTP.request("GET", "http://127.0.0.1:\(server.port)/livez")
            #expect(live.status == 200)
            let listed = try await TestHTTP.request("GET", "http://127.0.0.1:\(server.port)/v1/models")
            #expect(try listed.json([Listed].self).count == 600)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// Only there to give the stream a context on an embedded channel.
    private final class ChannelInboundHandlerAdapterForContext: ChannelInboundHandler {
        typealias InboundIn = Never
    }

    /// One HTTP/1.0 GET on a raw socket, read until the server closes.
    private static func http10(port: Int, path: String) throws -> (head: String, body: Data) {
        let received = Data(try exchangeOnLoopback(port: port, "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
        guard let split = received.range(of: Data("\r\n\r\n".utf8)) else { throw TestSetupError("no head") }
        return (String(decoding: received[..<split.lowerBound], as: UTF8.self), Data(received[split.upperBound...]))
    }
}
