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
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw TestSetupError("connect to port \(port): \(errno)")
        }
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
