import Logging
import Synchronization

/// Signed requests to one S3-compatible service: ListObjectsV2 and (ranged) GetObject.
struct S3Client: BucketClient {
    var scheme: String { "s3" }
    let config: S3Configuration
    let credentials: AWSCredentialProvider
    let pool: TransferPool
    let signer: SigV4Signer
    /// Cleared for good the first time the store refuses checksum mode (Backblaze B2
    /// answers 400 "Unsupported header"); files are then checked by MD5 ETag or size.
    private let checksumMode: ChecksumModeSwitch

    init(config: S3Configuration, credentials: AWSCredentialProvider, pool: TransferPool) {
        self.config = config
        self.credentials = credentials
        self.pool = pool
        self.signer = SigV4Signer(region: config.region, service: "s3")
        checksumMode = ChecksumModeSwitch(config.checksumMode)
    }

    /// A signed request; called per attempt, so the signature is always fresh.
    func request(
        bucket: String, key: String?, method: String = "GET", query: [(String, String)] = [],
        headers: [(name: String, value: String)] = [], range: ByteRange? = nil, timeout: Duration? = nil
    ) async throws -> HTTPRequest {
        let (origin, pathPrefix) = config.base(bucket: bucket)
        var path = pathPrefix
        if let key { path += "/" + uriEncode(key, keepSlash: true) }
        if path.isEmpty { path = "/" }
        let queryText = query.map { "\(uriEncode($0.0))=\(uriEncode($0.1))" }.joined(separator: "&")
        var request = HTTPRequest(
            method: method, url: origin + path + (queryText.isEmpty ? "" : "?" + queryText), headers: headers,
            range: range, timeout: timeout)
        request.tls = TLSOptions(verify: config.verifyTLS, caBundle: config.caBundle)
        if let credentials = try await credentials.credentials() {
            signer.sign(&request, credentials: credentials)
        }
        return request
    }

    /// A signed GetObject for `object`, with If-Match handled by the engine. A whole-object
    /// GET asks for the additional checksums (ranged answers never carry them).
    func request(bucket: String, object: ListedObject, range: ByteRange?) async throws -> HTTPRequest {
        let extras = range == nil && checksumMode.isOn ? [Self.checksumModeHeader] : []
        return try await request(bucket: bucket, key: object.key, headers: extras, range: range)
    }

    /// Makes S3 return an object's additional checksums (x-amz-checksum-*).
    static let checksumModeHeader = (name: "x-amz-checksum-mode", value: "ENABLED")

    /// How a store that does not know checksum mode answers a request asking for it.
    static func refusesChecksumMode(status: Int) -> Bool { status == 400 || status == 501 }

    /// A refusal of a request that asked for checksums: stop asking, and ask again.
    func refusedExtra(_ request: HTTPRequest, _ error: HTTPStatusError) -> Bool {
        guard Self.refusesChecksumMode(status: error.status), request.header(Self.checksumModeHeader.name) != nil
        else {
            return false
        }
        checksumMode.turnOff()
        return true
    }

    func checksum(inHeaders headers: [String: String], of object: ListedObject) -> Checksum? {
        Self.additionalChecksum(headers, multipart: Self.isMultipart(object))
    }

    /// A multipart upload's ETag is "<hash>-<parts>".
    static func isMultipart(_ object: ListedObject) -> Bool {
        object.etag?.trimmingCharacters(in: "\"").contains("-") ?? false
    }

    /// HEAD with checksum mode on, for the same version the listing saw (If-Match).
    func lookUpChecksum(bucket: String, object: ListedObject) async throws -> Checksum? {
        guard checksumMode.isOn else { return nil }
        var headers = [Self.checksumModeHeader]
        if let etag = object.etag, !etag.hasPrefix("W/") { headers.append((name: "If-Match", value: etag)) }
        let request = try await request(
            bucket: bucket, key: object.key, method: "HEAD", headers: headers, timeout: .seconds(20))
        let response = try await pool.perform(request, sink: .memory(limit: 0))
        if response.status == 412 { throw ObjectChanged(file: "s3://\(bucket)/\(object.key)") }
        if Self.refusesChecksumMode(status: response.status) {
            checksumMode.turnOff()
            return nil
        }
        guard response.isSuccess else {
            throw S3Error(operation: "HEAD s3://\(bucket)/\(object.key)", status: response.status, body: [])
        }
        return Self.additionalChecksum(response.headers, multipart: Self.isMultipart(object))
    }

    /// A whole-object ("FULL_OBJECT") additional checksum: CRC-32C and CRC-32 first (the
    /// hardware computes them fastest), then CRC-64/NVME. Composite checksums of multipart
    /// uploads ("…-N") are checksums of the parts' checksums, which need the part layout:
    /// ignored, like SHA-1 and SHA-256 (the MD5 ETag or the size is checked instead). A
    /// multipart object's checksum counts only when it is said to be FULL_OBJECT: some
    /// stores (moto) send a composite value bare.
    static func additionalChecksum(_ headers: [String: String], multipart: Bool = false) -> Checksum? {
        let type = headers["x-amz-checksum-type"]?.uppercased()
        if type == "COMPOSITE" || (multipart && type != "FULL_OBJECT") { return nil }
        for algorithm in [CRCAlgorithm.crc32c, .crc32, .crc64nvme] {
            if let value = headers["x-amz-checksum-" + algorithm.rawValue],
                let checksum = Checksum.crc(algorithm, base64: value)
            {
                return checksum
            }
        }
        return nil
    }

    /// Every object whose key starts with `prefix`, following continuation tokens.
    func list(bucket: String, prefix: String, pageSize: Int = 1000, limit: Int? = nil) async throws
        -> [ListedObject]
    {
        let maxKeys = pageSize
        var objects: [ListedObject] = []
        var token: String?
        repeat {
            var query = [
                ("list-type", "2"), ("prefix", prefix), ("max-keys", String(maxKeys)), ("encoding-type", "url"),
            ]
            if let token { query.append(("continuation-token", token)) }
            let request = try await request(bucket: bucket, key: nil, query: query, timeout: .seconds(120))
            let response = try await pool.perform(request, sink: .memory(limit: 64 << 20))
            guard response.status == 200 else {
                throw S3Error(operation: "list s3://\(bucket)/\(prefix)", status: response.status, body: response.body)
            }
            let page = try Self.parseListPage(response.body, operation: "list s3://\(bucket)/\(prefix)")
            objects += page.objects
            token = page.continuationToken
            if let limit, objects.count >= limit { break }
        } while token != nil
        return objects
    }

    /// One ListObjectsV2 answer: its objects and the token of the next page, if any.
    static func parseListPage(_ body: [UInt8], operation: String) throws -> (
        objects: [ListedObject], continuationToken: String?
    ) {
        let xml = XMLScanner(body)
        let urlEncoded = xml.value("EncodingType")?.lowercased() == "url"
        var objects: [ListedObject] = []
        for item in xml.elements("Contents") {
            guard var key = item.value("Key") else { continue }
            if urlEncoded { key = percentDecoded(Substring(key.replacingPlus())) ?? key }
            let etag = item.value("ETag")
            guard let size = Int64(item.value("Size") ?? ""), size >= 0 else {
                throw S3Error(
                    operation: operation, status: 200, code: "InvalidListing",
                    message: "object \(JSONText.quoted(key)) has no valid Size")
            }
            objects.append(ListedObject(key: key, size: size, etag: etag, checksum: etag.flatMap(Self.md5FromETag)))
        }
        let truncated = xml.value("IsTruncated")?.lowercased() == "true"
        let token = truncated ? xml.value("NextContinuationToken") : nil
        if truncated && token == nil {
            throw S3Error(
                operation: operation, status: 200, code: "NoContinuationToken",
                message: "truncated listing without a continuation token")
        }
        return (objects, token)
    }

    /// A plain MD5 ETag (single-part upload) is the content's MD5; "…-N" ETags are not.
    static func md5FromETag(_ etag: String) -> Checksum? {
        let value = etag.trimmingCharacters(in: "\"").lowercased()
        guard value.count == 32, value.allSatisfy(\.isHexDigit) else { return nil }
        return .md5(hex: value)
    }
}

/// Whether to keep asking the store for additional checksums; shared by every copy of a
/// client, turned off at most once.
final class ChecksumModeSwitch: Sendable {
    private let on: Atomic<Bool>

    init(_ on: Bool) { self.on = Atomic(on) }

    var isOn: Bool { on.load(ordering: .relaxed) }

    func turnOff() { on.store(false, ordering: .relaxed) }
}

/// An error answer from S3. Only its code and message are kept: the full body can echo
/// the canonical request, session token included.
struct S3Error: Error, RetryClassifying, CustomStringConvertible {
    let operation: String
    let status: Int
    let code: String
    let message: String

    init(operation: String, status: Int, body: [UInt8]) {
        let xml = XMLScanner(body)
        let message = xml.value("Message") ?? ""
        self.init(
            operation: operation, status: status, code: String((xml.value("Code") ?? "HTTP \(status)").prefix(64)),
            message: ErrorDocument.bounded(message))
    }

    init(operation: String, status: Int, code: String, message: String) {
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
    }

    /// S3 also throttles and times out under 400/503 with these codes.
    var isTransient: Bool { isTransientHTTPStatus(status) || code == "SlowDown" || code == "RequestTimeout" }
    var description: String {
        "\(operation): \(status) \(code)" + (message.isEmpty ? "" : ": \(message)")
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }

    /// `encoding-type=url` listings encode spaces as "+" (form encoding).
    func replacingPlus() -> String {
        String(map { $0 == "+" ? " " : $0 })
    }
}
