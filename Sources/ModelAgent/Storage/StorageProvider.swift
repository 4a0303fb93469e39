import Logging

/// Fetches a model artifact into an empty staging directory. Implementations write only
/// through `destination` (which refuses paths escaping it) and throw on anything short
/// of a complete, verified copy; the caller discards the staging directory then.
public protocol StorageProvider: Sendable {
    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
}

public struct FetchReport: Sendable, Equatable {
    public var files: Int
    public var bytes: Int64

    public init(files: Int, bytes: Int64) {
        self.files = files
        self.bytes = bytes
    }
}

/// Picks the provider for a location's scheme.
public struct StorageRouter: Sendable {
    public var http: (any StorageProvider)?
    public var local: (any StorageProvider)?
    public var s3: (any StorageProvider)?
    public var gcs: (any StorageProvider)?

    public init(
        http: (any StorageProvider)? = nil, local: (any StorageProvider)? = nil, s3: (any StorageProvider)? = nil,
        gcs: (any StorageProvider)? = nil
    ) {
        self.http = http
        self.local = local
        self.s3 = s3
        self.gcs = gcs
    }

    public func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        let provider: (any StorageProvider)?
        switch location {
        case .http: provider = http
        case .local: provider = local
        case .s3: provider = s3
        case .gcs: provider = gcs
        }
        guard let provider else {
            throw UnsupportedStorage(uri: location.description, reason: "this storage type is not yet supported")
        }
        return try await provider.fetch(location, into: destination, logger: logger)
    }
}
