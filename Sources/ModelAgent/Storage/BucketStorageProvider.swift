import Logging

/// What an object store offers the agent: listings and (ranged) object reads.
protocol BucketClient: Sendable {
    /// "s3" or "gs", for URIs in logs and errors.
    var scheme: String { get }
    /// Objects whose key starts with `prefix`, every page (or until `limit` are found).
    func list(bucket: String, prefix: String, pageSize: Int, limit: Int?) async throws -> [ListedObject]
    /// A request for `object`, or part of it; called for every attempt.
    func request(bucket: String, object: ListedObject, range: ByteRange?) async throws -> HTTPRequest
    /// The whole-object checksum a whole-object answer for `object` carries in its
    /// headers, if any.
    func checksum(inHeaders headers: [String: String], of object: ListedObject) -> Checksum?
    /// Asks the store for `object`'s whole-object checksum (before a download in parts,
    /// whose ranged answers do not carry it); nil when it keeps none beyond the listing's.
    func lookUpChecksum(bucket: String, object: ListedObject) async throws -> Checksum?
    /// Whether `request` failed for an optional extra it carried, which later requests
    /// leave out; the engine then asks again.
    func refusedExtra(_ request: HTTPRequest, _ error: HTTPStatusError) -> Bool
}

extension BucketClient {
    func checksum(inHeaders headers: [String: String], of object: ListedObject) -> Checksum? { nil }
    func lookUpChecksum(bucket: String, object: ListedObject) async throws -> Checksum? { nil }
    func refusedExtra(_ request: HTTPRequest, _ error: HTTPStatusError) -> Bool { false }
}

/// `s3://` and `gs://` artifacts: list what the URI names, check the disk has room, then
/// fetch every object through the transfer engine, each verified by size and checksum.
struct BucketStorageProvider: StorageProvider {
    let client: any BucketClient
    let engine: TransferEngine

    init(client: any BucketClient, engine: TransferEngine) {
        self.client = client
        self.engine = engine
    }

    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        let bucket: String
        let key: String
        switch location {
        case .s3(let b, let k) where client.scheme == "s3": (bucket, key) = (b, k)
        case .gcs(let b, let k) where client.scheme == "gs": (bucket, key) = (b, k)
        default: throw UnsupportedStorage(uri: location.description, reason: "not a \(client.scheme):// URI")
        }
        let plan = try ObjectLayout.plan(prefix: key, objects: try await objects(bucket: bucket, key: key))
        guard !plan.isEmpty else { throw NoObjectsFound(uri: location.description) }
        let total = plan.reduce(Int64(0)) { $0 + $1.object.size }
        try DiskSpace.ensureRoom(for: total, at: destination.root)
        logger.info(
            "Download model",
            metadata: [
                "uri": "\(location)", "files": .stringConvertible(plan.count), "bytes": .stringConvertible(total),
            ])
        let client = self.client
        let scheme = client.scheme
        let files = try plan.map { item in
            let object = item.object
            var file = RemoteFile(
                displayName: "\(scheme)://\(bucket)/\(object.key)", expectedSize: object.size,
                checksum: object.checksum, etag: object.etag
            ) { range in
                try await client.request(bucket: bucket, object: object, range: range)
            }
            file.checksumInHeaders = { client.checksum(inHeaders: $0, of: object) }
            file.checksumLookup = { try await client.lookUpChecksum(bucket: bucket, object: object) }
            file.requestRefused = { client.refusedExtra($0, $1) }
            // Never write past the listed end (the disk check counted the listed sizes).
            file.maximumSize = object.size
            return (file: file, path: try destination.preparePath(item.path))
        }
        let fetched = try await engine.download(files, logger: logger)
        var report = FetchReport(files: files.count, bytes: fetched.bytes)
        report.checks = fetched.checks
        return report
    }

    /// The objects a model URI names: the object at `key` itself, and everything under
    /// `key/`. Listing `key/` rather than `key` keeps siblings (`m10/…`) out of the pages;
    /// the exact key, if it exists, is the first key with prefix `key` in lexical order.
    func objects(bucket: String, key: String) async throws -> [ListedObject] {
        if key.isEmpty || key.hasSuffix("/") {
            return try await client.list(bucket: bucket, prefix: key, pageSize: 1000, limit: nil)
        }
        var found = try await client.list(bucket: bucket, prefix: key + "/", pageSize: 1000, limit: nil)
        if let exact = try await client.list(bucket: bucket, prefix: key, pageSize: 1, limit: 1).first, exact.key == key
        {
            found.insert(exact, at: 0)
        }
        return found
    }
}
