import Logging

/// `file:///path`, `pvc://` and absolute paths (a mounted PVC, a laptop folder): the file,
/// or the directory's content, is hard-linked into staging when on the same filesystem
/// and copied otherwise. Symlinks in the source are followed.
///
/// Whatever models.json names is copied where the model server can read it, so only
/// paths under the allowed roots (`--local-source-root`, default `/mnt/pvc`) are read,
/// checked after resolving symlinks, file by file; the agent's own config and model
/// directories never are, so `file:///etc/shadow` or the pod's service-account token
/// cannot be turned into a model.
package struct LocalStorageProvider: StorageProvider {
    package static let defaultRoots = ["/mnt/pvc"]

    let roots: [String]
    let forbidden: [String]

    /// `forbidden`: directories never read even under a root (config and model dirs).
    init(roots: [String] = LocalStorageProvider.defaultRoots, forbidden: [String] = []) {
        self.roots = roots.map(FileSystem.absolute)
        self.forbidden = forbidden.map(FileSystem.absolute)
    }

    /// The resolved path of `path` if it lies under a root (as written and as resolved,
    /// so an answer never tells whether a path outside the roots exists) and outside
    /// every forbidden directory; throws otherwise.
    func allowedPath(_ path: String) throws -> String {
        let outside = LocalSourceError(
            description:
                "local path \(path) is outside the allowed local source roots (\(roots.joined(separator: ", "))); "
                + "allow its directory with --local-source-root")
        let lexical = FileSystem.lexicallyNormalized(path)
        let resolvedRoots = roots.compactMap(FileSystem.realPath)
        guard (roots + resolvedRoots).contains(where: { FileSystem.isInside(lexical, $0) }) else { throw outside }
        guard let resolved = FileSystem.realPath(path) else {
            throw LocalSourceError(description: "local path \(path) does not exist")
        }
        guard resolvedRoots.contains(where: { FileSystem.isInside(resolved, $0) }) else { throw outside }
        for directory in forbidden.compactMap(FileSystem.realPath) where FileSystem.isInside(resolved, directory) {
            throw LocalSourceError(
                description: "local path \(path) is inside the agent's own directory \(directory); refusing to read it")
        }
        return resolved
    }

    func fetch(_ location: StorageLocation, into destination: StagingDirectory, logger: Logger) async throws
        -> FetchReport
    {
        guard case .local(let raw) = location else {
            throw UnsupportedStorage(uri: location.description, reason: "not a local path")
        }
        // The copy blocks a thread; a newer wish or a shutdown stops it between files.
        let cancel = CancelFlag()
        return try await withTaskCancellationHandler {
            try await BlockingExecutor.shared.run { try copy(raw, into: destination, cancel: cancel) }
        } onCancel: {
            cancel.set()
        }
    }

    /// What one copy has seen: every directory once (symlinks may reach one twice, and
    /// a chain of such links doubles the tree at each level), and how many files.
    private struct Walk {
        let cancel: CancelFlag
        let linkable: Bool
        var visited: Set<FileIdentity> = []
        var report = FetchReport(files: 0, bytes: 0)
    }

    private func copy(_ raw: String, into destination: StagingDirectory, cancel: CancelFlag) throws -> FetchReport {
        let requested = FileSystem.absolute(raw)
        let source = try allowedPath(requested)
        var walk = Walk(
            cancel: cancel,
            linkable: (try? FileSystem.deviceID(source)) == (try? FileSystem.deviceID(destination.root)))
        switch FileSystem.resolvedKind(source) {
        case .file:
            // Named as asked for, not as the symlink it may be resolves.
            try place(source, at: FileSystem.lastComponent(requested), in: destination, walk: &walk)
        case .directory:
            try mirror(source, relative: "", into: destination, depth: 0, walk: &walk)
        case nil:
            throw LocalSourceError(description: "local path \(source) does not exist")
        default:
            throw LocalSourceError(description: "local path \(source) is neither a file nor a directory")
        }
        if walk.report.files == 0 { throw LocalSourceError(description: "no files found at \(source)") }
        return walk.report
    }

    private func mirror(
        _ directory: String, relative: String, into destination: StagingDirectory, depth: Int, walk: inout Walk
    ) throws {
        guard depth < 64 else {
            throw LocalSourceError(description: "\(directory) is nested too deeply (symlink loop?)")
        }
        guard walk.visited.insert(try FileSystem.identity(directory)).inserted else {
            throw LocalSourceError(
                description:
                    "\(directory) reaches a directory a second time through symlinks; refusing to copy it twice")
        }
        for name in try FileSystem.listDirectory(directory).sorted() {
            if walk.cancel.isSet { throw CancellationError() }
            let path = directory + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            switch FileSystem.resolvedKind(path) {
            case .directory:
                try destination.makeDirectory(rel)
                try mirror(path, relative: rel, into: destination, depth: depth + 1, walk: &walk)
            case .file:
                try place(path, at: rel, in: destination, walk: &walk)
            default:
                continue
            }
        }
    }

    private func place(_ source: String, at relative: String, in destination: StagingDirectory, walk: inout Walk)
        throws
    {
        guard walk.report.files < ExtractionBudget.maximumEntries else {
            throw LocalSourceError(
                description: "more than \(ExtractionBudget.maximumEntries) files; refusing to copy them")
        }
        // A symlink inside an allowed tree may point anywhere: each file is checked, and
        // read, as resolved.
        let source = try allowedPath(source)
        let target = try destination.path(for: relative)
        try FileSystem.makeDirectories(FileSystem.parentPath(target))
        let size = try FileSystem.fileSize(source)
        if !(walk.linkable && (try? FileSystem.hardLink(source, to: target)) != nil) {
            let copied = try FileSystem.copyFile(source, to: target)
            guard copied == size else {
                throw LocalSourceError(
                    description: "\(source) changed while it was copied (\(copied) of \(size) bytes)")
            }
        }
        walk.report.files += 1
        walk.report.bytes += size
    }
}

struct LocalSourceError: Error, RetryClassifying, CustomStringConvertible {
    let description: String
    var isTransient: Bool { false }
}
