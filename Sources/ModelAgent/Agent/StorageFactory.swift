/// Builds the storage providers over one transfer pool.
public enum StorageFactory {
    public static func router(pool: TransferPool, options: TransferOptions, environment: [String: String])
        -> StorageRouter
    {
        let engine = TransferEngine(pool: pool, retry: options.retry, parallelFiles: options.parallelFiles)
        return StorageRouter(
            http: HTTPStorageProvider(engine: engine, environment: environment),
            local: LocalStorageProvider())
    }
}
