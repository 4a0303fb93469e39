import Logging

/// The model directory shared with the model server: `<model-dir>/<name>/` holds a
/// model's files and, once complete, its marker. Downloads are assembled in a staging
/// area on the same filesystem and appear only through rename(2).
struct ModelStore: Sendable {
    let modelDir: String
    let stagingRoot: String

    /// What startup finds for one model directory.
    enum DiskState: Sendable, Equatable {
        /// A valid marker: the directory holds this spec completely.
        case complete(ModelSpec)
        /// Markers that do not verify (another agent's hash, corruption): written by an
        /// agent, so ours to replace or delete, but of unknown content.
        case invalidMarker
        /// No marker at all: possibly not ours; left alone unless the model is desired.
        case unmarked
    }

    init(modelDir: String, stagingRoot: String? = nil) {
        self.modelDir = FileSystem.absolute(modelDir)
        self.stagingRoot = stagingRoot.map(FileSystem.absolute) ?? self.modelDir + "/.staging"
    }

    /// Creates the directories, checks that staging can rename into the model dir, and
    /// removes what an interrupted run left in staging (an agent takes the model dir's
    /// lock first: `lock()`, so the cleanup never removes another agent's work).
    func prepare(logger: Logger) throws {
        try makeModelDir()
        // The cleanup below deletes anything that looks like staging: never the models.
        if FileSystem.isInside(Self.canonical(modelDir), Self.canonical(stagingRoot)) {
            throw StoreError(
                "staging dir \(stagingRoot) holds the model dir \(modelDir); give staging a directory of its own")
        }
        do {
            try FileSystem.makeDirectories(stagingRoot)
        } catch {
            throw StoreError("cannot use staging dir \(stagingRoot): \(error)")
        }
        if try FileSystem.deviceID(modelDir) != FileSystem.deviceID(stagingRoot) {
            throw StoreError(
                "staging dir \(stagingRoot) is on another filesystem than model dir \(modelDir); downloads must be renamed into place"
            )
        }
        for name in try FileSystem.listDirectory(stagingRoot) where Self.isStagingEntry(name) {
            logger.info("Removing leftover staging entry \(name)")
            try FileSystem.removeTree(stagingRoot + "/" + name)
        }
    }

    private func makeModelDir() throws {
        do {
            try FileSystem.makeDirectories(modelDir)
        } catch {
            throw StoreError("cannot use model dir \(modelDir): \(error)")
        }
    }

    /// Takes the model dir's exclusive lock, and the staging dir's when it lies elsewhere
    /// (two agents sharing one would delete each other's downloads); held as long as the
    /// returned objects live.
    func lock() throws -> [ModelDirLock] {
        try makeModelDir()
        var locks = [try ModelDirLock(modelDir: modelDir)]
        do {
            try FileSystem.makeDirectories(stagingRoot)
        } catch {
            throw StoreError("cannot use staging dir \(stagingRoot): \(error)")
        }
        if !FileSystem.isInside(Self.canonical(stagingRoot), Self.canonical(modelDir)) {
            locks.append(try ModelDirLock(modelDir: stagingRoot))
        }
        return locks
    }

    /// The path with symlinks and ".." resolved (as text when it does not exist yet).
    static func canonical(_ path: String) -> String {
        FileSystem.realPath(path) ?? FileSystem.lexicallyNormalized(path)
    }

    static func isStagingEntry(_ name: String) -> Bool {
        let suffixes = [".staging", ".scratch", ".trash", ".marker"]
        guard let suffix = suffixes.first(where: { name.hasSuffix($0) }) else { return false }
        let stem = name.dropLast(suffix.count)
        guard let dot = stem.lastIndex(of: ".") else { return false }
        return stem[stem.index(after: dot)...].count == 16
    }

    /// Reads every model directory's markers.
    func recover(logger: Logger) throws -> [ModelName: DiskState] {
        logger.info("Syncing from model dir \(modelDir)")
        var found: [ModelName: DiskState] = [:]
        var recoveredURIs: [String] = []
        // The log lines below show URIs redacted by structure; their secrets are registered
        // at the end, in one update, for whatever logs them later.
        defer { SecretRedactor.shared.registerSecrets(inURIs: recoveredURIs) }
        for entry in try FileSystem.listDirectory(modelDir).sorted() {
            let path = modelDir + "/" + entry
            guard !entry.hasPrefix("."), FileSystem.kind(path) == .directory else { continue }
            guard let name = try? ModelName(validating: entry) else {
                logger.warning("Ignoring directory \(path): it is not a valid model name")
                continue
            }
            var specs: [ModelSpec] = []
            var markers = 0
            for file in try FileSystem.listDirectory(path) where file.hasPrefix(MarkerFile.prefix) {
                guard MarkerFile.isMarkerName(file) else { continue }
                markers += 1
                logger.info("Syncing from model success file \(path)/\(file)")
                do {
                    specs.append(try MarkerFile.read(path + "/" + file))
                } catch {
                    logger.warning("\(error)", metadata: ["model": "\(name)"])
                }
            }
            if specs.count == 1 && markers == 1 {
                found[name] = .complete(specs[0])
                recoveredURIs.append(specs[0].storageUri)
                logger.info(
                    "recovered model \(name) with spec \(specs[0].redactedJSON)",
                    metadata: ["model": "\(name)", "uri": "\(Redaction.uri(specs[0].storageUri))"])
            } else if markers > 0 {
                found[name] = .invalidMarker
                if markers > 1 { logger.warning("Model dir \(path) has \(markers) markers; treating it as incomplete") }
            } else {
                found[name] = .unmarked
            }
        }
        return found
    }

    func directoryExists(_ name: ModelName) -> Bool {
        FileSystem.kind(path(of: name)) == .directory
    }

    func path(of name: ModelName) -> String { modelDir + "/" + name.rawValue }

    func makeStaging(for name: ModelName) throws -> StagingDirectory {
        let base = stagingRoot + "/" + name.rawValue + "." + randomID()
        let staging = StagingDirectory(root: base + ".staging", scratch: base + ".scratch")
        try FileSystem.makeDirectories(stagingRoot)
        try FileSystem.makeDirectory(staging.root)
        return staging
    }

    /// Puts a complete download in place of whatever `<model-dir>/<name>` held, then
    /// writes the marker. The old directory leaves in one rename, so no reader ever
    /// sees a marker over a mix of old and new files. Returns the marker's path.
    @discardableResult
    func commit(_ staging: StagingDirectory, as name: ModelName, spec: ModelSpec) throws -> String {
        let live = path(of: name)
        let id = randomID()
        let trash = stagingRoot + "/" + name.rawValue + "." + id + ".trash"
        let hadOld = FileSystem.exists(live)
        if hadOld { try FileSystem.rename(live, to: trash) }
        do {
            try FileSystem.rename(staging.root, to: live)
        } catch {
            if hadOld { try? FileSystem.rename(trash, to: live) }
            throw error
        }
        let marker = live + "/" + MarkerFile.name(for: spec)
        try FileSystem.writeFileAtomically(
            marker, Array(spec.markerJSON.utf8), temporary: stagingRoot + "/" + name.rawValue + "." + id + ".marker")
        try? FileSystem.removeTree(trash)
        try? FileSystem.removeTree(staging.scratch)
        return marker
    }

    /// Deletes `<model-dir>/<name>`, marker and files together.
    func remove(_ name: ModelName) throws {
        let live = path(of: name)
        guard FileSystem.exists(live) else { return }
        let trash = stagingRoot + "/" + name.rawValue + "." + randomID() + ".trash"
        try FileSystem.rename(live, to: trash)
        try FileSystem.removeTree(trash)
    }
}

struct StoreError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}
