import Logging

/// `s3://bucket/prefix`: lists, checks the disk has room, then fetches every object in
/// parallel through the transfer engine, each verified by size and (when the ETag is a
/// plain MD5) by content.
public struct S3StorageProvider: StorageProvider {
    let client: S3Client
    let engine: TransferEngine

    public init(client: S3Client, engine: TransferEngine) {
        self.client = client
        self.engine = engine
    }

    public func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .s3(let bucket, let key) = location else {
            throw UnsupportedStorage(uri: location.description, reason: "not an s3:// URI")
        }
        let objects = try await client.objects(bucket: bucket, key: key)
        let plan = try ObjectLayout.plan(prefix: key, objects: objects)
        guard !plan.isEmpty else { throw NoObjectsFound(uri: location.description) }
        let total = plan.reduce(Int64(0)) { $0 + $1.object.size }
        try DiskSpace.ensureRoom(for: total, at: destination.root)
        logger.info(
            "Download model",
            metadata: [
                "uri": "\(location)", "files": .stringConvertible(plan.count), "bytes": .stringConvertible(total),
            ])
        let client = self.client
        let files = try plan.map { item in
            let objectKey = item.object.key
            let file = RemoteFile(
                displayName: "s3://\(bucket)/\(objectKey)", expectedSize: item.object.size,
                checksum: item.object.checksum,
                etag: item.object.etag
            ) { range in
                try await client.request(bucket: bucket, key: objectKey, range: range)
            }
            return (file: file, path: try destination.preparePath(item.path))
        }
        let bytes = try await engine.download(files, logger: logger)
        return FetchReport(files: files.count, bytes: bytes)
    }
}
