import Logging

/// `gs://bucket/prefix`: the same layout rules as S3, verified by CRC32C (or MD5).
public struct GCSStorageProvider: StorageProvider {
    let client: GCSClient
    let engine: TransferEngine

    public init(client: GCSClient, engine: TransferEngine) {
        self.client = client
        self.engine = engine
    }

    public func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .gcs(let bucket, let key) = location else {
            throw UnsupportedStorage(uri: location.description, reason: "not a gs:// URI")
        }
        let objects = try await client.objects(bucket: bucket, key: key)
        let plan = try ObjectLayout.plan(prefix: key, objects: objects)
        guard !plan.isEmpty else { throw NoObjectsFound(uri: location.description) }
        let total = plan.reduce(Int64(0)) { $0 + $1.object.size }
        try DiskSpace.ensureRoom(for: total, at: destination.root)
        logger.info(
            "Downloading model ",
            metadata: [
                "uri": "\(location)", "files": .stringConvertible(plan.count), "bytes": .stringConvertible(total),
            ])
        let client = self.client
        let files = try plan.map { item in
            let object = item.object
            let file = RemoteFile(
                displayName: "gs://\(bucket)/\(object.key)", expectedSize: object.size, checksum: object.checksum
            ) { range in
                try await client.mediaRequest(bucket: bucket, object: object, range: range)
            }
            return (file: file, path: try destination.preparePath(item.path))
        }
        let bytes = try await engine.download(files, logger: logger)
        return FetchReport(files: files.count, bytes: bytes)
    }
}
