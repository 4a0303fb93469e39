import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A request that stays in flight: its head and part of its body are sent to 127.0.0.1:`port`
/// and the connection is held open until `abandon`, which closes it (the client gives up).
public final class OpenRequest: Sendable {
    private let descriptor: Mutex<Int32>

    /// `path`: the request target; `declaredLength` more than what is sent, so the
    /// request cannot end.
    public init(port: Int, path: String, declaredLength: Int = 1 << 20) throws {
        let fd = try connectLoopback(port: port)
        let head = Array(
            "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(declaredLength)\r\n\r\n{"
                .utf8)
        let sent = head.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == head.count else {
            close(fd)
            throw TestSetupError("send: \(errno)")
        }
        descriptor = Mutex(fd)
    }

    public func abandon() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { abandon() }
}
