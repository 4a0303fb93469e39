import Logging

/// Fetches a model artifact into an empty staging directory. Implementations write only
/// through `destination` (which refuses paths escaping it) and throw on anything short
/// of a complete, verified copy; the caller discards the staging directory then.
protocol StorageProvider: Sendable {
    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
}

package struct FetchReport: Sendable, Equatable {
    package var files: Int
    package var bytes: Int64
    /// How the downloaded files were checked (an archive counts as its one download).
    package var checks = Verifications()

    init(files: Int, bytes: Int64) {
        self.files = files
        self.bytes = bytes
    }
}

/// Picks the provider for a location's scheme.
package struct StorageRouter: Sendable {
    var http: (any StorageProvider)?
    var local: (any StorageProvider)?
    var s3: (any StorageProvider)?
    var gcs: (any StorageProvider)?

    init(
        http: (any StorageProvider)? = nil, local: (any StorageProvider)? = nil, s3: (any StorageProvider)? = nil,
        gcs: (any StorageProvider)? = nil
    ) {
        self.http = http
        self.local = local
        self.s3 = s3
        self.gcs = gcs
    }

    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
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
