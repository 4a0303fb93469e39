import Foundation

/// Tests/Fixtures/proxy_upstream.py: an HTTP/1.1 upstream for the proxy tests whose slow
/// answers (event streams, held requests) move on only when the test opens their gates.
public final class ProxyUpstream: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public init(port: Int = 0, logDirectory: String) async throws {
        let python = try TestPaths.venvTool("tools", "python3")
        process = try ChildProcess(
            name: "proxy-upstream", executable: python,
            arguments: [TestPaths.fixtures + "/proxy_upstream.py", "--port", String(port)],
            logPath: logDirectory + "/upstream-\(UUID().uuidString.prefix(6)).log")
        self.port = try await process.waitForPort()
    }

    public func open(_ gate: String) async throws {
        _ = try await TestHTTP.request("POST", "\(baseURL)/_gate/\(gate)", body: Data())
    }

    /// Requests that have reached the gate `gate` so far.
    public func arrived(_ gate: String) async throws -> Int {
        struct Count: Decodable { let count: Int }
        return try await TestHTTP.get("\(baseURL)/_arrived/\(gate)").json(Count.self).count
    }

    public func stop() async { await process.stop() }
}

/// A shell command run to its end, for clients that stream (curl) and tools (sha256sum).
public func runShell(_ command: String, in directory: String, timeout: Duration = .seconds(300)) async throws -> (
    status: Int32, output: String
) {
    let child = try ChildProcess(
        name: "sh", executable: "/bin/sh", arguments: ["-c", command],
        logPath: directory + "/sh-\(UUID().uuidString.prefix(6)).log")
    let status = try await child.waitForExit(timeout: timeout)
    return (status, child.output)
}

/// Peak resident memory of a process (VmHWM), in bytes.
public func peakResidentBytes(of pid: pid_t) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
    return line?.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 * 1024 }
}
