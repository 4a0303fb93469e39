/// Refuses a download that cannot fit, before the first byte: the listed size plus
/// headroom must be free on the model directory's filesystem. The headroom is 2 % of
/// the size with a floor of 1 MiB, so a small model fits a small volume.
enum DiskSpace {
    static func headroom(for bytes: Int64) -> Int64 { max(1 << 20, bytes / 50) }

    /// What must stay free when the size is not known up front: 2 % of what is free now.
    static func headroom(forAvailable available: Int64) -> Int64 { max(1 << 20, available / 50) }

    /// Also keeps the floor every writer leaves free (`FileSystem.Volume.floor`), so a
    /// download that passes this check is never stopped by that floor halfway.
    static func ensureRoom(for bytes: Int64, at path: String) throws {
        let volume = try FileSystem.volume(path)
        let (needed, overflow) = bytes.addingReportingOverflow(max(headroom(for: bytes), volume.floor))
        if overflow || volume.available < needed {
            throw InsufficientDiskSpace(path: path, needed: overflow ? .max : needed, available: volume.available)
        }
    }

    /// The most a download of unknown size may write under `path`: free space less
    /// headroom and less the writers' floor.
    static func writableBytes(at path: String) throws -> Int64 {
        let volume = try FileSystem.volume(path)
        return max(0, volume.available - max(headroom(forAvailable: volume.available), volume.floor))
    }
}

/// The volume cannot hold a model. Retrying soon would only fill it again, so this needs
/// an operator (a larger volume, fewer models): the model is retried on the long backoff.
struct InsufficientDiskSpace: Error, RetryClassifying, CustomStringConvertible {
    let path: String
    let needed: Int64
    let available: Int64
    var what = "the model"
    var isTransient: Bool { false }
    var description: String {
        "not enough disk space under \(path): \(what) needs \(needed) bytes with headroom, \(available) are free; "
            + "free space or enlarge the volume"
    }
}

/// Upper bounds for what one download may write, from flags.
package struct DownloadLimits: Sendable, Equatable {
    /// One http(s) body (whose size a listing cannot announce) and what one archive
    /// expands to may not exceed this (`--max-download-size`).
    package var maxDownloadBytes: Int64 = 100 << 30
    /// An archive may expand to at most this many times its own size (`--max-archive-ratio`).
    package var maxArchiveRatio = 100

    init() {}
}
