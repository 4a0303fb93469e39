#if canImport(Glibc)
    import Glibc
#endif

/// A failed system call, with the path it was about and the errno text.
public struct SystemError: Error, CustomStringConvertible, Sendable {
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
    }

    public var isNoSpace: Bool { code == ENOSPC || code == EDQUOT }
}
