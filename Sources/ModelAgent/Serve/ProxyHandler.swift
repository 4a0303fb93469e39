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

/// One HTTP/1.x client connection of the proxied port, on the socket's bytes. Heads are
/// parsed and rewritten (`HTTP1Parser`, `ProxyHeaders`); bodies pass through as they came,
/// their framing checked on the way (`HTTP1BodyReader`), so nothing is decoded and encoded
/// again. Probes are answered here; every other request is streamed to the model server
/// over a pooled connection and its answer streamed back. Reads from the client stop while
/// the server side cannot take more, and the upstream connection stops reading while the
/// client cannot (see `UpstreamConnection`), so memory stays bounded by socket buffers,
/// whatever the body sizes. Requests a client pipelines wait, unparsed, until the answer
/// before them is out.
final class ProxyHandler: ChannelDuplexHandler, UpstreamReceiver {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A request forwarded so far is kept (up to this many body bytes and parts) until its
    /// answer starts, so that an idempotent one can be sent again when a reused connection
    /// turns out closed by the server before it sent anything back.
    private static let replayLimit = 64 << 10
    private static let replayPartLimit = 256

    /// What answering a request needs to know of it.
    private struct Request {
        var method: HTTPMethod
        var version: HTTPVersion
        var keepAlive: Bool

        init(_ head: HTTP1RequestHead) {
            (method, version, keepAlive) = (head.method, head.version, head.isKeepAlive)
        }
    }

    private struct Exchange {
        var request: Request
        var started: ContinuousClock.Instant
        var model: ModelName?
        var requestEnded = false
        var responseStarted = false
        var closeAfter = false
        /// `Upgrade`: the connection is not used for another request after this one.
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
        case probe(ProbeRequest, Request)
        /// Answered locally, or the answer is on its way; the rest of the request is read
        /// and dropped.
        case answered
        case connecting(Exchange, pending: [ByteBuffer])
        case forwarding(Exchange, UpstreamConnection)
    }

    private let shared: ProxyContext
    private let pool: UpstreamPool
    private let connections: ConnectionGuard
    private let slot: ConnectionGuard.Slot
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Bytes from the client not parsed yet: the rest of a read, or requests pipelined
    /// behind one still being answered.
    private var inbound: ByteBuffer?
    private var headScanned = 0
    /// The current request's body, until it has been read in full.
    private var requestBody: HTTP1BodyReader?
    /// Between a `channelRead` and its `channelReadComplete`: what is written upstream now
    /// is flushed when the read completes, head and body in one write.
    private var inClientRead = false
    private var clientAddress: String?
    /// Set once this connection will close after its current answer: nothing more it
    /// sends is read.
    private var closing = false
    /// What was sent upstream for the current request while it is replayable; nil once it
    /// is not (too big, not idempotent, or the answer started).
    private var replay: [ByteBuffer]?
    private var replayBytes = 0
    private var holdSerial: UInt64 = 0
    private var holdTimer: Scheduled<Void>?
    /// The current request asked for `100 Continue`: a client that gets an answer instead
    /// may never send its body, so such a connection is closed after a local answer.
    private var expectsContinue = false
    /// The connection is closed when no request head arrives by `deadline` (set while
    /// it waits for one); one timer, moved on when it fires early, not one per request.
    private var deadline: NIODeadline?
    private var deadlineTimer: Scheduled<Void>?
    private var armedDeadline: NIODeadline?
    /// The deadline was brought to the header timeout for the head now arriving.
    private var headDeadlineSet = false

    init(
        shared: ProxyContext, pool: UpstreamPool, connections: ConnectionGuard, slot: ConnectionGuard.Slot,
        headDeadline: NIODeadline
    ) {
        self.shared = shared
        self.slot = slot
        self.pool = pool
        self.connections = connections
        self.deadline = headDeadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
        armDeadline()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadlineTimer?.cancel()
        deadlineTimer = nil
        self.context = nil
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inClientRead = true
        if closing { return }
        var incoming = unwrapInboundIn(data)
        if inbound == nil {
            inbound = incoming
        } else {
            inbound?.writeBuffer(&incoming)
        }
        process()
    }

    /// Parses and forwards what `inbound` holds, as far as the current exchange allows.
    private func process() {
        parseInbound()
        // Outside a client read (a pipelined request taken up after an answer), nothing
        // else flushes what went upstream.
        if !inClientRead, case .forwarding(_, let upstream) = state { upstream.flush() }
    }

    private func parseInbound() {
        while !closing, var bytes = inbound {
            inbound = nil
            defer { if bytes.readableBytes > 0 && !closing { inbound = bytes } }
            do {
                if var body = requestBody {
                    requestBody = nil
                    let ended = try body.next(&bytes, raw: true) { requestBytes($0) }
                    if ended {
                        requestEnded()
                    } else {
                        requestBody = body
                        return
                    }
                } else if case .idle = state {
                    guard let head = try HTTP1Parser.requestHead(&bytes, scanned: &headScanned) else {
                        if bytes.readableBytes > 0 { headBegun() }
                        return
                    }
                    let framing: HTTP1BodyFraming
                    do {
                        try HTTP1Parser.checkHost(head)
                        framing = try HTTP1Parser.requestFraming(head)
                    } catch {
                        refuseMalformed(error, version: head.version, headOnly: head.method == .HEAD)
                        return
                    }
                    expectsContinue = head.fields.contains(.expect)
                    // Set before the head is acted on: an answer given at once (a probe, a
                    // refusal) must know the request is still being read.
                    requestBody = HTTP1BodyReader(framing)
                    started(head)
                    if framing == .none, requestBody != nil {
                        requestBody = nil
                        requestEnded()
                    }
                } else {
                    // A pipelined request: it waits until the answer before it is out.
                    return
                }
            } catch {
                refuseMalformed(error, version: .http1_1)
                return
            }
            if bytes.readableBytes == 0 { return }
        }
    }

    /// Part of a head arrived on a kept-alive connection: the rest must come within the
    /// header timeout, not the longer idle one.
    private func headBegun() {
        guard !headDeadlineSet else { return }
        headDeadlineSet = true
        let byHead = NIODeadline.now() + .nanoseconds(connections.limits.headerTimeout.nanoseconds)
        if let current = deadline, current <= byHead { return }
        deadline = byHead
        armDeadline()
    }

    private func started(_ head: HTTP1RequestHead) {
        deadline = nil
        headDeadlineSet = false
        // The proxied port has no request timeout (uploads, downloads and event streams
        // take as long as they take): a busy connection is only never evicted.
        slot.markBusy(true)
        if let probe = ProbeRequest.classify({ head.fields.values(named: $0) }) {
            state = .probe(probe, Request(head))
        } else if shared.cache != nil && InferenceRoute.changesRepository(path: head.uri) {
            state = .answered
            respond(to: Request(head), .forbidden, contentType: Self.json, InferenceRoute.repositoryRefusal)
        } else if head.method == .CONNECT {
            state = .answered
            respond(to: Request(head), .methodNotAllowed, "CONNECT is not supported\n", close: true)
        } else {
            begin(head)
        }
    }

    private func requestBytes(_ buffer: ByteBuffer) {
        switch state {
        case .connecting(let exchange, var pending):
            state = .idle  // keeps `pending` uniquely referenced while it grows
            pending.append(buffer)
            state = .connecting(exchange, pending: pending)
        case .forwarding(_, let upstream):
            record(buffer)
            upstream.send(buffer)
        case .idle, .probe, .answered:
            break
        }
    }

    private func requestEnded() {
        switch state {
        case .connecting(var exchange, let pending):
            state = .idle
            exchange.requestEnded = true
            state = .connecting(exchange, pending: pending)
        case .forwarding(var exchange, let upstream):
            exchange.requestEnded = true
            state = .forwarding(exchange, upstream)
            upstream.flush()
        case .probe(let probe, let request):
            state = .answered
            answerProbe(probe, request)
        case .answered:
            // The answer is out (else `respond` finds the request still running).
            state = .idle
            idle()
        case .idle:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inClientRead = false
        if case .forwarding(_, let upstream) = state { upstream.flush() }
        context.fireChannelReadComplete()
    }

    /// Reads from the client only while the request can go somewhere, and not while
    /// pipelined requests wait.
    func read(context: ChannelHandlerContext) {
        switch state {
        case _ where closing || (requestBody == nil && !isIdle && (inbound?.readableBytes ?? 0) > 0):
            pendingRead = true
        case .connecting:
            pendingRead = true
        case .forwarding(let exchange, let upstream):
            if !upstream.isWritable || (exchange.lastOnConnection && exchange.requestEnded) {
                pendingRead = true
            } else {
                context.read()
            }
        default:
            context.read()
        }
    }

    private var isIdle: Bool {
        if case .idle = state { return true }
        return false
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
        // The client went away: whatever the server is still doing for it is cancelled, and
        // nothing it sent before is taken up.
        closing = true
        inbound = nil
        requestBody = nil
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
        deadlineTimer?.cancel()
        deadlineTimer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The answer is out and the request read: the connection waits for the next head
    /// (a pipelined one may be here already).
    private func idle() {
        guard let context, !closing, context.channel.isActive else { return }
        slot.markBusy(false)
        let wait = connections.limits.idleTimeout ?? connections.limits.headerTimeout
        deadline = .now() + .nanoseconds(wait.nanoseconds)
        armDeadline()
        if (inbound?.readableBytes ?? 0) > 0 { process() }
        // `read` decides whether to read now (a request taken up may hold reads back).
        resumeClientReads()
    }

    private func armDeadline() {
        guard let deadline, let context else { return }
        if deadlineTimer != nil {
            // A timer due later than the new deadline is moved; an earlier one moves itself.
            guard let armed = armedDeadline, armed > deadline else { return }
            deadlineTimer?.cancel()
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        armedDeadline = deadline
        deadlineTimer = context.eventLoop.scheduleTask(deadline: deadline) { handler.value.deadlineFired() }
    }

    private func deadlineFired() {
        deadlineTimer = nil
        guard let deadline, let context else { return }
        if deadline <= .now() {
            context.close(promise: nil)
        } else {
            armDeadline()
        }
    }

    /// Bytes that are no request: 400 (or what the error says), and the connection closes.
    private func refuseMalformed(_ error: HTTP1ParseError, version: HTTPVersion, headOnly: Bool = false) {
        switch state {
        case .idle:
            state = .answered
            respondError(error, version: version, headOnly: headOnly)
        case .answered, .probe:
            // An answer is out or on its way: a second one would be unasked for.
            state = .answered
            context?.close(promise: nil)
        case .connecting(let exchange, _):
            state = .answered
            respondError(error, version: version, headOnly: exchange.request.method == .HEAD)
            finish(exchange, failed: true)
        case .forwarding(let exchange, let upstream):
            // Part of the request is upstream: neither connection can be trusted further.
            state = .answered
            upstream.close()
            if exchange.responseStarted {
                closing = true
                context?.close(promise: nil)
            } else {
                respondError(error, version: version, headOnly: exchange.request.method == .HEAD)
            }
            finish(exchange, failed: true)
        }
        closing = true
        inbound = nil
        requestBody = nil
    }

    private func respondError(_ error: HTTP1ParseError, version: HTTPVersion, headOnly: Bool) {
        respond(
            version: version, error.status, contentType: Self.plainText, error.reason + "\n", headOnly: headOnly,
            close: true)
    }

    // MARK: Forwarding

    private func begin(_ head: HTTP1RequestHead) {
        shared.drain.requestStarted()
        var exchange = Exchange(
            request: Request(head), started: .now,
            model: shared.traffic.started(ModelTraffic.modelName(inPath: head.uri)))
        exchange.lastOnConnection = head.fields.contains(.upgrade)
        replay = Self.isIdempotent(head) ? [] : nil
        replayBytes = 0
        var upstreamHead = ByteBuffer()
        upstreamHead.reserveCapacity(head.fields.bytes.readableBytes + 128)
        ProxyHeaders.upstreamRequest(
            head, clientAddress: clientAddress, serverAuthority: pool.authority, into: &upstreamHead)
        guard let cache = shared.cache, let model = exchange.model, InferenceRoute.isInference(path: head.uri),
            let context
        else {
            state = .connecting(exchange, pending: [upstreamHead])
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
        state = .connecting(exchange, pending: [upstreamHead])
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
        let keepAlive = exchange.request.keepAlive && !exchange.lastOnConnection
        state = .answered
        var finished = exchange
        finished.status = 503
        finish(finished, failed: true)
        respond(
            version: exchange.request.version, .serviceUnavailable, contentType: Self.json,
            JSONText.object([("error", JSONText.quoted(reason))]) + "\n", extra: retry ? [("Retry-After", "1")] : [],
            headOnly: exchange.request.method == .HEAD, close: !keepAlive)
    }

    /// Requests that may be sent twice (RFC 9110 §9.2.2), or that say so with an
    /// idempotency key: a POST that reached a server which then closed the connection may
    /// have been processed, and inference is not free.
    private static func isIdempotent(_ head: HTTP1RequestHead) -> Bool {
        switch head.method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        default:
            // Only a key the server is given: it is what lets the server drop a repeat.
            return head.fields.forwardsValue(named: "idempotency-key")
                || head.fields.forwardsValue(named: "x-idempotency-key")
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
                upstream.attach(
                    self, requestMethod: exchange.request.method, rawChunks: exchange.request.version.minor == 1)
                for part in pending { record(part) }
                state = .forwarding(exchange, upstream)
                for part in pending { upstream.send(part) }
                // Inside a client read (a kept-alive connection is handed over at once), the
                // head goes out with the body, in one write, when the request ends or the
                // read completes; a connection that took time to open is written to now.
                if !inClientRead || exchange.requestEnded { upstream.flush() }
                resumeClientReads()
            }
        }
    }

    private func record(_ part: ByteBuffer) {
        guard replay != nil else { return }
        replayBytes += part.readableBytes
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
        replay = nil
        var finished = exchange
        finished.status = 502
        finish(finished, failed: true)
        respond(
            version: exchange.request.version, .badGateway, contentType: Self.json,
            UpstreamUnavailable.answerBody(reason), headOnly: exchange.request.method == .HEAD, close: true)
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

    func responseHead(_ head: HTTP1ResponseHead, framing: HTTP1BodyFraming, from connection: UpstreamConnection) {
        guard let (found, context) = current(connection) else { return }
        var exchange = found
        let informational = head.code < 200
        // 100 Continue and friends mean nothing to an HTTP/1.0 client.
        if informational && exchange.request.version.minor == 0 { return }
        // Once the client has seen anything of an answer, the request is not sent again.
        replay = nil
        // Draining: clients reconnect (to a pod still in the endpoints) instead of holding
        // a connection that is about to close.
        let keepAlive =
            exchange.request.keepAlive && (informational || !(exchange.lastOnConnection || shared.drain.isDraining))
        var bytes = context.channel.allocator.buffer(capacity: head.fields.bytes.readableBytes + 64)
        let closeAfter = ProxyHeaders.downstreamResponse(
            head, framing: framing, requestVersion: exchange.request.version, keepAlive: keepAlive, into: &bytes)
        if !informational {
            exchange.responseStarted = true
            exchange.status = UInt(head.code)
            exchange.closeAfter = closeAfter
            state = .forwarding(exchange, connection)
        }
        context.write(wrapOutboundOut(bytes), promise: nil)
        if informational { context.flush() }
    }

    func responseBody(_ body: ByteBuffer, from connection: UpstreamConnection) {
        guard let (_, context) = current(connection) else { return }
        context.write(wrapOutboundOut(body), promise: nil)
    }

    func responseFlush() {
        context?.flush()
    }

    func responseEnd(from connection: UpstreamConnection) {
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
        state = .answered
        finish(exchange, failed: exchange.status >= 500)
        context.flush()
        if exchange.closeAfter {
            closing = true
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in channel.close(promise: nil) }
        } else {
            state = .idle
            idle()
        }
    }

    func upstreamFailed(_ reason: String, from connection: UpstreamConnection) {
        guard let (found, context) = current(connection) else { return }
        var exchange = found
        connection.close()
        if !exchange.responseStarted, let sent = replay, connection.reused, !connection.heardBack, !exchange.retried {
            // A kept-alive connection the server had closed: send the request again, on a
            // new connection. Not when the server began an answer, even a malformed one:
            // it may have acted on the request.
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

    private func answerProbe(_ probe: ProbeRequest, _ request: Request) {
        guard let context else { return }
        probe.answer(shared, on: context.eventLoop) { [self] answer in
            respond(to: request, answer.status, answer.text, extra: answer.extra)
        }
    }

    private static let plainText = "text/plain; charset=utf-8"
    private static let json = "application/json"

    /// A local answer to `request`, kept alive as it asks unless `close`; a HEAD gets the
    /// head only. The rest of the request is read and dropped.
    private func respond(
        to request: Request, _ status: HTTPResponseStatus, contentType: String = plainText, _ body: String,
        extra: [(String, String)] = [], close: Bool = false
    ) {
        respond(
            version: request.version, status, contentType: contentType, body, extra: extra,
            headOnly: request.method == .HEAD, close: close || !request.keepAlive)
    }

    /// Writes a whole local answer (state is `.answered`); `headOnly`: to a HEAD, the length
    /// still the body's. When the request has been read, the connection is ready for the
    /// next; else that happens when its body ends.
    private func respond(
        version: HTTPVersion, _ status: HTTPResponseStatus, contentType: String, _ body: String,
        extra: [(String, String)] = [], headOnly: Bool = false, close requested: Bool
    ) {
        guard let context else { return }
        // A body that may never come (100 Continue was asked for and not given): what came
        // next could not be told from it.
        // Draining: clients reconnect, as for proxied answers; but a body still arriving is
        // read first (closing on unread bytes resets the connection, and the answer with it).
        let close =
            requested || (requestBody != nil && expectsContinue) || (requestBody == nil && shared.drain.isDraining)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        for (name, value) in extra { headers.add(name: name, value: value) }
        if close {
            headers.add(name: "Connection", value: "close")
        } else if version.minor == 0 {
            // An HTTP/1.0 client that asked to keep the connection is told it is kept.
            headers.add(name: "Connection", value: "keep-alive")
        }
        var bytes = context.channel.allocator.buffer(capacity: 256 + body.utf8.count)
        HTTP1Writer.write(HTTPResponseHead(version: version, status: status, headers: headers), into: &bytes)
        if !headOnly { bytes.writeString(body) }
        let written = context.writeAndFlush(wrapOutboundOut(bytes))
        if close {
            closing = true
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        } else if requestBody == nil, case .answered = state {
            state = .idle
            idle()
        } else {
            // The rest of the request is read (and dropped) before the next one.
            resumeClientReads()
        }
    }
}
