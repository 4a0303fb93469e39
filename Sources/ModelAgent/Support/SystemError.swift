#if canImport(Glibc)
    import Glibc
#endif

/// A path that should hold a regular file holds something else (a FIFO, a device, a directory).
struct NotARegularFile: Error, RetryClassifying, CustomStringConvertible, Sendable {
    let path: String
    var isTransient: Bool { false }
    var description: String { "\(path) is not a regular file" }
}

/// A failed system call, with the path it was about and the errno text. A full volume
/// needs an operator, so it is not transient (the model retries on the long backoff).
struct SystemError: Error, RetryClassifying, CustomStringConvertible, Sendable {
    let operation: String
    let path: String
    let code: Int32

    init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
            + (isNoSpace ? " (the volume is full: free space or enlarge it)" : "")
    }

    var isTransient: Bool { !isNoSpace }

    var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}
