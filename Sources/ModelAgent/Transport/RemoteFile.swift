/// A file to fetch: how to ask for (part of) it, and what it should turn out to be.
struct RemoteFile: Sendable {
    /// Name used in logs and errors: an object key or a URL without its query.
    var displayName: String
    /// Size announced by a listing; checked after the download when known.
    var expectedSize: Int64?
    var checksum: Checksum?
    /// The store's version tag, sent as If-Match with every part.
    var etag: String?
    /// The most bytes the file may have; a body that grows past it is refused (an
    /// endless body must not fill the volume).
    var maximumSize: Int64 = .max
    /// Builds the request for the whole file (nil) or one range. Called for every
    /// attempt, so signatures and tokens are always fresh.
    var makeRequest: @Sendable (ByteRange?) async throws -> HTTPRequest

    init(
        displayName: String, expectedSize: Int64? = nil, checksum: Checksum? = nil, etag: String? = nil,
        makeRequest: @escaping @Sendable (ByteRange?) async throws -> HTTPRequest
    ) {
        self.displayName = displayName
        self.expectedSize = expectedSize
        self.checksum = checksum
        self.etag = etag
        self.makeRequest = makeRequest
    }
}

/// A content checksum published by the store, verified after the download.
enum Checksum: Sendable, Equatable, CustomStringConvertible {
    case md5(hex: String)
    case crc32c(UInt32)

    var description: String {
        switch self {
        case .md5(let hex): return "md5 \(hex)"
        case .crc32c(let value): return "crc32c \(value)"
        }
    }
}

/// The downloaded bytes are not what the store said they would be.
struct IntegrityError: Error, RetryClassifying, CustomStringConvertible {
    let file: String
    let detail: String
    var isTransient: Bool { true }
    var description: String { "\(file): \(detail)" }
}
