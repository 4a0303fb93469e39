import Logging

/// `file:///path` and absolute paths (a mounted PVC, a laptop folder): the file, or the
/// directory's content, is hard-linked into staging when on the same filesystem and
/// copied otherwise. Symlinks in the source are followed.
public struct LocalStorageProvider: StorageProvider {
    public init() {}

    public func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .local(let raw) = location else {
            throw UnsupportedStorage(uri: location.description, reason: "not a local path")
        }
        return try await BlockingExecutor.shared.run { try copy(raw, into: destination) }
    }

    private func copy(_ raw: String, into destination: StagingDirectory) throws -> FetchReport {
        let source = FileSystem.absolute(raw)
        var report = FetchReport(files: 0, bytes: 0)
        let linkable = (try? FileSystem.deviceID(source)) == (try? FileSystem.deviceID(destination.root))
        switch FileSystem.resolvedKind(source) {
        case .file:
            try place(
                source, at: FileSystem.lastComponent(source), in: destination, linkable: linkable, report: &report)
        case .directory:
            try mirror(source, relative: "", into: destination, linkable: linkable, depth: 0, report: &report)
        case nil:
            throw LocalSourceError(description: "local path \(source) does not exist")
        default:
            throw LocalSourceError(description: "local path \(source) is neither a file nor a directory")
        }
        if report.files == 0 { throw LocalSourceError(description: "no files found at \(source)") }
        return report
    }

    private func mirror(
        _ directory: String, relative: String, into destination: StagingDirectory, linkable: Bool, depth: Int,
        report: inout FetchReport
    ) throws {
        guard depth < 64 else {
            throw LocalSourceError(description: "\(directory) is nested too deeply (symlink loop?)")
        }
        for name in try FileSystem.listDirectory(directory).sorted() {
            let path = directory + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            switch FileSystem.resolvedKind(path) {
            case .directory:
                try destination.makeDirectory(rel)
                try mirror(
                    path, relative: rel, into: destination, linkable: linkable, depth: depth + 1, report: &report)
            case .file:
                try place(path, at: rel, in: destination, linkable: linkable, report: &report)
            default:
                continue
            }
        }
    }

    private func place(
        _ source: String, at relative: String, in destination: StagingDirectory, linkable: Bool,
        report: inout FetchReport
    ) throws {
        let target = try destination.path(for: relative)
        try FileSystem.makeDirectories(FileSystem.parentPath(target))
        let size = try FileSystem.fileSize(source)
        if !(linkable && (try? FileSystem.hardLink(source, to: target)) != nil) {
            let copied = try FileSystem.copyFile(source, to: target)
            guard copied == size else {
                throw LocalSourceError(
                    description: "\(source) changed while it was copied (\(copied) of \(size) bytes)")
            }
        }
        report.files += 1
        report.bytes += size
    }
}

public struct LocalSourceError: Error, RetryClassifying, CustomStringConvertible {
    public let description: String
    public var isTransient: Bool { false }
}
