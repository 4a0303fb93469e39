import Foundation

/// Tests/Fixtures/h2_upstream.py: an h2c upstream (Python's h2 library) whose flow control,
/// resets and GOAWAY the test decides. It speaks only HTTP/2, so it is driven with
/// `curl --http2-prior-knowledge`.
public final class H2Upstream: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    private let logDirectory: String
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public init(logDirectory: String) async throws {
        self.logDirectory = logDirectory
        let python = try TestPaths.venvTool("tools", "python3")
        process = try ChildProcess(
            name: "h2-upstream", executable: python, arguments: [TestPaths.fixtures + "/h2_upstream.py"],
            logPath: logDirectory + "/h2-upstream-\(UUID().uuidString.prefix(6)).log")
        port = try await process.waitForPort()
    }

    public func open(_ gate: String) async throws {
        let opened = try await runShell(
            "curl -sS --http2-prior-knowledge -X POST \(baseURL)/_gate/\(gate)", in: logDirectory)
        guard opened.output.contains("opened") else { throw TestSetupError("gate \(gate): \(opened.output)") }
    }

    /// Requests that have reached the gate `gate` so far.
    public func arrived(_ gate: String) async throws -> Int {
        struct Count: Decodable { let arrived: Int }
        let answer = try await runShell(
            "curl -sS --http2-prior-knowledge \(baseURL)/_arrived/\(gate)", in: logDirectory)
        return try JSONDecoder().decode(Count.self, from: Data(answer.output.utf8)).arrived
    }

    public func stop() async { await process.stop() }
}
