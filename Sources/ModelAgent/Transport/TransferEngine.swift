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
    /// rest and is thrown. Returns the total byte count and how the files were checked.
    func download(_ files: [(file: RemoteFile, path: String)], logger: Logger) async throws -> (
        bytes: Int64, checks: Verifications
    ) {
        try await withThrowingTaskGroup(of: FetchedFile.self) { group in
            var total: Int64 = 0
            var checks = Verifications()
            var next = 0
            func startNext() {
                guard next < files.count else { return }
                let (file, path) = files[next]
                next += 1
                group.addTask { try await self.download(file, to: path, logger: logger) }
            }
            for _ in 0..<min(parallelFiles, files.count) { startNext() }
            while let fetched = try await group.next() {
                total += fetched.bytes
                checks.add(fetched.check)
                startNext()
            }
            return (total, checks)
        }
    }

    /// One file on disk: its size, the last response's headers (Content-Type), and the
    /// check it passed (a checksum's name, or "size").
    struct FetchedFile: Sendable {
        var bytes: Int64
        var headers: [String: String]
        var check: String
    }

    func download(_ file: RemoteFile, to path: String, logger: Logger) async throws -> FetchedFile {
        var round = 1
        let attempts = AttemptCounter()
        var lastComputed: Checksum?
        while true {
            do {
                return try await downloadOnce(file, to: path, logger: logger, attempts: attempts)
            } catch let mismatch as ChecksumMismatch where round < retry.maxAttempts {
                // The same wrong result twice: the bytes are stable, so the stored
                // checksum (or the object at rest) is wrong. Fetching again cannot help.
                if mismatch.computed == lastComputed {
                    throw DownloadFailed(
                        file: file.displayName, attempts: attempts.value,
                        underlying: StoredChecksumDisagrees(mismatch: mismatch))
                }
                lastComputed = mismatch.computed
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

    /// The checksum to verify against: a CRC (hashed in parallel) over MD5, whichever
    /// source has it; nil when checks are off or nothing usable was published.
    func chosenChecksum(_ candidates: Checksum?...) -> Checksum? {
        guard verifyChecksums else { return nil }
        let found = candidates.compactMap { $0 }
        return found.first(where: \.isParallel) ?? found.first
    }

    /// Before a download in parts: the whole-file checksum the store keeps apart from its
    /// listing (S3's additional checksums, asked for with a HEAD). A failed lookup is not
    /// fatal: the listing's checksum (or the size) still guards the file.
    private func lookUpChecksum(_ file: RemoteFile, logger: Logger) async throws -> Checksum? {
        guard verifyChecksums, let lookup = file.checksumLookup else { return nil }
        // One retry at most: the parts can go without it.
        var twice = retry
        twice.maxAttempts = min(retry.maxAttempts, 2)
        do {
            return try await twice.run { _ in
                try await lookup()
            } onRetry: { _, error, delay in
                logger.warning(
                    "Retrying the checksum lookup of \(file.displayName) after error: \(error)",
                    metadata: ["delay_ms": .stringConvertible(delay.milliseconds)])
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch let changed as ObjectChanged {
            throw changed
        } catch {
            logger.warning(
                "Could not read the published checksum of \(file.displayName): \(error); checking what the listing gave"
            )
            return nil
        }
    }

    private func downloadOnce(_ file: RemoteFile, to path: String, logger: Logger, attempts: AttemptCounter)
        async throws -> FetchedFile
    {
        let out = try OpenFile(creating: path)
        var check: (any ContentCheck)?
        var result: (bytes: Int64, headers: [String: String])
        if let size = file.expectedSize {
            // Reserving blocks up front pays off for large files (no ENOSPC halfway, fewer
            // extents); for small ones it is only extra work per file.
            if size >= 4 << 20 { try out.preallocate(size) }
            if size >= multipartThreshold {
                let expected = chosenChecksum(try await lookUpChecksum(file, logger: logger), file.checksum)
                check = expected?.makeCheck(for: out)
                do {
                    let headers = try await parts(
                        of: file, into: out, size: size, from: 0, etag: file.etag, check: check, logger: logger,
                        attempts: attempts)
                    result = (size, headers)
                } catch RangeSupport.unsupported {
                    logger.info("Server ignores ranges for \(file.displayName); fetching it in one stream")
                    try out.truncate(0)
                    let stream = try await stream(file, into: out, logger: logger, attempts: attempts)
                    result = stream
                    check = expected?.makeCheck(for: out)
                    try await check?.completed(0..<stream.bytes)
                }
            } else {
                // A whole-file answer may carry the store's checksum in its headers (an
                // answer to a resumed, ranged request is not trusted to).
                result = try await stream(file, into: out, logger: logger, attempts: attempts)
                // Nor is one without the listed version's ETag: stream() refused another
                // ETag, but an answer with none could be any version.
                let sameVersion = file.etag == nil || result.headers["etag"] != nil
                let published =
                    result.headers["content-range"] == nil && sameVersion
                    ? file.checksumInHeaders?(result.headers) : nil
                check = chosenChecksum(published, file.checksum)?.makeCheck(for: out)
                try await check?.completed(0..<result.bytes)
            }
            if result.bytes != size {
                throw IntegrityError(file: file.displayName, detail: "received \(result.bytes) bytes, expected \(size)")
            }
        } else {
            check = chosenChecksum(file.checksum)?.makeCheck(for: out)
            switch try await probe(file, into: out, logger: logger, attempts: attempts) {
            case .whole(let bytes, let headers):
                result = (bytes, headers)
                try await check?.completed(0..<bytes)
            case .partial(let total, let received, let headers):
                guard total <= file.maximumSize else { throw TransferError.bodyTooLarge(limit: file.maximumSize) }
                try out.preallocate(total)
                try await check?.completed(0..<received)
                _ = try await parts(
                    of: file, into: out, size: total, from: received, etag: headers["etag"], check: check,
                    logger: logger, attempts: attempts)
                result = (total, headers)
            case .rangesUnsupported:
                try out.truncate(0)
                result = try await stream(file, into: out, logger: logger, attempts: attempts)
                try await check?.completed(0..<result.bytes)
            }
        }
        if let check {
            let computed = try await check.computed(size: result.bytes)
            if computed != check.expected {
                throw ChecksumMismatch(file: file.displayName, expected: check.expected, computed: computed)
            }
        }
        return FetchedFile(
            bytes: result.bytes, headers: result.headers, check: check?.expected.algorithm ?? Verifications.sizeOnly)
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
            // The version the listing saw, as for parts: its checksum (an MD5 ETag) must
            // describe the bytes that come.
            if range == nil, let etag = file.etag, !etag.hasPrefix("W/") {
                request.headers.append((name: "If-Match", value: etag))
            }
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
                if response.status == 412 { throw ObjectChanged(file: file.displayName) }
                let error = HTTPStatusError(
                    status: response.status, body: response.body, context: "GET \(file.displayName)")
                if file.requestRefused?(request, error) == true { throw RequestRefused(refusal: error) }
                throw error
            }
            headers = response.headers
            if range == nil, Self.servesAnotherVersion(response, than: file.etag) {
                // Another version than the listing's (a store that ignores If-Match).
                written = 0
                resumable = false
                throw ObjectChanged(file: file.displayName)
            }
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

    /// Whether `response` names a version other than `etag` (the listing's). An answer
    /// without an ETag names none. Tags compare without quotes, weakness mark or case.
    static func servesAnotherVersion(_ response: HTTPResponse, than etag: String?) -> Bool {
        guard let etag, let served = response.headers["etag"] else { return false }
        return plainETag(etag) != plainETag(served)
    }

    static func plainETag(_ etag: String) -> String {
        var tag = Substring(etag)
        if tag.hasPrefix("W/") { tag = tag.dropFirst(2) }
        return String(tag).trimmingCharacters(in: "\"").lowercased()
    }

    // MARK: - Ranged parts

    /// Not retried: the answer will not change, the file is fetched in one stream instead.
    private enum RangeSupport: Error, RetryClassifying {
        case unsupported
        var isTransient: Bool { false }
    }

    /// Fetches `[from, size)` as parts, `partsPerFile` at a time in order. A finished
    /// part is handed to the check at once: a CRC was computed as the part was written
    /// (and is read back only if that failed), MD5 extends its prefix (parts complete
    /// roughly in order, so it keeps up).
    private func parts(
        of file: RemoteFile, into out: OpenFile, size: Int64, from start: Int64, etag: String?,
        check: (any ContentCheck)?, logger: Logger, attempts: AttemptCounter
    ) async throws -> [String: String] {
        let ranges = stride(from: start, to: size, by: Int(partSize)).map {
            ByteRange(start: $0, end: min($0 + partSize, size) - 1)
        }
        return try await withThrowingTaskGroup(of: PartEvent.self) { group in
            var next = 0
            func startNext() {
                guard next < ranges.count else { return }
                let range = ranges[next]
                next += 1
                let crc = check?.runningCRC(startingAt: range.start)
                group.addTask {
                    let headers = try await self.part(
                        range, of: file, into: out, etag: etag, crc: crc, logger: logger, attempts: attempts)
                    return .fetched(range, headers, crc)
                }
            }
            for _ in 0..<min(partsPerFile, ranges.count) { startNext() }
            var headers: [String: String] = [:]
            while let event = try await group.next() {
                guard case .fetched(let range, let partHeaders, let crc) = event else { continue }
                headers = partHeaders
                startNext()
                guard let check else { continue }
                let landed = range.start..<(range.end! + 1)
                if check.expected.isParallel {
                    group.addTask {
                        try await check.completed(landed, hashed: crc)
                        return .hashed
                    }
                } else {
                    try await check.completed(landed)
                }
            }
            return headers
        }
    }

    private enum PartEvent: Sendable {
        case fetched(ByteRange, [String: String], RunningCRC?)
        case hashed
    }

    private func part(
        _ part: ByteRange, of file: RemoteFile, into out: OpenFile, etag: String?, crc: RunningCRC?, logger: Logger,
        attempts: AttemptCounter
    ) async throws -> [String: String] {
        let length = part.length!
        var received: Int64 = 0
        return try await retry.run { _ in
            let range = ByteRange(start: part.start + received, end: part.end)
            var request = try await file.makeRequest(range)
            // A part of a newer version of the object must never be stitched to older parts.
            if let etag, !etag.hasPrefix("W/") { request.headers.append((name: "If-Match", value: etag)) }
            // Never past the part's end: the next part's bytes may already be written and
            // hashed by its own transfer.
            let attempt = try await attemptFollowingRedirects(
                request, sink: .file(out, offset: range.start, limit: min(file.maximumSize, part.end! + 1), crc: crc))
            let response = attempt.response
            if response.isSuccess { received += response.bytesWritten }
            if case .bodyTooLarge? = attempt.error, part.end! + 1 <= file.maximumSize {
                // The bytes past the part's end were refused, never written: a whole part
                // is done, a short one resumes.
                if received >= length { return response.headers }
                throw IntegrityError(
                    file: file.displayName, detail: "part \(part) answered with more than \(length) bytes")
            }
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
            // A part of another version, from a store that ignores If-Match.
            if Self.servesAnotherVersion(response, than: etag) {
                received = 0
                throw ObjectChanged(file: file.displayName)
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
    let computed: Checksum
    var isTransient: Bool { true }
    var description: String { "\(file): content does not match its \(expected) (computed \(computed))" }
}

/// Two downloads in a row hashed to the same value, not the published one: the store's
/// checksum, or the object it keeps, is wrong. Not retried: the next round would fetch the
/// same bytes (the model's own retry still comes, after its backoff).
struct StoredChecksumDisagrees: Error, RetryClassifying, CustomStringConvertible {
    let mismatch: ChecksumMismatch
    var isTransient: Bool { false }
    var description: String {
        "\(mismatch); the same content came twice, so the store's checksum or the stored object is wrong"
    }
}

/// The store refused an optional extra of a whole-file request (S3-compatible stores that
/// reject `x-amz-checksum-mode`); the next attempt goes without it.
struct RequestRefused: Error, RetryClassifying, CustomStringConvertible {
    let refusal: HTTPStatusError
    var isTransient: Bool { true }
    var description: String { "\(refusal); asking again without the checksum request" }
}

/// The object was replaced while its parts were being fetched.
struct ObjectChanged: Error, RetryClassifying, CustomStringConvertible {
    let file: String
    var isTransient: Bool { true }
    var description: String { "\(file) changed during the download" }
}
