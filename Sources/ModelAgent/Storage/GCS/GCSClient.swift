import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Google Cloud Storage's JSON API: object listings and media downloads.
struct GCSClient: BucketClient {
    var scheme: String { "gs" }
    /// scheme://host[:port] of the API: `STORAGE_EMULATOR_HOST` or storage.googleapis.com.
    let baseURL: String
    let tokens: GCSTokenProvider
    let pool: TransferPool

    init(baseURL: String, tokens: GCSTokenProvider, pool: TransferPool) {
        self.baseURL = baseURL.trimmingSlashesAtEnd()
        self.tokens = tokens
        self.pool = pool
    }

    static func baseURL(environment env: [String: String]) -> String {
        guard let emulator = env["STORAGE_EMULATOR_HOST"], !emulator.isEmpty else {
            return "https://storage.googleapis.com"
        }
        return emulator.contains("://") ? emulator : "http://" + emulator
    }

    func authorized(_ url: String, range: ByteRange? = nil, timeout: Duration? = nil) async throws -> HTTPRequest {
        var request = HTTPRequest(url: url, range: range, timeout: timeout)
        if let token = try await tokens.token() {
            request.credentials = [(name: "Authorization", value: "Bearer \(token)")]
        }
        return request
    }

    /// Every object whose name starts with `prefix`, following page tokens.
    func list(bucket: String, prefix: String, pageSize: Int = 1000, limit: Int? = nil) async throws
        -> [ListedObject]
    {
        let maxResults = pageSize
        var objects: [ListedObject] = []
        var pageToken: String?
        repeat {
            var query = "prefix=\(uriEncode(prefix))&maxResults=\(maxResults)"
            query += "&fields=" + uriEncode("items(name,size,md5Hash,crc32c,generation),nextPageToken")
            if let pageToken { query += "&pageToken=\(uriEncode(pageToken))" }
            let url = "\(baseURL)/storage/v1/b/\(uriEncode(bucket))/o?\(query)"
            let response = try await pool.perform(
                try await authorized(url, timeout: .seconds(120)), sink: .memory(limit: 64 << 20))
            guard response.status == 200 else {
                throw GCSError(operation: "list gs://\(bucket)/\(prefix)", status: response.status, body: response.body)
            }
            let page = try Self.parsePage(response.body, operation: "list gs://\(bucket)/\(prefix)")
            objects += page.objects
            pageToken = page.nextPageToken
            if let limit, objects.count >= limit { break }
        } while pageToken != nil
        return objects
    }

    /// A media download request, pinned to the listed generation so that every part
    /// comes from the same version of the object.
    func request(bucket: String, object: ListedObject, range: ByteRange?) async throws -> HTTPRequest {
        var url = "\(baseURL)/storage/v1/b/\(uriEncode(bucket))/o/\(uriEncode(object.key))?alt=media"
        if let generation = object.version { url += "&generation=\(uriEncode(generation))" }
        return try await authorized(url, range: range)
    }

    /// One page of an objects listing: its objects and the next page's token, if any.
    static func parsePage(_ body: [UInt8], operation: String) throws -> (
        objects: [ListedObject], nextPageToken: String?
    ) {
        let page: Page
        do {
            page = try JSONDecoder().decode(Page.self, from: Data(body))
        } catch {
            throw GCSError(operation: operation, status: 200, message: "unreadable listing")
        }
        var objects: [ListedObject] = []
        for item in page.items ?? [] {
            guard let size = Int64(item.size ?? ""), size >= 0 else {
                throw GCSError(
                    operation: operation, status: 200, message: "object \(JSONText.quoted(item.name)) has no valid size"
                )
            }
            objects.append(
                ListedObject(
                    key: item.name, size: size, version: item.generation,
                    checksum: Self.checksum(crc32c: item.crc32c, md5: item.md5Hash)))
        }
        return (objects, page.nextPageToken.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// CRC32C is preferred: it is what every object has (composite ones lack MD5) and far
    /// cheaper to compute.
    static func checksum(crc32c: String?, md5: String?) -> Checksum? {
        if let crc32c, let checksum = Checksum.crc(.crc32c, base64: crc32c) { return checksum }
        if let md5, let bytes = Base64.decode(md5), bytes.count == 16 { return .md5(hex: hex(bytes)) }
        return nil
    }

    private struct Page: Decodable {
        var items: [Item]?
        var nextPageToken: String?
    }

    private struct Item: Decodable {
        var name: String
        var size: String?
        var md5Hash: String?
        var crc32c: String?
        var generation: String?
    }
}

/// An error answer from the GCS API, with its message.
struct GCSError: Error, RetryClassifying, CustomStringConvertible {
    let operation: String
    let status: Int
    let message: String

    init(operation: String, status: Int, message: String) {
        self.operation = operation
        self.status = status
        self.message = message
    }

    /// Only the parsed `error.message` is kept, never the raw body.
    init(operation: String, status: Int, body: [UInt8]) {
        self.init(operation: operation, status: status, message: ErrorDocument.reason(body) ?? "")
    }

    var isTransient: Bool { isTransientHTTPStatus(status) }
    var description: String { "\(operation): HTTP \(status)" + (message.isEmpty ? "" : ": \(message)") }
}
