import Foundation

/// The model-agent binary run as the sidecar would run, with its JSON logs captured.
public final class AgentProcess: @unchecked Sendable {
    public let process: ChildProcess
    /// The admin port: /v1/models, /metrics, /readyz, /livez.
    public let statusPort: Int
    public var statusURL: String { "http://127.0.0.1:\(statusPort)" }
    /// The proxied port (`--port`): inference traffic to the model server, and probes.
    public let proxyPort: Int
    public var proxyURL: String { "http://127.0.0.1:\(proxyPort)" }

    /// Fast retries so failure paths resolve within a test's time.
    public static let quickRetries = [
        "--retry-initial-delay", "0.2", "--retry-max-delay", "1", "--resync-interval", "0",
    ]

    /// Where tests keep local model sources (the agent reads only /mnt/pvc by default).
    public static let testSourceRoots = [FileManager.default.temporaryDirectory.path, TestPaths.repositoryRoot]

    /// `localSourceRoots` empty: the agent's default (/mnt/pvc).
    public init(
        configDir: String, modelDir: String, serverURL: String, arguments: [String] = AgentProcess.quickRetries,
        environment: [String: String] = [:], localSourceRoots: [String] = AgentProcess.testSourceRoots,
        logDirectory: String
    ) async throws {
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(),
            arguments: [
                "--enable-puller", "--config-dir", configDir, "--model-dir", modelDir, "--server-url", serverURL,
                // No quiet period unless a test asks for one (a later flag wins).
                "--port", "0", "--admin-port", "0", "--bind-address", "127.0.0.1", "--drain-timeout", "0",
            ] + localSourceRoots.flatMap { ["--local-source-root", $0] } + arguments,
            environment: env, logPath: logDirectory + "/agent-\(UUID().uuidString.prefix(6)).log")
        struct Started: Decodable { let port: Int }
        let admin = try await process.waitForLine(containing: "Starting admin server")
        statusPort = try JSONDecoder().decode(Started.self, from: Data(admin.utf8)).port
        let proxy = try await process.waitForLine(containing: "Starting agent http server")
        proxyPort = try JSONDecoder().decode(Started.self, from: Data(proxy.utf8)).port
    }

    public struct Model: Decodable, Sendable {
        public let name: String
        public let state: String
        public let storageUri: String
        public let failures: Int
        public let downloads: Int
        public let loads: Int
        public let unloads: Int
        public let lastError: String?
        public let diskHash: String?
        /// Files of the last download by the check they passed ("md5", "crc32c", "size", …).
        public let lastDownloadChecks: [String: Int]?
        public let inFlightRequests: Int?
        // The memory cache's figures (absent without --memory-capacity).
        public let memoryBytes: Int64?
        public let hits: Int?
        public let misses: Int?
        public let coldLoads: Int?
        public let evictions: Int?
        public let lastColdLoadMs: Int?
        public let onDisk: Bool?
        public let diskBytes: Int64?
        public let diskEvictions: Int?
    }

    public func models() async throws -> [Model] {
        try await TestHTTP.get("\(statusURL)/v1/models").json([Model].self)
    }

    public func model(_ name: String) async throws -> Model? {
        try await models().first { $0.name == name }
    }

    /// Reads of models.json that parsed (model_agent_config_reloads_total{result="applied"}):
    /// an event to wait for after a write that should change nothing.
    public func configReads() async throws -> Int {
        let text = try await TestHTTP.get("\(statusURL)/metrics").text
        let line = text.split(separator: "\n").first {
            $0.hasPrefix(#"model_agent_config_reloads_total{result="applied"}"#)
        }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Int(Double($0) ?? -1) } ?? 0
    }

    public func isReady() async -> Bool {
        (try? await TestHTTP.get("\(statusURL)/readyz").status) == 200
    }

    /// Waits until every named model is in `state` (and no other model is listed when
    /// `exactly` is set).
    public func waitForStates(
        _ expected: [String: String], exactly: Bool = true, timeout: Duration = .seconds(60)
    ) async throws {
        var seen: [String: String] = [:]
        do {
            try await eventually("models \(expected)", timeout: timeout) {
                let models = try await self.models()
                let states = Dictionary(uniqueKeysWithValues: models.map { ($0.name, $0.state) })
                seen = states
                if exactly && Set(states.keys) != Set(expected.keys) { return false }
                return expected.allSatisfy { states[$0.key] == $0.value }
            }
        } catch {
            // What a failed wait needs to be understood from a CI log alone.
            let tail = process.output.split(separator: "\n").suffix(25).joined(separator: "\n")
            throw TestSetupError("\(error); last seen \(seen); the agent's last log lines:\n\(tail)")
        }
    }

    public struct LogLine: Decodable, Sendable {
        public let level: String
        public let msg: String
        public let model: String?
        public let logger: String
        public let caller: String
        public let ts: Double
        /// A download's checks, "md5:2 crc32c:1" (on "Downloaded model" lines).
        public let checks: String?
        /// How long the step took, on lines that say so.
        public let duration_ms: Int?
    }

    /// The JSON log lines so far (lines that are not JSON fail the decode on purpose).
    public func logLines() throws -> [LogLine] {
        try process.output.split(separator: "\n").map { try JSONDecoder().decode(LogLine.self, from: Data($0.utf8)) }
    }

    public func messages(containing text: String) throws -> [String] {
        try logLines().map(\.msg).filter { $0.contains(text) }
    }

    @discardableResult
    public func stop() async -> Int32 { await process.stop() }
}
