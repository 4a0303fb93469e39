import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// One stream of an h2c client connection (a gRPC call or any HTTP/2 request). A probe is
/// answered here; any other request becomes a stream of the h2c connection to the model
/// server (`H2UpstreamPool`) and its frames are relayed both ways as they come (headers
/// filtered, data, trailers). Each side stops reading while the other cannot take more,
/// so HTTP/2 flow control pushes back on whoever sends too fast.
final class H2StreamProxy: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum State {
        case idle
        /// Answered here (a probe, a refusal, a 502): the rest of the request is dropped.
        case answered
        case opening(pending: [HTTP2Frame.FramePayload])
        case forwarding(H2UpstreamStream)
        /// The server's answer ended; the rest of the request is dropped.
        case done
    }

    private let shared: ProxyContext
    private let pool: H2UpstreamPool
    private let budget: H2StreamBudget
    private let connection: H2ConnectionActivity
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    // The exchange, once a request is forwarded.
    private var started = ContinuousClock.now
    private var counting = false
    private var label: ModelName?
    /// The first bytes of a gRPC request while its model name is looked for.
    private var namePrefix: [UInt8]?
    private var requestEnded = false
    private var responseStarted = false
    private var status = 0
    private var grpcFailed = false
    /// Set once an answer went out before the request ended (see `stopRequest`).
    private var answerWritten: EventLoopFuture<Void>?
    private var discarded = 0
    /// With a cache, a gRPC call's stream opens only once its model is known (it may have
    /// to wait for a load); its first frames are read meanwhile.
    private var awaitingName = false
    /// An inference call: with a cache, its model is loaded if it is on standby.
    private var loadsModel = false
    /// Admitted or held by the cache: given back when the request finishes.
    private var ticket: ModelCache.Ticket?
    private var held = false
    private var holdSerial: UInt64 = 0
    private var holdTimer: Scheduled<Void>?

    init(shared: ProxyContext, pool: H2UpstreamPool, budget: H2StreamBudget, connection: H2ConnectionActivity) {
        self.shared = shared
        self.pool = pool
        self.budget = budget
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Client side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        switch payload {
        case .headers(let headers):
            if case .idle = state {
                request(headers, context: context)
            } else {
                if headers.endStream { requestDone() }
                forward(payload)  // trailers
            }
        case .data(let data):
            if namePrefix != nil, case .byteBuffer(let buffer) = data.data { lookForName(buffer) }
            if data.endStream { requestDone() }
            switch state {
            case .answered, .done: discard(data.data.readableBytes)
            default: forward(payload)
            }
        default:
            break
        }
    }

    private func forward(_ payload: HTTP2Frame.FramePayload) {
        switch state {
        case .opening(var pending):
            state = .idle  // keeps `pending` uniquely referenced while it grows
            pending.append(payload)
            state = .opening(pending: pending)
        case .forwarding(let upstream):
            upstream.send(payload)
        case .idle, .answered, .done:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .forwarding(let upstream) = state { upstream.flush() }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        switch state {
        case .opening where awaitingName:
            context.read()
        case .opening:
            pendingRead = true
        case .forwarding(let upstream) where !upstream.isWritable:
            pendingRead = true
        default:
            context.read()
        }
    }

    private func resumeReads() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(let upstream) = state { upstream.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client cancelled the stream or left: so is the server's stream.
        switch state {
        case .opening:
            finish(failed: false)
        case .forwarding(let upstream):
            upstream.close()
            finish(failed: false)
        case .idle, .answered, .done:
            break
        }
        state = .done
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Forwarding

    private func request(_ frame: HTTP2Frame.FramePayload.Headers, context: ChannelHandlerContext) {
        let headers = frame.headers
        requestEnded = frame.endStream
        if let problem = H2ProxyHeaders.requestProblem(headers) {
            state = .answered
            return respond(.badRequest, contentType: "text/plain; charset=utf-8", problem + "\n")
        }
        if let probe = ProbeRequest.classify({ headers[$0] }) {
            state = .answered
            probe.answer(shared, on: context.eventLoop) { [self] answer in
                respond(answer.status, contentType: "text/plain; charset=utf-8", answer.text, extra: answer.extra)
            }
            return
        }
        let path = headers.first(name: ":path") ?? ""
        if shared.cache != nil && InferenceRoute.changesRepository(path: path) {
            state = .answered
            return respond(.forbidden, contentType: "application/json", InferenceRoute.repositoryRefusal)
        }
        if headers.first(name: ":method") == "CONNECT" {
            state = .answered
            return respond(.methodNotAllowed, contentType: "text/plain; charset=utf-8", "CONNECT is not supported\n")
        }
        guard budget.acquire() else {
            // As many requests in flight over HTTP/2 as the port allows: never processed,
            // so the client may retry it.
            state = .answered
            context.writeAndFlush(wrapOutboundOut(.rstStream(.refusedStream)), promise: nil)
            return
        }
        shared.drain.requestStarted()
        counting = true
        started = .now
        let route = path.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(path[..<$0]) } ?? path
        if GRPCModelName.paths.contains(route) {
            namePrefix = []
        } else {
            label = shared.traffic.started(ModelTraffic.modelName(inPath: path))
            loadsModel = InferenceRoute.isInference(path: path)
        }
        let address = context.channel.parent?.remoteAddress?.ipAddress
        let upstreamHeaders = H2ProxyHeaders.upstreamRequest(headers, clientAddress: address)
        state = .opening(pending: [.headers(.init(headers: upstreamHeaders, endStream: frame.endStream))])
        if namePrefix != nil && shared.cache != nil && InferenceRoute.grpcPaths.contains(route) {
            loadsModel = true
            awaitingName = true
            if frame.endStream { countAs(nil) }
            return
        }
        if frame.endStream && namePrefix != nil { countAs(nil) }
        admitThenOpen()
    }

    /// Asks the cache (if any) whether the request's model is loaded: the stream opens now,
    /// after the model's load, or the request is answered 503.
    private func admitThenOpen() {
        guard let cache = shared.cache, loadsModel, let model = label, let context else { return openUpstream() }
        holdSerial += 1
        let (serial, loop) = (holdSerial, context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: loop)
        switch cache.admit(
            model, whenHeldEnds: { outcome in loop.execute { handler.value.holdEnded(serial, outcome) } })
        {
        case .admitted(let admitted):
            ticket = admitted
            openUpstream()
        case .held(let waiting):
            (ticket, held) = (waiting, true)
            holdTimer = loop.scheduleTask(in: .nanoseconds(shared.holdTimeout.nanoseconds)) {
                handler.value.holdEnded(serial, .refused(reason: "model \(model) is still being loaded", retry: true))
            }
        case .refused(let reason, let retry):
            refuse(reason, retry: retry)
        case .unmanaged:
            openUpstream()
        }
    }

    private func holdEnded(_ serial: UInt64, _ outcome: ModelCache.HeldOutcome) {
        guard case .opening = state, held, serial == holdSerial else { return }
        held = false
        holdTimer?.cancel()
        holdTimer = nil
        switch outcome {
        case .ready: openUpstream()
        case .refused(let reason, let retry): refuse(reason, retry: retry)
        }
    }

    /// A 503 from the cache (gRPC clients see UNAVAILABLE, which they may retry).
    private func refuse(_ reason: String, retry: Bool) {
        state = .answered
        status = 503
        finish(failed: true)
        let body = JSONText.object([("error", JSONText.quoted(reason))]) + "\n"
        respond(.serviceUnavailable, contentType: "application/json", body, extra: retry ? [("retry-after", "1")] : [])
    }

    private func openUpstream() {
        guard let context else { return }
        let upstream = H2UpstreamStream(client: self)
        let bound = NIOLoopBound(upstream, eventLoop: context.eventLoop)
        pool.openStream(
            { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(bound.value) }
            },
            { [self] result in
                guard case .opening(let pending) = state else {
                    // The client left while the stream opened.
                    if case .success = result { upstream.close() }
                    return
                }
                switch result {
                case .failure(let failure):
                    fail(failure.reason)
                case .success:
                    state = .forwarding(upstream)
                    for payload in pending { upstream.send(payload) }
                    upstream.flush()
                    resumeReads()
                }
            })
    }

    private func requestDone() {
        requestEnded = true
        if namePrefix != nil { countAs(nil) }
    }

    private func lookForName(_ buffer: ByteBuffer) {
        guard var prefix = namePrefix else { return }
        namePrefix = nil  // keeps `prefix` uniquely referenced while it grows
        prefix.append(contentsOf: buffer.readableBytesView.prefix(GRPCModelName.window - prefix.count))
        switch GRPCModelName.parse(prefix) {
        case .name(let name): countAs(try? ModelName(validating: name))
        case .unknown: countAs(nil)
        case .needMore: namePrefix = prefix
        }
    }

    private func countAs(_ model: ModelName?) {
        namePrefix = nil
        label = shared.traffic.started(model)
        if awaitingName {
            awaitingName = false
            admitThenOpen()
        }
    }

    /// Nothing of an answer reached the client yet: it gets a 502.
    private func fail(_ reason: String) {
        shared.h2Failures.failed(reason, target: shared.h2Target)
        state = .answered
        status = 502
        finish(failed: true)
        respond(.badGateway, contentType: "application/json", UpstreamUnavailable.answerBody(reason))
    }

    private func finish(failed: Bool) {
        guard counting else { return }
        counting = false
        namePrefix = nil
        awaitingName = false
        if held {
            held = false
            holdTimer?.cancel()
            holdTimer = nil
        }
        if let ticket { shared.cache?.finished(ticket) }
        ticket = nil
        budget.release()
        shared.drain.requestFinished()
        // Draining: this client is told to take its next requests elsewhere.
        if shared.drain.isDraining { connection.goAway() }
        shared.traffic.finished(label, failed: failed, duration: ContinuousClock.now - started)
    }

    // MARK: Server side

    var canAcceptResponse: Bool { context?.channel.isWritable ?? true }

    private func isCurrent(_ upstream: H2UpstreamStream) -> Bool {
        if case .forwarding(let current) = state, current === upstream { return true }
        return false
    }

    func upstreamWritable(from upstream: H2UpstreamStream) {
        if isCurrent(upstream) { resumeReads() }
    }

    func responseHeaders(_ frame: HTTP2Frame.FramePayload.Headers, from upstream: H2UpstreamStream) {
        guard isCurrent(upstream), let context else { return }
        let headers = frame.headers
        if !responseStarted, let code = headers.first(name: ":status").flatMap(Int.init) {
            if code >= 200 {
                responseStarted = true
                status = code
            }
        }
        if let grpcStatus = headers.first(name: "grpc-status").flatMap(Int.init) {
            grpcFailed = Self.serverSideGRPCStatuses.contains(grpcStatus)
        }
        let downstream = HTTP2Frame.FramePayload.Headers(
            headers: H2ProxyHeaders.downstreamResponse(headers), endStream: frame.endStream)
        if frame.endStream {
            responseDone(context, written: context.write(wrapOutboundOut(.headers(downstream))))
        } else {
            context.write(wrapOutboundOut(.headers(downstream)), promise: nil)
        }
    }

    func responseData(_ data: HTTP2Frame.FramePayload.Data, from upstream: H2UpstreamStream) {
        guard isCurrent(upstream), let context else { return }
        if data.endStream {
            responseDone(context, written: context.write(wrapOutboundOut(.data(data))))
        } else {
            context.write(wrapOutboundOut(.data(data)), promise: nil)
        }
    }

    func responseFlush() {
        context?.flush()
    }

    func upstreamFailed(_ reason: String, from upstream: H2UpstreamStream) {
        guard isCurrent(upstream), let context else { return }
        if !responseStarted { return fail(reason) }
        // Part of the answer is out: the client learns of the failure by the stream's reset
        // (INTERNAL_ERROR: not CANCEL, which would say the client gave up).
        shared.h2Failures.failed(reason, target: shared.h2Target)
        state = .done
        finish(failed: true)
        context.writeAndFlush(wrapOutboundOut(.rstStream(.internalError)), promise: nil)
    }

    /// gRPC codes that mean the server failed (those gRPC's HTTP mapping turns into 5xx:
    /// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), counted
    /// as errors as a 5xx answer is; the others are the caller's mistakes.
    private static let serverSideGRPCStatuses: Set<Int> = [2, 4, 12, 13, 14, 15]

    private func responseDone(_ context: ChannelHandlerContext, written: EventLoopFuture<Void>) {
        guard case .forwarding(let upstream) = state else { return }
        state = .done
        shared.h2Failures.succeeded(target: shared.h2Target)
        finish(failed: status >= 500 || grpcFailed)
        if !requestEnded {
            // The server answered before the request ended: the rest is not wanted.
            upstream.close()
            stopRequest(context, after: written)
        }
        context.flush()
    }

    // MARK: Local answers

    private func respond(
        _ status: HTTPResponseStatus, contentType: String, _ body: String, extra: [(String, String)] = []
    ) {
        guard let context else { return }
        var headers: HPACKHeaders = [
            ":status": String(status.code), "content-type": contentType, "content-length": String(body.utf8.count),
        ]
        for (name, value) in extra { headers.add(name: name.lowercased(), value: value) }
        var written = context.write(wrapOutboundOut(.headers(.init(headers: headers, endStream: body.isEmpty))))
        if !body.isEmpty {
            let buffer = context.channel.allocator.buffer(string: body)
            written = context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer), endStream: true))))
        }
        if !requestEnded { stopRequest(context, after: written) }
        context.flush()
    }

    /// After a complete answer to a request still being sent: the rest of its body is read
    /// and dropped, so the client can finish sending and read the answer (many clients
    /// report a reset mid-upload as a failure, answer or not); past `discardLimit` bytes
    /// the stream is reset with NO_ERROR (RFC 9113 §8.1), once the answer is out.
    private func stopRequest(_ context: ChannelHandlerContext, after written: EventLoopFuture<Void>) {
        answerWritten = written
        resumeReads()
    }

    private static let discardLimit = 1 << 20

    private func discard(_ bytes: Int) {
        discarded += bytes
        guard discarded > Self.discardLimit, let written = answerWritten, let context else { return }
        answerWritten = nil
        let channel = context.channel
        written.whenSuccess { channel.writeAndFlush(HTTP2Frame.FramePayload.rstStream(.noError), promise: nil) }
    }
}
