#if canImport(Glibc)
    import Glibc
#endif

/// A path that should hold a regular file holds something else (a FIFO, a device, a directory).
public struct NotARegularFile: Error, RetryClassifying, CustomStringConvertible, Sendable {
    public let path: String
    public var isTransient: Bool { false }
    public var description: String { "\(path) is not a regular file" }
}

/// A failed system call, with the path it was about and the errno text. A full volume
/// needs an operator, so it is not transient (the model retries on the long backoff).
public struct SystemError: Error, RetryClassifying, CustomStringConvertible, Sendable {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
            + (isNoSpace ? " (the volume is full: free space or enlarge it)" : "")
    }

    public var isTransient: Bool { !isNoSpace }

    public var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}
