/// Where one download is assembled before it becomes visible. `root` is what gets
/// renamed into place; `scratch` holds temporary files (archives before extraction) and
/// is deleted with it. Both live on the model directory's filesystem.
struct StagingDirectory: Sendable {
    let root: String
    let scratch: String

    init(root: String, scratch: String) {
        self.root = root
        self.scratch = scratch
    }

    /// The absolute path for `relative`, checked to stay inside `root`.
    func path(for relative: String) throws -> String {
        let clean = try RelativePath.normalize(relative)
        if !clean.contains("/") && MarkerFile.isMarkerName(clean) {
            throw UnsafePath(path: relative, reason: "the name is reserved for the agent's completion marker")
        }
        return root + "/" + clean
    }

    /// Creates (or truncates) the file for `relative`, with its parent directories.
    func createFile(_ relative: String) throws -> OpenFile {
        try OpenFile(creating: try preparePath(relative))
    }

    /// The checked path for `relative`, with its parent directories created.
    func preparePath(_ relative: String) throws -> String {
        let path = try path(for: relative)
        try FileSystem.makeDirectories(FileSystem.parentPath(path))
        if FileSystem.kind(path) == .directory {
            throw UnsafePath(path: relative, reason: "a directory of that name already exists")
        }
        return path
    }

    func makeDirectory(_ relative: String) throws {
        try FileSystem.makeDirectories(try path(for: relative))
    }

    func scratchFile(_ name: String) throws -> String {
        try FileSystem.makeDirectories(scratch)
        return scratch + "/" + name
    }

    func discard() {
        try? FileSystem.removeTree(root)
        try? FileSystem.removeTree(scratch)
    }
}
