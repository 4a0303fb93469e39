import Foundation
import Synchronization

/// A fresh directory under the system temp dir, removed on deinit.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(_ prefix: String = "model-agent-test") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func subdirectory(_ name: String) throws -> String {
        let sub = path + "/" + name
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        return sub
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

public func write(_ text: String, to path: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Runs `body`, then `cleanup` whether `body` threw or not: an async `defer`, so servers a
/// test started are stopped before the next test begins.
public func withCleanup(_ body: () async throws -> Void, cleanup: () async -> Void) async throws {
    do {
        try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
}

public func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

public func contents(of directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

private let usedPorts = Mutex<Set<Int>>([])

/// A TCP port for a server a test starts on purpose. Ports come from below the kernel's
/// ephemeral range: processes that bind port 0 (fixtures, the agent, MLServer's gRPC) only
/// get ports from that range, so they can never take this one before its server binds it.
/// No port is handed out twice in one test run.
public func freePort() throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
        .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
    let ephemeralStart = range?.first ?? 32768
    for _ in 0..<500 {
        let candidate = Int.random(in: 10000..<max(10001, ephemeralStart))
        let fresh = usedPorts.withLock { $0.insert(candidate).inserted }
        if fresh, canBind(candidate) { return candidate }
    }
    throw TestSetupError("no free port below \(ephemeralStart)")
}

private func canBind(_ port: Int) -> Bool {
    onLoopbackSocket(port) { bind($0, $1, $2) }
}

/// Whether something on 127.0.0.1 accepts TCP connections on `port`.
public func isListening(_ port: Int) -> Bool {
    onLoopbackSocket(port) { connect($0, $1, $2) }
}

/// Calls `operation` (bind or connect) with a new TCP socket and 127.0.0.1:`port`; true
/// when it returns 0. The socket is closed afterwards.
private func onLoopbackSocket(
    _ port: Int, _ operation: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32
) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    return onLoopbackAddress(port) { operation(fd, $0, $1) } == 0
}

private func onLoopbackAddress(_ port: Int, _ operation: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            operation($0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
}

/// A TCP connection to 127.0.0.1:`port`, for tests that speak raw bytes; the caller closes
/// the descriptor.
public func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSetupError("socket: \(errno)") }
    guard onLoopbackAddress(port, { connect(fd, $0, $1) }) == 0 else {
        let error = errno
        close(fd)
        throw TestSetupError("connect to 127.0.0.1:\(port): \(error)")
    }
    return fd
}

/// `exchangeOnLoopback`'s answer, as text.
public func exchangeTextOnLoopback(port: Int, _ request: String) throws -> String {
    String(decoding: try exchangeOnLoopback(port: port, request), as: UTF8.self)
}

/// Sends `request` as raw bytes to 127.0.0.1:`port` and returns everything received until
/// the server closes the connection; a read waits at most 30 s, so a server that never
/// answers or closes fails the test instead of blocking a test thread.
public func exchangeOnLoopback(port: Int, _ request: String) throws -> [UInt8] {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw TestSetupError("send: \(errno)") }
        sent += n
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n < 0 { throw TestSetupError("recv: \(errno)") }
        if n == 0 { return received }
        received.append(contentsOf: buffer[0..<n])
    }
}

/// Polls `condition` until it holds or `timeout` passes.
public func eventually(
    _ what: String, timeout: Duration = .seconds(60), interval: Duration = .milliseconds(100),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        // Read the clock before the check: a check that runs after the deadline (this task
        // may have waited long for a thread on a busy machine) still counts.
        let late = ContinuousClock.now >= deadline
        do {
            if try await condition() { return }
        } catch {
            lastError = error
        }
        if late { break }
        try await Task.sleep(for: interval)
    }
    throw TestSetupError("timed out waiting for \(what)" + (lastError.map { " (last error: \($0))" } ?? ""))
}
