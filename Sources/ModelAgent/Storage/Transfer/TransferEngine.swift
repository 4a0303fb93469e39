import Logging

/// Downloads files to disk through a `TransferPool`, retrying failed attempts with
/// backoff and verifying every file before it counts as done.
public struct TransferEngine: Sendable {
    public let pool: TransferPool
    public var retry: RetryPolicy
    /// Files fetched at once within one model.
    public var parallelFiles: Int

    public init(pool: TransferPool, retry: RetryPolicy, parallelFiles: Int) {
        self.pool = pool
        self.retry = retry
        self.parallelFiles = max(1, parallelFiles)
    }

    /// Fetches every file to its path, several at a time. The first failure cancels the
    /// rest and is thrown. Returns the total byte count.
    public func download(_ files: [(file: RemoteFile, path: String)], logger: Logger) async throws
        -> Int64
    {
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

    /// Streams one file to `path`. A broken transfer resumes where it stopped when the
    /// server supports ranges and validators; otherwise it starts over.
    public func download(_ file: RemoteFile, to path: String, logger: Logger) async throws -> Int64 {
        try await downloadReportingHeaders(file, to: path, logger: logger).bytes
    }

    /// Like `download`, also returning the final response's headers (Content-Type).
    public func downloadReportingHeaders(_ file: RemoteFile, to path: String, logger: Logger)
        async throws -> (
            bytes: Int64, headers: [String: String]
        )
    {
        let out = try OpenFile(creating: path)
        var written: Int64 = 0
        var validator: String?
        var resumable = false
        var finalHeaders: [String: String] = [:]
        var attempts = 0
        let size: Int64
        do {
            size = try await retry.run { number -> Int64 in
                attempts = number
                if written > 0 && !resumable {
                    written = 0
                    try out.truncate(0)
                }
                let range = written > 0 ? ByteRange(start: written) : nil
                var request = try await file.makeRequest(range)
                if range != nil, let validator { request.headers.append((name: "If-Range", value: validator)) }
                let attempt = try await attemptFollowingRedirects(request, sink: .file(out, offset: written))
                let response = attempt.response
                if range == nil && response.isSuccess {
                    validator = response.headers["etag"] ?? response.headers["last-modified"]
                    resumable = response.headers["accept-ranges"]?.lowercased() == "bytes" && validator != nil
                }
                if let error = attempt.error {
                    written = try out.size()
                    if case .rangeNotHonoured = error {
                        // The file changed or the server stopped honouring ranges: start over.
                        resumable = false
                        throw IntegrityError(file: file.displayName, detail: "resume refused by the server; restarting")
                    }
                    throw error
                }
                guard response.isSuccess else {
                    throw HTTPStatusError(
                        status: response.status, body: response.body, context: "GET \(file.displayName)")
                }
                written += response.bytesWritten
                finalHeaders = response.headers
                let total = Self.totalLength(response) ?? file.expectedSize
                if let total, written != total {
                    let got = written
                    written = 0
                    resumable = false
                    throw IntegrityError(
                        file: file.displayName, detail: "received \(got) bytes, expected \(total)")
                }
                return written
            } onRetry: { attempt, error, delay in
                logger.warning(
                    "Retrying download of \(file.displayName) after error: \(error)",
                    metadata: [
                        "attempt": .stringConvertible(attempt),
                        "delay_ms": .stringConvertible(delay.milliseconds),
                    ])
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw DownloadFailed(file: file.displayName, attempts: attempts, underlying: error)
        }
        if let expected = file.expectedSize, size != expected {
            throw IntegrityError(
                file: file.displayName, detail: "received \(size) bytes, expected \(expected)")
        }
        return (size, finalHeaders)
    }

    /// Follows up to 10 redirects itself so that credential headers are only ever sent
    /// to the host they were meant for.
    public func attemptFollowingRedirects(_ first: HTTPRequest, sink: ResponseSink) async throws -> TransferAttempt {
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
            if target.host != origin?.host || target.scheme != origin?.scheme { request.credentials = [] }
            if response.status == 303 { request.method = "GET" }
        }
        throw TransferError.curl(code: 47, message: "too many redirects from \(Redaction.uri(first.url))")
    }

    /// The full object length a response announces: Content-Range's total for a part,
    /// Content-Length for a whole body.
    static func totalLength(_ response: HTTPResponse) -> Int64? {
        if let contentRange = response.headers["content-range"],
            let slash = contentRange.lastIndex(of: "/")
        {
            return Int64(contentRange[contentRange.index(after: slash)...])
        }
        return response.headers["content-length"].flatMap { Int64($0) }
    }
}

/// A file could not be downloaded, after `attempts` tries.
public struct DownloadFailed: Error, RetryClassifying, CustomStringConvertible {
    public let file: String
    public let attempts: Int
    public let underlying: any Error
    public var isTransient: Bool { underlying.isTransient }
    public var description: String {
        "download of \(file) failed" + (attempts > 1 ? " after \(attempts) attempts" : "")
            + ": \(underlying)"
    }
}
