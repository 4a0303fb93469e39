import Foundation

/// Tests/Fixtures/fixture_server.py: static files with injectable faults, an instant
/// fake V2 server, or a recording proxy in front of a real model server.
public final class FixtureServer: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public struct LogEntry: Decodable, Sendable {
        public let method: String
        public let path: String
        public let status: Int
        public let range: String?
        public let model: String?
        public let op: String?
        public let authorization: String?
        public let xTestToken: String?
        public let ifMatch: String?
        public let securityToken: String?
        public let injected: Bool?
        public let tunnel: Bool?
        /// When the answer started, in seconds since the epoch.
        public let time: Double

        enum CodingKeys: String, CodingKey {
            case method, path, status, range, model, op, authorization, injected, tunnel, time
            case xTestToken = "x-test-token"
            case ifMatch = "if-match"
            case securityToken = "x-amz-security-token"
        }
    }

    public init(
        root: String? = nil, fakeV2: Bool = false, upstream: String? = nil, port: Int = 0, logDirectory: String
    ) async throws {
        var arguments = [TestPaths.fixtures + "/fixture_server.py", "--port", String(port)]
        if let root { arguments += ["--root", root] }
        if fakeV2 { arguments.append("--v2") }
        if let upstream { arguments += ["--upstream", upstream] }
        let python = try TestPaths.venvTool("tools", "python3")
        process = try ChildProcess(
            name: "fixture", executable: python, arguments: arguments,
            logPath: logDirectory + "/fixture-\(UUID().uuidString.prefix(6)).log")
        self.port = try await process.waitForPort()
    }

    public func url(file: String) -> String { "\(baseURL)/files/\(file)" }

    /// Adds fault rules, e.g. `["path": "/files/a.tgz", "status": 500, "times": 1]`.
    public func addRules(_ rules: [[String: Any]]) async throws {
        let data = try JSONSerialization.data(withJSONObject: rules)
        _ = try await TestHTTP.request("POST", "\(baseURL)/_control/rules", body: data)
    }

    public func clearRules() async throws {
        _ = try await TestHTTP.request("DELETE", "\(baseURL)/_control/rules")
    }

    public func log() async throws -> [LogEntry] {
        try await TestHTTP.get("\(baseURL)/_control/log").json([LogEntry].self)
    }

    public func clearLog() async throws {
        _ = try await TestHTTP.request("DELETE", "\(baseURL)/_control/log")
    }

    /// Model repository calls seen: (op, model) in order, e.g. ("load", "iris-a").
    public func operations() async throws -> [(op: String, model: String)] {
        try await log().compactMap { entry in
            guard let op = entry.op, let model = entry.model, op == "load" || op == "unload" else { return nil }
            return (op, model)
        }
    }

    public func count(_ op: String, _ model: String) async throws -> Int {
        try await operations().filter { $0.op == op && $0.model == model }.count
    }

    public func stop() async { await process.stop() }
}
