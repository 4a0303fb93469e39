import NIOCore
import NIOHTTP1

/// What every client connection of the proxied port shares.
struct ProxyContext: Sendable {
    /// Where HTTP/1.x requests and HTTP/2 requests go, as logged (redacted).
    var target: String
    var h2Target: String
    var drain: TrafficDrain
    var traffic: ModelTraffic
    var failures: UpstreamFailureLog
    var h2Failures: UpstreamFailureLog
    var health: HealthChecker
    /// The memory cache: requests for a model on standby wait for its load.
    var cache: ModelCache? = nil
    /// How long a request may wait for its model's load.
    var holdTimeout: Duration = .zero
}

/// One client connection of the proxied port (after NIO's HTTP/1.1 server codec, which
/// hands over one request at a time). Probes are answered here; every other request is
/// streamed to the model server over a pooled connection and its answer streamed back.
/// Reads from the client stop while the server side cannot take more, and the upstream
/// connection stops reading while the client cannot (see `UpstreamConnection`), so
/// memory stays bounded by socket buffers, whatever the body sizes.
final class ProxyHandler: ChannelDuplexHandler, UpstreamReceiver {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A request forwarded so far is kept (up to this many body bytes and parts) until its
    /// answer starts, so that an idempotent one can be sent again when a reused connection
    /// turns out closed by the server.
    private static let replayLimit = 64 << 10
    private static let replayPartLimit = 256

    private struct Exchange {
        var head: HTTPRequestHead
        var started: ContinuousClock.Instant
        var model: ModelName?
        var requestEnded = false
        var responseStarted = false
        var closeAfter = false
        /// `Upgrade` or similar: NIO's parser stops after such a head, so nothing more is
        /// read from this client and its connection closes after the answer.
        var lastOnConnection = false
        var status: UInt = 0
        var retried = false
        /// Admitted or held by the cache: given back when the request finishes.
        var ticket: ModelCache.Ticket?
        /// Waiting for its model's load (`holdSerial` tells which wait an answer is for).
        var held = false
        var holdSerial: UInt64 = 0
    }

    private enum State {
        case idle
        /// A probe, answered when its request ends.
        case probe(ProbeRequest, HTTPRequestHead)
        /// Answered locally (an error); the rest of the request is read and dropped.
        case answered
        case connecting(Exchange, pending: [HTTPClientRequestPart])
        case forwarding(Exchange, UpstreamConnection)
    }

    private let shared: ProxyContext
    private let pool: UpstreamPool
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Between a `channelRead` and its `channelReadComplete` (NIO delivers both in one
    /// go, for socket reads and for pipelined requests it held back alike): what is
    /// written upstream now is flushed when the read completes.
    private var inClientRead = false
    private var clientAddress: String?
    /// Set once this connection will close after its current answer: requests NIO still
    /// hands over (pipelined ones) are dropped, never sent to the server.
    private var closing = false
    /// What was sent upstream for the current request while it is replayable; nil once it
    /// is not (too big, not idempotent, or the answer started).
    private var replay: [HTTPClientRequestPart]?
    private var replayBytes = 0
    private var holdSerial: UInt64 = 0
    private var holdTimer: Scheduled<Void>?

    init(shared: ProxyContext, pool: UpstreamPool) {
        self.shared = shared
        self.pool = pool
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inClientRead = true
        if closing { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            if let probe = ProbeRequest.classify(head.headers) {
                state = .probe(probe, head)
            } else if shared.cache != nil && InferenceRoute.changesRepository(path: head.uri) {
                state = .answered
                respondJSON(head, .forbidden, InferenceRoute.repositoryRefusal)
            } else if head.method == .CONNECT {
                state = .answered
                closing = true
                respondText(head, .methodNotAllowed, "CONNECT is not supported\n", close: true)
            } else {
                begin(head)
            }
        case .body(let buffer):
            switch state {
            case .connecting(let exchange, var pending):
                state = .idle  // keeps `pending` uniquely referenced while it grows
                pending.append(.body(.byteBuffer(buffer)))
                state = .connecting(exchange, pending: pending)
            case .forwarding(_, let upstream):
                record(.body(.byteBuffer(buffer)))
                upstream.send(.body(.byteBuffer(buffer)))
            case .idle, .probe, .answered:
                break
            }
        case .end(let trailers):
            switch state {
            case .connecting(var exchange, var pending):
                state = .idle
                exchange.requestEnded = true
                pending.append(.end(trailers))
                state = .connecting(exchange, pending: pending)
            case .forwarding(var exchange, let upstream):
                exchange.requestEnded = true
                state = .forwarding(exchange, upstream)
                record(.end(trailers))
                upstream.send(.end(trailers))
                upstream.flush()
            case .probe(let probe, let head):
                state = .answered
                answerProbe(probe, head)
            case .answered:
                state = .idle
            case .idle:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inClientRead = false
        if case .forwarding(_, let upstream) = state { upstream.flush() }
        context.fireChannelReadComplete()
    }

    /// Reads from the client only while the request can go somewhere.
    func read(context: ChannelHandlerContext) {
        switch state {
        case .connecting:
            pendingRead = true
        case .forwarding(let exchange, let upstream):
            if !upstream.isWritable || (exchange.lastOnConnection && exchange.requestEnded) {
                pendingRead = true
            } else {
                context.read()
            }
        default:
            if closing { pendingRead = true } else { context.read() }
        }
    }

    private func resumeClientReads() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(_, let upstream) = state { upstream.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away: whatever the server is still doing for it is cancelled.
        switch state {
        case .connecting(let exchange, _):
            state = .answered
            finish(exchange, failed: false)
        case .forwarding(let exchange, let upstream):
            state = .answered
            upstream.close()
            finish(exchange, failed: false)
        default:
            break
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Forwarding

    private func begin(_ head: HTTPRequestHead) {
        shared.drain.requestStarted()
        var exchange = Exchange(
            head: head, started: .now, model: shared.traffic.started(ModelTraffic.modelName(inPath: head.uri)))
        exchange.lastOnConnection = head.headers.contains(name: "upgrade")
        replay = Self.isIdempotent(head) ? [] : nil
        replayBytes = 0
        let upstreamHead = ProxyHeaders.upstreamRequest(head, clientAddress: clientAddress)
        guard let cache = shared.cache, let model = exchange.model, InferenceRoute.isInference(path: head.uri),
            let context
        else {
            state = .connecting(exchange, pending: [.head(upstreamHead)])
            return connect(fresh: false)
        }
        holdSerial += 1
        let (serial, loop) = (holdSerial, context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: loop)
        let admission = cache.admit(model) { outcome in
            loop.execute { handler.value.holdEnded(serial, outcome) }
        }
        switch admission {
        case .admitted(let ticket):
            exchange.ticket = ticket
        case .held(let ticket):
            (exchange.ticket, exchange.held, exchange.holdSerial) = (ticket, true, serial)
            holdTimer = loop.scheduleTask(in: .nanoseconds(shared.holdTimeout.nanoseconds)) {
                handler.value.holdEnded(serial, .refused(reason: "model \(model) is still being loaded", retry: true))
            }
        case .refused(let reason, let retry):
            state = .connecting(exchange, pending: [])
            return refuse(exchange, reason: reason, retry: retry)
        case .unmanaged:
            break
        }
        state = .connecting(exchange, pending: [.head(upstreamHead)])
        if !exchange.held { connect(fresh: false) }
    }

    /// The wait for a model's load ended (or timed out): the request goes on, or is
    /// answered 503.
    private func holdEnded(_ serial: UInt64, _ outcome: ModelCache.HeldOutcome) {
        guard case .connecting(var exchange, let pending) = state, exchange.held, exchange.holdSerial == serial else {
            return
        }
        holdTimer?.cancel()
        holdTimer = nil
        exchange.held = false
        state = .connecting(exchange, pending: pending)
        switch outcome {
        case .ready:
            connect(fresh: false)
        case .refused(let reason, let retry):
            refuse(exchange, reason: reason, retry: retry)
        }
    }

    /// Answers 503 for the cache (no upstream was involved). The connection stays open: the
    /// rest of the request, if any, is read and dropped.
    private func refuse(_ exchange: Exchange, reason: String, retry: Bool) {
        replay = nil
        let keepAlive = exchange.head.isKeepAlive && !exchange.lastOnConnection
        state = exchange.requestEnded ? .idle : .answered
        if !keepAlive { closing = true }
        let body = JSONText.object([("error", JSONText.quoted(reason))]) + "\n"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if retry { headers.add(name: "Retry-After", value: "1") }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        respond(
            HTTPResponseHead(version: exchange.head.version, status: .serviceUnavailable, headers: headers),
            exchange.head.method == .HEAD ? "" : body, close: !keepAlive)
        var finished = exchange
        finished.status = 503
        finish(finished, failed: true)
        if keepAlive { resumeClientReads() }
    }

    /// Requests that may be sent twice (RFC 9110 §9.2.2), or that say so with an
    /// idempotency key: a POST that reached a server which then closed the connection may
    /// have been processed, and inference is not free.
    private static func isIdempotent(_ head: HTTPRequestHead) -> Bool {
        switch head.method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        default:
            return head.headers.contains(name: "idempotency-key") || head.headers.contains(name: "x-idempotency-key")
        }
    }

    private func connect(fresh: Bool) {
        pool.acquire(fresh: fresh) { [self] result in
            guard case .connecting(let exchange, let pending) = state else {
                // The client left while we connected: the connection is not needed.
                if case .success(let upstream) = result { pool.release(upstream) }
                return
            }
            switch result {
            case .failure(let error):
                fail(exchange, reason: error.reason)
            case .success(let upstream):
                upstream.attach(self)
                for part in pending { record(part) }
                state = .forwarding(exchange, upstream)
                for part in pending { upstream.send(part) }
                // Inside a client read (a kept-alive connection is handed over at once), the
                // head goes out with the body, in one write, when the request ends or the
                // read completes; a connection that took time to open is written to now.
                if !inClientRead { upstream.flush() }
                resumeClientReads()
            }
        }
    }

    private func record(_ part: HTTPClientRequestPart) {
        guard replay != nil else { return }
        if case .body(.byteBuffer(let buffer)) = part { replayBytes += buffer.readableBytes }
        if replayBytes > Self.replayLimit || (replay?.count ?? 0) >= Self.replayPartLimit {
            replay = nil
        } else {
            replay?.append(part)
        }
    }

    /// Nothing reached the client yet: answer 502 and close.
    private func fail(_ exchange: Exchange, reason: String) {
        shared.failures.failed(reason, target: shared.target)
        state = .answered
        closing = true
        replay = nil
        let body = UpstreamUnavailable.answerBody(reason)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "Connection", value: "close")
        respond(
            HTTPResponseHead(version: exchange.head.version, status: .badGateway, headers: headers), body, close: true)
        var finished = exchange
        finished.status = 502
        finish(finished, failed: true)
    }

    private func finish(_ exchange: Exchange, failed: Bool) {
        if exchange.held {
            holdTimer?.cancel()
            holdTimer = nil
        }
        if let ticket = exchange.ticket { shared.cache?.finished(ticket) }
        shared.drain.requestFinished()
        shared.traffic.finished(exchange.model, failed: failed, duration: ContinuousClock.now - exchange.started)
    }

    // MARK: Server side (UpstreamReceiver)

    var canAcceptResponse: Bool { context?.channel.isWritable ?? true }

    /// The upstream connection `connection` is the one this request uses; anything else is
    /// a stray (closed, never pooled).
    private func current(_ connection: UpstreamConnection) -> (Exchange, ChannelHandlerContext)? {
        guard case .forwarding(let exchange, let upstream) = state, upstream === connection, let context else {
            connection.close()
            return nil
        }
        return (exchange, context)
    }

    func upstreamWritable(_ connection: UpstreamConnection) {
        guard case .forwarding(_, let upstream) = state, upstream === connection else { return }
        resumeClientReads()
    }

    func responseHead(_ head: HTTPResponseHead, from connection: UpstreamConnection) {
        guard let (found, context) = current(connection) else { return }
        var exchange = found
        let informational = head.status.code < 200
        // 100 Continue and friends mean nothing to an HTTP/1.0 client.
        if informational && exchange.head.version.minor == 0 { return }
        // Once the client has seen anything of an answer, the request is not sent again.
        replay = nil
        var (downstream, closeAfter) = ProxyHeaders.downstreamResponse(
            head, requestVersion: exchange.head.version, keepAlive: exchange.head.isKeepAlive)
        if !informational {
            if (shared.drain.isDraining || exchange.lastOnConnection) && !closeAfter {
                // Draining: clients reconnect (to a pod still in the endpoints) instead of
                // holding a connection that is about to close.
                closeAfter = true
                downstream.headers.replaceOrAdd(name: "Connection", value: "close")
            }
            exchange.responseStarted = true
            exchange.status = head.status.code
            exchange.closeAfter = closeAfter
            replay = nil
            state = .forwarding(exchange, connection)
        }
        context.write(wrapOutboundOut(.head(downstream)), promise: nil)
        if informational { context.flush() }
    }

    func responseBody(_ body: ByteBuffer, from connection: UpstreamConnection) {
        guard let (_, context) = current(connection) else { return }
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
    }

    func responseFlush() {
        context?.flush()
    }

    func responseEnd(_ trailers: HTTPHeaders?, from connection: UpstreamConnection) {
        guard let (found, context) = current(connection) else { return }
        var exchange = found
        shared.failures.succeeded(target: shared.target)
        if exchange.requestEnded && !exchange.lastOnConnection {
            pool.release(connection)
        } else {
            // The server answered before the request was sent in full: neither connection
            // can carry another request.
            connection.close()
            exchange.closeAfter = true
        }
        state = exchange.requestEnded ? .idle : .answered
        if exchange.closeAfter { closing = true }
        finish(exchange, failed: exchange.status >= 500)
        let written = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
        if exchange.closeAfter {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        } else {
            resumeClientReads()
        }
    }

    func upstreamFailed(_ reason: String, from connection: UpstreamConnection) {
        guard let (found, context) = current(connection) else { return }
        var exchange = found
        connection.close()
        if !exchange.responseStarted, let sent = replay, connection.reused, !exchange.retried {
            // A kept-alive connection the server had closed: send the request again, on a
            // new connection.
            exchange.retried = true
            replay = []
            replayBytes = 0
            state = .connecting(exchange, pending: sent)
            connect(fresh: true)
            return
        }
        if !exchange.responseStarted {
            fail(exchange, reason: reason)
            return
        }
        // Part of the answer is out: the client can only learn of the failure by the close.
        shared.failures.failed(reason, target: shared.target)
        state = .answered
        closing = true
        finish(exchange, failed: true)
        context.close(promise: nil)
    }

    // MARK: Local answers

    private func answerProbe(_ probe: ProbeRequest, _ head: HTTPRequestHead) {
        guard let context else { return }
        probe.answer(shared, on: context.eventLoop) { [self] answer in
            respondText(head, answer.status, answer.text, extra: answer.extra)
        }
    }

    private func respondText(
        _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ text: String, extra: [(String, String)] = [],
        close: Bool = false
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        for (name, value) in extra { headers.add(name: name, value: value) }
        let close = close || !request.isKeepAlive
        if close {
            headers.add(name: "Connection", value: "close")
            closing = true
        }
        respond(
            HTTPResponseHead(version: request.version, status: status, headers: headers),
            request.method == .HEAD ? "" : text, close: close)
        if case .answered = state, !close { state = .idle }
    }

    /// A local JSON answer; the rest of the request is read and dropped.
    private func respondJSON(_ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        let close = !request.isKeepAlive
        if close {
            headers.add(name: "Connection", value: "close")
            closing = true
        }
        respond(
            HTTPResponseHead(version: request.version, status: status, headers: headers),
            request.method == .HEAD ? "" : body, close: close)
    }

    private func respond(_ head: HTTPResponseHead, _ body: String, close: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !body.isEmpty {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
