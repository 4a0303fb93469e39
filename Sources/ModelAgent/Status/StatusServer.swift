import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the status endpoints read. Closures keep the server ignorant of the agent.
struct StatusSources: Sendable {
    var board: StatusBoard
    var metrics: AgentMetrics
    var config: ConfigHealth
    var traffic: ModelTraffic?
    var cache: ModelCache?
    var isReady: @Sendable () -> Bool
    var isDraining: @Sendable () -> Bool = { false }

    init(
        board: StatusBoard, metrics: AgentMetrics, config: ConfigHealth = ConfigHealth(), traffic: ModelTraffic? = nil,
        isReady: @escaping @Sendable () -> Bool
    ) {
        self.board = board
        self.metrics = metrics
        self.config = config
        self.traffic = traffic
        self.isReady = isReady
    }
}

/// The admin port's endpoints: /v1/models[/<name>], /readyz, /livez, /metrics. They say
/// which models exist, where they come from and why they failed, so they are kept off the
/// proxied port, which every client of the InferenceService can reach. A kubelet probe
/// (User-Agent kube-probe/…, or a K-Network-Probe header) gets the readiness answer on
/// any path.
final class StatusServer: Sendable {
    private let channel: any Channel

    var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func start(
        group: any EventLoopGroup, host: String, port: Int, sources: StatusSources,
        limits: ConnectionGuard.Limits = ConnectionGuard.Limits(), logger: Logger
    ) async throws -> StatusServer {
        let connections = ConnectionGuard(limits: limits)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(connections))
                    try channel.pipeline.syncOperations.addHandler(StatusHandler(sources: sources))
                }
            }
            .bind(host: host, port: port).get()
        try await AcceptFailureLog.attach(to: channel, logger: logger, port: "admin port")
        return StatusServer(channel: channel)
    }

    func stop() async {
        try? await channel.close()
    }
}

private final class StatusHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let sources: StatusSources
    private var head: HTTPRequestHead?
    /// A model list is being streamed: its response is not ended.
    private var streaming = false

    init(sources: StatusSources) {
        self.sources = sources
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // NIO's pipelining handler holds a pipelined request until the response before it
        // has ended, except once its state machine has failed (seen under a fuzzer: a
        // request delivered mid-stream); a response started now would trap in its error
        // handler. NIO closes such a connection, and so do we, before anything is written.
        if streaming {
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            if head.method == .GET || head.method == .HEAD, head.version.major == 1, head.version.minor >= 1,
                path(of: head) == "/v1/models"
            {
                streaming = true
                let stream = ModelListStream(sources: sources, keepAlive: head.isKeepAlive) { [self] in
                    streaming = false
                }
                return stream.start(context: context, version: head.version, bodyless: head.method == .HEAD)
            }
            let (status, contentType, body) = respond(to: head)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(body.count))
            let keepAlive = head.isKeepAlive
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                promise: nil)
            if head.method != .HEAD {
                context.write(
                    wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    private func path(of head: HTTPRequestHead) -> String {
        String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
    }

    private func respond(to head: HTTPRequestHead) -> (HTTPResponseStatus, String, [UInt8]) {
        let path = path(of: head)
        let isProbe =
            head.headers["K-Network-Probe"].first != nil
            || (head.headers["User-Agent"].first?.hasPrefix("kube-probe/") ?? false)
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, "text/plain", Array("method not allowed\n".utf8))
        }
        switch path {
        case "/livez":
            return (.ok, "text/plain", Array("ok\n".utf8))
        case "/readyz":
            return readiness()
        case "/metrics":
            return (
                .ok, "text/plain; version=0.0.4",
                sources.metrics.render(
                    board: sources.board, isReady: sources.isReady(), configValid: sources.config.currentProblem == nil)
            )
        case "/v1/models":
            // HTTP/1.0 (no chunked encoding); HTTP/1.1 is streamed.
            let items = sources.board.snapshot().map { ModelListStream.json($0, sources) }.joined(separator: ",")
            return (.ok, "application/json", Array("[\(items)]".utf8))
        case _ where path.hasPrefix("/v1/models/"):
            let raw = String(path.dropFirst("/v1/models/".count))
            guard let name = try? ModelName(validating: raw), let status = sources.board.status(of: name) else {
                return (.notFound, "application/json", Array("{\"error\":\"model not found\"}".utf8))
            }
            return (
                .ok, "application/json",
                Array(
                    status.json(traffic: sources.traffic?.figures(name), cache: sources.cache?.figures(name)).utf8)
            )
        default:
            if isProbe { return readiness() }
            return (.notFound, "text/plain", Array("not found\n".utf8))
        }
    }

    /// Ready once the initial sync ran. A models.json that cannot be used does not take
    /// the pod out of service (the last good state is served), but the answer says so.
    private func readiness() -> (HTTPResponseStatus, String, [UInt8]) {
        let note =
            sources.config.currentProblem.map {
                "; serving the last good state, because " + SecretRedactor.shared.redact($0)
            } ?? ""
        if sources.isDraining() { return (.serviceUnavailable, "text/plain", Array("shutting down\n".utf8)) }
        return sources.isReady()
            ? (.ok, "text/plain", Array("ready\(note)\n".utf8))
            : (.serviceUnavailable, "text/plain", Array("initial model sync in progress\(note)\n".utf8))
    }
}

/// `GET /v1/models` over HTTP/1.1: the list goes out in chunks of a few hundred models,
/// each written once the one before it has been, so that 10,000 models never need the
/// whole answer (~2 MB, and ~8 MB of intermediate strings) in memory at once. Each chunk
/// reads the statuses as they are then; a model removed meanwhile is left out.
final class ModelListStream {
    private static let batch = 256
    private let sources: StatusSources
    private let keepAlive: Bool
    private let names: [ModelName]
    private var next = 0
    /// Whether an entry was written: the next one needs a comma. Kept across chunks, since a
    /// chunk whose models were all removed meanwhile writes none.
    private var wroteEntry = false
    /// Told just before the response's end is written (a pipelined request may be handed
    /// on during that write).
    private let ending: () -> Void

    init(sources: StatusSources, keepAlive: Bool, ending: @escaping () -> Void = {}) {
        self.sources = sources
        self.keepAlive = keepAlive
        self.ending = ending
        names = sources.board.names()
    }

    static func json(_ status: ModelStatus, _ sources: StatusSources) -> String {
        status.json(traffic: sources.traffic?.figures(status.name), cache: sources.cache?.figures(status.name))
    }

    /// `bodyless`: a HEAD request, answered with the head a GET gets.
    func start(context: ChannelHandlerContext, version: HTTPVersion, bodyless: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: .ok, headers: headers))),
            promise: nil)
        if bodyless { return finish(context: context) }
        writeNext(context: context)
    }

    private func writeNext(context: ChannelHandlerContext) {
        let end = min(names.count, next + Self.batch)
        var text = next == 0 ? "[" : ""
        for status in sources.board.statuses(of: names[next..<end]) {
            if wroteEntry { text += "," }
            text += Self.json(status, sources)
            wroteEntry = true
        }
        next = end
        if end == names.count { text += "]" }
        let chunk = context.channel.allocator.buffer(string: text)
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(chunk))))
        if end == names.count { return finish(context: context) }
        // A write that completes at once would call back inline; going through the event
        // loop keeps the stack flat however many chunks there are. A write that failed
        // leaves the answer cut short: the connection cannot carry another.
        written.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success:
                context.eventLoop.assumeIsolated().execute { self.writeNext(context: context) }
            case .failure:
                context.close(promise: nil)
            }
        }
    }

    private func finish(context: ChannelHandlerContext) {
        ending()
        let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
