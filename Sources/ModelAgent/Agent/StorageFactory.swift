import Logging

/// Builds the storage providers over one transfer pool, configured from the environment.
package enum StorageFactory {
    /// `protectedPaths`: directories local sources may never be read from (the agent's own).
    package static func router(
        pool: TransferPool, options: TransferOptions, environment: [String: String], logger: Logger,
        protectedPaths: [String] = []
    ) -> StorageRouter {
        let engine = TransferEngine(
            pool: pool, retry: options.retry, parallelFiles: options.parallelFiles, partSize: options.partSize,
            multipartThreshold: options.multipartThreshold, verifyChecksums: options.verifyChecksums,
            partsPerFile: options.partsPerFile)
        return StorageRouter(
            http: HTTPStorageProvider(engine: engine, environment: environment, limits: options.limits),
            local: LocalStorageProvider(roots: options.localSourceRoots, forbidden: protectedPaths),
            s3: s3Provider(engine: engine, environment: environment, logger: logger),
            gcs: gcsProvider(engine: engine, environment: environment, logger: logger))
    }

    static func gcsProvider(engine: TransferEngine, environment: [String: String], logger: Logger)
        -> any StorageProvider
    {
        let tokens = GCSTokenProvider(
            source: GCSCredentialSource.from(environment: environment), pool: engine.pool, logger: logger)
        let client = GCSClient(baseURL: GCSClient.baseURL(environment: environment), tokens: tokens, pool: engine.pool)
        return BucketStorageProvider(client: client, engine: engine)
    }

    static func s3Provider(engine: TransferEngine, environment: [String: String], logger: Logger) -> any StorageProvider
    {
        do {
            let config = try S3Configuration.from(environment: environment)
            let source = S3Configuration.credentialSource(environment: environment, region: config.region)
            let credentials = AWSCredentialProvider(source: source, pool: engine.pool, logger: logger)
            return BucketStorageProvider(
                client: S3Client(config: config, credentials: credentials, pool: engine.pool), engine: engine)
        } catch {
            return UnusableProvider(error: error)
        }
    }
}

/// Stands in for a provider whose configuration is wrong, so each model using it fails
/// with that reason instead of the agent refusing to start.
struct UnusableProvider: StorageProvider {
    let error: any Error

    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        throw error
    }
}
