import CCurl

#if canImport(Glibc)
    import Glibc
#endif

private let curlGlobalInit: Void = {
    let rc = curl_global_init(Int(CURL_GLOBAL_ALL))
    precondition(rc == CURLE_OK, "curl_global_init failed")
}()

/// One libcurl easy handle, used by one thread at a time. Reusing the handle across
/// requests keeps its connections alive, so a lane pays the TCP/TLS setup once.
final class CurlEasy {
    private let handle: UnsafeMutableRawPointer
    private let settings: TransportSettings
    private let errorBuffer: UnsafeMutablePointer<CChar>
    /// The first option libcurl refused while setting up the current request.
    private var refusedOption: (option: CURLoption, code: CURLcode)?

    /// A request libcurl refused to set up can leave the handle refusing later ones
    /// (seen: CURLOPT_BUFFERSIZE after a malformed URL); such a handle is replaced.
    var needsReplacement: Bool { refusedOption != nil }

    init(settings: TransportSettings) {
        _ = curlGlobalInit
        handle = curl_easy_init()!
        self.settings = settings
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// Performs the exchange. Failures after the response began still report what
    /// arrived (status, headers, bytes written), which a resume needs.
    func perform(_ request: HTTPRequest, sink: ResponseSink, cancel: CancelFlag) -> TransferAttempt {
        curl_easy_reset(handle)
        errorBuffer[0] = 0
        refusedOption = nil
        // Load calls may rightly stay silent until done; they rely on their own timeout.
        let stall = request.timeout == nil ? settings.stallTimeout : nil
        let context = TransferContext(sink: sink, range: request.range, cancel: cancel, stallTimeout: stall)
        let contextPointer = Unmanaged.passUnretained(context).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        for header in request.headers + request.credentials {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        // libcurl would otherwise send "Expect: 100-continue" for bodies and wait for it.
        headerList = curl_slist_append(headerList, "Expect:")

        set(CURLOPT_URL, request.url)
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        set(CURLOPT_TCP_KEEPALIVE, 1)
        set(CURLOPT_CONNECTTIMEOUT_MS, settings.connectTimeout.milliseconds)
        if let timeout = request.timeout { set(CURLOPT_TIMEOUT_MS, timeout.milliseconds) }
        // The large buffer only for bodies written to files: libcurl allocates it for
        // every transfer, and API answers (loads, listings, tokens) are small.
        if case .file = sink { set(CURLOPT_BUFFERSIZE, settings.receiveBufferSize) }
        set(CURLOPT_USERAGENT, settings.userAgent)
        set(CURLOPT_FOLLOWLOCATION, request.followRedirects ? 1 : 0)
        set(CURLOPT_MAXREDIRS, 10)
        let tls = request.tls ?? TLSOptions(verify: settings.verifyTLS, caBundle: settings.caBundle)
        if let ca = tls.caBundle { set(CURLOPT_CAINFO, ca) }
        if !tls.verify {
            set(CURLOPT_SSL_VERIFYPEER, 0)
            set(CURLOPT_SSL_VERIFYHOST, 0)
        }
        check(CURLOPT_ERRORBUFFER, ccurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer))
        check(CURLOPT_HTTPHEADER, ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))

        switch request.method {
        case "GET": break
        case "HEAD": set(CURLOPT_NOBODY, 1)
        case "POST":
            set(CURLOPT_POST, 1)
        default:
            set(CURLOPT_CUSTOMREQUEST, request.method)
        }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
            setOffset(CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count))
            // COPYPOSTFIELDS copies the bytes; an empty body still needs a valid pointer.
            let body = request.body.isEmpty ? [UInt8(0)] : request.body
            body.withUnsafeBufferPointer {
                check(
                    CURLOPT_COPYPOSTFIELDS,
                    ccurl_setopt_pointer(
                        handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)))
            }
        }
        if let range = request.range { set(CURLOPT_RANGE, range.description) }

        check(CURLOPT_WRITEFUNCTION, ccurl_setopt_write_function(handle, onBody))
        check(CURLOPT_WRITEDATA, ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, contextPointer))
        check(CURLOPT_HEADERFUNCTION, ccurl_setopt_header_function(handle, onHeader))
        check(CURLOPT_HEADERDATA, ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, contextPointer))
        check(CURLOPT_XFERINFOFUNCTION, ccurl_setopt_xferinfo_function(handle, onProgress))
        check(CURLOPT_XFERINFODATA, ccurl_setopt_pointer(handle, CURLOPT_XFERINFODATA, contextPointer))
        set(CURLOPT_NOPROGRESS, 0)

        // A request libcurl could not be told about (an option this libcurl lacks, a bad
        // value) is never sent half-configured.
        if let (option, code) = refusedOption {
            let message = "libcurl refused option \(option.rawValue): \(String(cString: curl_easy_strerror(code)))"
            return TransferAttempt(
                response: HTTPResponse(status: 0, headers: [:], body: [], bytesWritten: 0),
                error: .curl(code: Int(code.rawValue), message: message))
        }

        let rc = withExtendedLifetime(context) { curl_easy_perform(handle) }
        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var error = context.failure
        if error == nil && rc != CURLE_OK {
            if rc == CURLE_ABORTED_BY_CALLBACK && cancel.isSet {
                error = .curl(code: Int(rc.rawValue), message: "cancelled")
            } else {
                let detail = String(cString: errorBuffer)
                let message = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
                error = .curl(code: Int(rc.rawValue), message: message)
            }
        }
        if error == nil && request.method != "HEAD" && (200..<300).contains(status) && !context.bodyChecked {
            // An empty body never reaches the write callback; check the range here.
            error = context.checkBody(status: status)
        }
        let response = HTTPResponse(
            status: status, headers: context.headers,
            body: context.isErrorBody ? context.errorBody : context.memory, bytesWritten: context.written)
        return TransferAttempt(response: response, error: error)
    }

    private func check(_ option: CURLoption, _ code: CURLcode) {
        if code != CURLE_OK && refusedOption == nil { refusedOption = (option, code) }
    }

    private func set(_ option: CURLoption, _ value: Int) {
        check(option, ccurl_setopt_long(handle, option, value))
    }

    private func setOffset(_ option: CURLoption, _ value: curl_off_t) {
        check(option, ccurl_setopt_off_t(handle, option, value))
    }

    private func set(_ option: CURLoption, _ value: String) {
        check(option, ccurl_setopt_string(handle, option, value))
    }
}

/// Per-request state reached from libcurl's C callbacks through their userdata pointer.
private final class TransferContext {
    let sink: ResponseSink
    let range: ByteRange?
    let cancel: CancelFlag
    var status = 0
    var headers: [String: String] = [:]
    var memory: [UInt8] = []
    var errorBody: [UInt8] = []
    var isErrorBody = false
    var bodyChecked = false
    var written: Int64 = 0
    var failure: TransferError?
    let stallTimeout: Duration?
    var lastProgressBytes: Int64 = -1
    var lastProgressAt = ContinuousClock.now

    init(sink: ResponseSink, range: ByteRange?, cancel: CancelFlag, stallTimeout: Duration?) {
        self.sink = sink
        self.range = range
        self.cancel = cancel
        self.stallTimeout = stallTimeout
    }

    /// Called by libcurl at least once a second: aborts on cancellation, or when no
    /// byte has arrived for the stall timeout (libcurl's own low-speed check averages
    /// over seconds and reacts late after a burst).
    func shouldAbort(received: Int64) -> Bool {
        if cancel.isSet { return true }
        guard let stallTimeout else { return false }
        let now = ContinuousClock.now
        if received != lastProgressBytes {
            lastProgressBytes = received
            lastProgressAt = now
            return false
        }
        if now - lastProgressAt >= stallTimeout {
            failure = .stalled(stallTimeout)
            return true
        }
        return false
    }

    /// Decides, at the first body byte, whether the body is what was asked for.
    func checkBody(status: Int) -> TransferError? {
        bodyChecked = true
        guard (200..<300).contains(status) else {
            isErrorBody = true
            return nil
        }
        guard let range else { return nil }
        let contentRange = headers["content-range"]
        // 206 is the rule; some servers (rclone's S3) answer 200 with a correct Content-Range.
        if let contentRange, let start = Self.start(ofContentRange: contentRange), start == range.start {
            return nil
        }
        if status == 200 && contentRange == nil && range.start == 0 {
            // The whole body, which is fine when it is no more than what was asked for.
            if range.end == nil { return nil }
            if let length = headers["content-length"].flatMap({ Int64($0) }), let wanted = range.length,
                length <= wanted
            {
                return nil
            }
        }
        return .rangeNotHonoured(requested: range, contentRange: contentRange)
    }

    static func start(ofContentRange value: String) -> Int64? {
        // "bytes 100-199/1000"
        guard let space = value.firstIndex(of: " "), let dash = value.firstIndex(of: "-") else { return nil }
        return Int64(value[value.index(after: space)..<dash])
    }
}

private let onHeader: ccurl_data_callback = { pointer, size, count, userdata in
    let length = size * count
    guard let pointer, let userdata else { return length }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    let line = String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    if line.hasPrefix("HTTP/") {
        // A new response starts (redirect hop, 100 Continue): forget the previous one.
        let parts = line.split(separator: " ", maxSplits: 2)
        context.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        context.headers = [:]
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].lowercased()
        let value = String(line[line.index(after: colon)...]).trimmingWhitespace()
        context.headers[name] = value
    }
    return length
}

private let onBody: ccurl_data_callback = { pointer, size, count, userdata in
    let length = size * count
    guard let pointer, let userdata else { return CCURL_WRITE_ABORT }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    if !context.bodyChecked, let failure = context.checkBody(status: context.status) {
        context.failure = failure
        return CCURL_WRITE_ABORT
    }
    let bytes = UnsafeRawBufferPointer(start: pointer, count: length)
    if context.isErrorBody {
        if context.errorBody.count < 16 << 10 { context.errorBody.append(contentsOf: bytes.prefix(16 << 10)) }
        return length
    }
    switch context.sink {
    case .memory(let limit):
        if context.memory.count + length > limit {
            context.failure = .bodyTooLarge(limit: Int64(limit))
            return CCURL_WRITE_ABORT
        }
        context.memory.append(contentsOf: bytes)
        context.written += Int64(length)
    case .file(let file, let offset, let limit, let crc):
        let position = offset + context.written
        let (end, overflow) = position.addingReportingOverflow(Int64(length))
        // Past the limit, what fits is kept (a part answered past its end is then whole)
        // and the rest refused.
        let fits = !overflow && end <= limit
        let kept = fits ? length : min(length, Int(max(0, limit - position)))
        let written = UnsafeRawBufferPointer(rebasing: bytes[..<kept])
        do {
            try file.write(written, at: position)
            crc?.absorb(written, at: position)
        } catch let error as SystemError {
            context.failure = .sink(error)
            return CCURL_WRITE_ABORT
        } catch {
            return CCURL_WRITE_ABORT
        }
        context.written += Int64(kept)
        guard fits else {
            context.failure = .bodyTooLarge(limit: limit)
            return CCURL_WRITE_ABORT
        }
    }
    return length
}

private let onProgress: ccurl_xferinfo_callback = { userdata, _, received, _, sent in
    guard let userdata else { return 0 }
    let context = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
    return context.shouldAbort(received: Int64(received) + Int64(sent)) ? 1 : 0
}
