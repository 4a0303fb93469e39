import Logging
import Synchronization

/// Downloads files to disk through a `TransferPool`. Large files are fetched as ranged
/// parts in parallel, written in place with pwrite; every part and every stream retries
/// with backoff and resumes where it broke off; every file is checked against its size
/// and, when the store publishes one, its checksum.
struct TransferEngine: Sendable {
    let pool: TransferPool
    var retry: RetryPolicy
    /// Files fetched at once within one model.
    var parallelFiles: Int
    var partSize: Int64
    /// Files at least this big (when their size is known) are fetched in parts.
    var multipartThreshold: Int64
    /// When false, only sizes are checked (published checksums are ignored).
    var verifyChecksums: Bool
    /// Ranged parts of one file in flight at once. Fewer than the lanes: a single large
    /// file then leaves lanes to other files, and the server is not flooded with ranges.
    var partsPerFile: Int

    init(
        pool: TransferPool, retry: RetryPolicy, parallelFiles: Int, partSize: Int64 = 16 << 20,
        multipartThreshold: Int64 = 64 << 20, verifyChecksums: Bool = true, partsPerFile: Int = 6
    ) {
        self.verifyChecksums = verifyChecksums
        self.partsPerFile = max(1, partsPerFile)
        self.pool = pool
        self.retry = retry
        self.parallelFiles = max(1, parallelFiles)
        self.partSize = max(64 << 10, partSize)
        self.multipartThreshold = max(self.partSize, multipartThreshold)
    }

    /// Fetches every file to its path, several at a time. The first failure cancels the
    /// rest and is thrown. Returns the total byte count.
    func download(_ files: [(file: RemoteFile, path: String)], logger: Logger) async throws -> Int64 {
        try await withThrowingTaskGroup(of: Int64.self) { group in
            var total: Int64 = 0
            var next = 0
            func startNext() {
                guard next < files.count else { return }
                let (file, path) = files[next]
                next += 1
                group.addTask { try await self.download(file, to: path, logger: logger) }
            }
            for _ in 0..<min(parallelFiles, files.count) { startNext() }
            while let bytes = try await group.next() {
                total += bytes
                startNext()
            }
            return total
        }
    }

    func download(_ file: RemoteFile, to path: String, logger: Logger) async throws -> Int64 {
        try await downloadReportingHeaders(file, to: path, logger: logger).bytes
    }

    /// Like `download`, also returning the last response's headers (Content-Type).
    func downloadReportingHeaders(_ file: RemoteFile, to path: String, logger: Logger) async throws -> (
        bytes: Int64, headers: [String: String]
    ) {
        var round = 1
        let attempts = AttemptCounter()
        while true {
            do {
                return try await downloadOnce(file, to: path, logger: logger, attempts: attempts)
            } catch let mismatch as ChecksumMismatch where round < retry.maxAttempts {
                logger.warning("\(mismatch); downloading it again", metadata: ["attempt": .stringConvertible(round)])
                round += 1
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as DownloadFailed {
                throw error
            } catch {
                throw DownloadFailed(file: file.displayName, attempts: attempts.value, underlying: error)
            }
        }
    }

    private func downloadOnce(_ file: RemoteFile, to path: String, logger: Logger, attempts: AttemptCounter)
        async throws -> (
            bytes: Int64, headers: [String: String]
        )
    {
        let out = try OpenFile(creating: path)
        let expected = verifyChecksums ? file.checksum : nil
        var checksum = expected.map { OrderedChecksum(expected: $0, file: out) }
        var result: (bytes: Int64, headers: [String: String])
        if let size = file.expectedSize {
            // Reserving blocks up front pays off for large files (no ENOSPC halfway, fewer
            // extents); for small ones it is only extra work per file.
            if size >= 4 << 20 { try out.preallocate(size) }
            if size >= multipartThreshold {
                do {
                    let headers = try await parts(
                        of: file, into: out, size: size, from: 0, etag: file.etag, checksum: checksum, logger: logger,
                        attempts: attempts)
                    result = (size, headers)
                } catch RangeSupport.unsupported {
                    logger.info("Server ignores ranges for \(file.displayName); fetching it in one stream")
                    try out.truncate(0)
                    checksum = expected.map { OrderedChecksum(expected: $0, file: out) }
                    result = try await stream(file, into: out, logger: logger, attempts: attempts)
                    try await checksum?.completed(0..<result.bytes)
                }
            } else {
                result = try await stream(file, into: out, logger: logger, attempts: attempts)
                try await checksum?.completed(0..<result.bytes)
            }
            if result.bytes != size {
                throw IntegrityError(file: file.displayName, detail: "received \(result.bytes) bytes, expected \(size)")
            }
        } else {
            switch try await probe(file, into: out, logger: logger, attempts: attempts) {
            case .whole(let bytes, let headers):
                result = (bytes, headers)
                try await checksum?.completed(0..<bytes)
            case .partial(let total, let received, let headers):
                guard total <= file.maximumSize else { throw TransferError.bodyTooLarge(limit: file.maximumSize) }
                try out.preallocate(total)
                try await checksum?.completed(0..<received)
                _ = try await parts(
                    of: file, into: out, size: total, from: received, etag: headers["etag"], checksum: checksum,
                    logger: logger, attempts: attempts)
                result = (total, headers)
            case .rangesUnsupported:
                try out.truncate(0)
                result = try await stream(file, into: out, logger: logger, attempts: attempts)
                try await checksum?.completed(0..<result.bytes)
            }
        }
        if let checksum, try await !checksum.matches(size: result.bytes) {
            throw ChecksumMismatch(file: file.displayName, expected: checksum.expected)
        }
        return result
    }

    // MARK: - One stream

    /// Fetches the whole file in one GET. A broken transfer resumes where it stopped when
    /// the server supports ranges and validators; otherwise it starts over.
    private func stream(_ file: RemoteFile, into out: OpenFile, logger: Logger, attempts: AttemptCounter)
        async throws -> (
            bytes: Int64, headers: [String: String]
        )
    {
        var written: Int64 = 0
        var validator: String?
        var resumable = false
        var headers: [String: String] = [:]
        let bytes = try await retry.run { _ -> Int64 in
            if written > 0 && !resumable {
                written = 0
                try out.truncate(0)
            }
            let range = written > 0 ? ByteRange(start: written) : nil
            var request = try await file.makeRequest(range)
            if range != nil, let validator { request.headers.append((name: "If-Range", value: validator)) }
            let attempt = try await attemptFollowingRedirects(
                request, sink: .file(out, offset: written, limit: file.maximumSize))
            let response = attempt.response
            if range == nil && response.isSuccess {
                validator = response.headers["etag"] ?? response.headers["last-modified"]
                resumable = response.headers["accept-ranges"]?.lowercased() == "bytes" && validator != nil
            }
            // Count what was delivered, not the file size: preallocation already set that.
            if response.isSuccess { written += response.bytesWritten }
            if let error = attempt.error {
                if case .rangeNotHonoured = error {
                    // The file changed or the server stopped honouring ranges: start over.
                    resumable = false
                    throw IntegrityError(file: file.displayName, detail: "resume refused by the server; restarting")
                }
                throw error
            }
            guard response.isSuccess else {
                throw HTTPStatusError(status: response.status, body: response.body, context: "GET \(file.displayName)")
            }
            headers = response.headers
            if let total = Self.totalLength(response) ?? file.expectedSize, written != total {
                let got = written
                written = 0
                resumable = false
                throw IntegrityError(file: file.displayName, detail: "received \(got) bytes, expected \(total)")
            }
            return written
        } onRetry: { number, error, delay in
            attempts.reached(number + 1)
            logRetry(file, error, number, delay, logger)
        }
        return (bytes, headers)
    }

    // MARK: - Ranged parts

    private enum RangeSupport: Error {
        case unsupported
    }

    /// Fetches `[from, size)` as parts, `partsPerFile` at a time in order, so they
    /// complete roughly in order and the checksum keeps up.
    private func parts(
        of file: RemoteFile, into out: OpenFile, size: Int64, from start: Int64, etag: String?,
        checksum: OrderedChecksum?, logger: Logger, attempts: AttemptCounter
    ) async throws -> [String: String] {
        let ranges = stride(from: start, to: size, by: Int(partSize)).map {
            ByteRange(start: $0, end: min($0 + partSize, size) - 1)
        }
        return try await withThrowingTaskGroup(of: (ByteRange, [String: String]).self) { group in
            var next = 0
            func startNext() {
                guard next < ranges.count else { return }
                let range = ranges[next]
                next += 1
                group.addTask {
                    (
                        range,
                        try await self.part(range, of: file, into: out, etag: etag, logger: logger, attempts: attempts)
                    )
                }
            }
            for _ in 0..<min(partsPerFile, ranges.count) { startNext() }
            var headers: [String: String] = [:]
            while let (range, partHeaders) = try await group.next() {
                headers = partHeaders
                startNext()
                try await checksum?.completed(range.start..<(range.end! + 1))
            }
            return headers
        }
    }

    private func part(
        _ part: ByteRange, of file: RemoteFile, into out: OpenFile, etag: String?, logger: Logger,
        attempts: AttemptCounter
    ) async throws -> [String: String] {
        let length = part.length!
        var received: Int64 = 0
        return try await retry.run { _ in
            let range = ByteRange(start: part.start + received, end: part.end)
            var request = try await file.makeRequest(range)
            // A part of a newer version of the object must never be stitched to older parts.
            if let etag, !etag.hasPrefix("W/") { request.headers.append((name: "If-Match", value: etag)) }
            let attempt = try await attemptFollowingRedirects(
                request, sink: .file(out, offset: range.start, limit: file.maximumSize))
            let response = attempt.response
            if response.isSuccess { received += response.bytesWritten }
            if let error = attempt.error {
                // Whichever part hears it first: a whole body for a part that has nothing yet
                // means the server ignores ranges.
                if case .rangeNotHonoured = error, received == 0 { throw RangeSupport.unsupported }
                throw error
            }
            guard response.isSuccess else {
                if response.status == 412 { throw ObjectChanged(file: file.displayName) }
                throw HTTPStatusError(
                    status: response.status, body: response.body, context: "GET \(file.displayName) bytes \(range)")
            }
            guard received >= length else {
                throw IntegrityError(
                    file: file.displayName, detail: "part \(part) ended after \(received) of \(length) bytes")
            }
            return response.headers
        } onRetry: { number, error, delay in
            attempts.reached(number + 1)
            logRetry(file, error, number, delay, logger)
        }
    }

    // MARK: - Probing an unknown size

    private enum Probe {
        case whole(bytes: Int64, headers: [String: String])
        case partial(total: Int64, received: Int64, headers: [String: String])
        case rangesUnsupported
    }

    /// Asks for the first part: the answer holds the file (small files) or tells its
    /// size and that ranges work (large files). A broken answer is resumed.
    private func probe(_ file: RemoteFile, into out: OpenFile, logger: Logger, attempts: AttemptCounter) async throws
        -> Probe
    {
        var received: Int64 = 0
        var etag: String?
        return try await retry.run { _ in
            var request = try await file.makeRequest(ByteRange(start: received, end: partSize - 1))
            if received > 0, let etag, !etag.hasPrefix("W/") { request.headers.append((name: "If-Match", value: etag)) }
            let attempt = try await attemptFollowingRedirects(
                request, sink: .file(out, offset: received, limit: file.maximumSize))
            let response = attempt.response
            if case .rangeNotHonoured? = attempt.error {
                if received == 0 { return .rangesUnsupported }
                received = 0
                throw IntegrityError(file: file.displayName, detail: "resume refused by the server; restarting")
            }
            if response.status == 416 && received == 0 { return .rangesUnsupported }
            if response.status == 412 {
                received = 0
                throw ObjectChanged(file: file.displayName)
            }
            if response.isSuccess {
                received += response.bytesWritten
                if received == response.bytesWritten { etag = response.headers["etag"] }
            }
            if let error = attempt.error { throw error }
            guard response.isSuccess else {
                throw HTTPStatusError(status: response.status, body: response.body, context: "GET \(file.displayName)")
            }
            let total = Self.totalLength(response) ?? received
            if response.headers["content-range"] == nil || total <= received {
                return .whole(bytes: received, headers: response.headers)
            }
            return .partial(total: total, received: received, headers: response.headers)
        } onRetry: { number, error, delay in
            attempts.reached(number + 1)
            logRetry(file, error, number, delay, logger)
        }
    }

    // MARK: - Redirects

    /// Follows up to 10 redirects itself so that credential headers are only ever sent
    /// to the host they were meant for.
    func attemptFollowingRedirects(_ first: HTTPRequest, sink: ResponseSink) async throws -> TransferAttempt {
        var request = first
        request.followRedirects = false
        let origin = URLParts(first.url)
        for _ in 0...10 {
            let attempt = try await pool.attempt(request, sink: sink)
            let response = attempt.response
            guard attempt.error == nil, [301, 302, 303, 307, 308].contains(response.status),
                let location = response.headers["location"], let current = URLParts(request.url)
            else { return attempt }
            let next = current.resolve(location)
            guard let target = URLParts(next), target.scheme == "http" || target.scheme == "https" else {
                return attempt
            }
            request.url = next
            // A redirect target is often a pre-signed URL: its query is a secret too, the
            // current one of this source (a new redirect replaces it, so they do not pile up).
            SecretRedactor.shared.register(SecretRedactor.secrets(inURI: next), key: "redirect:" + first.url)
            // Credentials belong to one origin: scheme, host and port (a header scoped to
            // `host:port-headers` must not follow a redirect to another port).
            if target.origin != origin?.origin { request.credentials = [] }
            if response.status == 303 { request.method = "GET" }
        }
        throw TransferError.curl(code: 47, message: "too many redirects from \(Redaction.uri(first.url))")
    }

    /// The full object length a response announces: Content-Range's total for a part,
    /// Content-Length for a whole body.
    static func totalLength(_ response: HTTPResponse) -> Int64? {
        if let contentRange = response.headers["content-range"], let slash = contentRange.lastIndex(of: "/") {
            return Int64(contentRange[contentRange.index(after: slash)...])
        }
        return response.headers["content-length"].flatMap { Int64($0) }
    }
}

/// The highest attempt number any retry loop of one file reached, for error messages.
final class AttemptCounter: Sendable {
    private let highest = Mutex(1)
    var value: Int { highest.withLock { $0 } }
    func reached(_ attempt: Int) { highest.withLock { $0 = max($0, attempt) } }
}

private func logRetry(_ file: RemoteFile, _ error: any Error, _ attempt: Int, _ delay: Duration, _ logger: Logger) {
    logger.warning(
        "Retrying download of \(file.displayName) after error: \(error)",
        metadata: ["attempt": .stringConvertible(attempt), "delay_ms": .stringConvertible(delay.milliseconds)])
}

/// A file could not be downloaded, after `attempts` tries.
struct DownloadFailed: Error, RetryClassifying, CustomStringConvertible {
    let file: String
    let attempts: Int
    let underlying: any Error
    var isTransient: Bool { underlying.isTransient }
    var description: String {
        "download of \(file) failed" + (attempts > 1 ? " after \(attempts) attempts" : "") + ": \(underlying)"
    }
}

/// The downloaded bytes do not hash to what the store published.
struct ChecksumMismatch: Error, RetryClassifying, CustomStringConvertible {
    let file: String
    let expected: Checksum
    var isTransient: Bool { true }
    var description: String { "\(file): content does not match its \(expected)" }
}

/// The object was replaced while its parts were being fetched.
struct ObjectChanged: Error, RetryClassifying, CustomStringConvertible {
    let file: String
    var isTransient: Bool { true }
    var description: String { "\(file) changed during the download" }
}
