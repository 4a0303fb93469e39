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
    /// Reads a whole-file checksum from a whole-file answer's headers (S3's additional
    /// checksums); preferred over `checksum` when it is a CRC.
    var checksumInHeaders: (@Sendable ([String: String]) -> Checksum?)?
    /// Asks for the whole-file checksum before a download in parts, whose ranged answers
    /// do not carry it (S3: a HEAD with checksum mode on).
    var checksumLookup: (@Sendable () async throws -> Checksum?)?
    /// Whether a failed whole-file request is worth sending again, because it carried an
    /// optional extra the store refuses and later requests leave out (S3's checksum mode).
    var requestRefused: (@Sendable (HTTPRequest, HTTPStatusError) -> Bool)?

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
    /// A whole-object CRC (S3 FULL_OBJECT checksums, GCS crc32c).
    case crc(CRCAlgorithm, UInt64)

    /// The check's name as logs and /v1/models show it.
    var algorithm: String {
        switch self {
        case .md5: return "md5"
        case .crc(let algorithm, _): return algorithm.rawValue
        }
    }

    /// Preferred when a store publishes several: a CRC is computed part by part, in
    /// parallel; MD5 only front to back.
    var isParallel: Bool {
        if case .crc = self { return true }
        return false
    }

    /// A CRC as stores write it (S3's `x-amz-checksum-*`, GCS's `crc32c`): the big-endian
    /// value in base64. Nil for anything else, composite "…-N" values included.
    static func crc(_ algorithm: CRCAlgorithm, base64 text: String) -> Checksum? {
        let alphabet = text.utf8.allSatisfy {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "=")
        }
        guard alphabet, text.utf8.count <= 16, let bytes = Base64.decode(text), bytes.count == algorithm.width / 8
        else {
            return nil
        }
        return .crc(algorithm, bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    /// As stores write it: hex for MD5, big-endian base64 for CRCs.
    var description: String {
        switch self {
        case .md5(let hex): return "md5 \(hex)"
        case .crc(let algorithm, let value):
            let bytes = (0..<(algorithm.width / 8)).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
            return "\(algorithm.rawValue) \(Base64.encode(bytes))"
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
