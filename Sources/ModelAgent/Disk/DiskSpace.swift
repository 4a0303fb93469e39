/// Refuses a download that cannot fit, before the first byte: the listed size plus
/// headroom (2%, at least 64 MiB) must be free on the model directory's filesystem.
public enum DiskSpace {
    public static func ensureRoom(for bytes: Int64, at path: String) throws {
        let available = try FileSystem.availableBytes(path)
        let needed = bytes + max(64 << 20, bytes / 50)
        if available < needed {
            throw InsufficientDiskSpace(path: path, needed: needed, available: available)
        }
    }
}

public struct InsufficientDiskSpace: Error, RetryClassifying, CustomStringConvertible {
    public let path: String
    public let needed: Int64
    public let available: Int64
    /// Space may be freed later (other models removed), so retrying with backoff is right.
    public var isTransient: Bool { true }
    public var description: String {
        "not enough disk space under \(path): the model needs \(needed) bytes with headroom, \(available) are free"
    }
}
