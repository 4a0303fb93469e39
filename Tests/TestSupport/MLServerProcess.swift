import Foundation

/// A real MLServer 1.7.1 serving `repository` on an ephemeral loopback port, with
/// startup loading off so that only the agent decides what is loaded.
public final class MLServerProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    /// KServe V2 gRPC (h2c).
    public let grpcPort: Int
    public let repository: String
    private let logDirectory: String
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public init(repository: String, logDirectory: String, port: Int? = nil, grpcPort: Int? = nil) async throws {
        self.repository = repository
        self.logDirectory = logDirectory
        self.port = try port ?? freePort()
        self.grpcPort = try grpcPort ?? freePort()
        let settings = """
            {"debug": false, "load_models_at_startup": false, "host": "127.0.0.1", "http_port": \(self.port),
             "grpc_port": \(self.grpcPort), "metrics_port": 0, "parallel_workers": 0,
             "grpc_max_message_length": 104857600}
            """
        try write(settings, to: repository + "/settings.json")
        process = try ChildProcess(
            name: "mlserver", executable: try TestPaths.venvTool("mlserver", "mlserver"),
            arguments: ["start", repository],
            logPath: logDirectory + "/mlserver-\(self.port)-\(UUID().uuidString.prefix(4)).log")
        try await eventually("MLServer to be ready", timeout: .seconds(60)) {
            guard self.process.isRunning else {
                throw TestSetupError("MLServer exited:\n\(self.process.output.suffix(3000))")
            }
            return (try? await TestHTTP.get("\(self.baseURL)/v2/health/ready").status) == 200
                && isListening(self.grpcPort)
        }
    }

    public func isModelReady(_ model: String) async -> Bool {
        (try? await TestHTTP.get("\(baseURL)/v2/models/\(model)/ready").status) == 200
    }

    /// Classifies two iris flowers (a setosa and a virginica); a loaded model answers [0, 2].
    /// `via`: another base URL to send the request to (the agent's proxied port).
    public func infer(_ model: String, via base: String? = nil) async throws -> [Int] {
        let body = """
            {"inputs":[{"name":"predict","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}]}
            """
        let response = try await TestHTTP.post("\(base ?? baseURL)/v2/models/\(model)/infer", json: body)
        guard response.status == 200 else {
            throw TestSetupError("infer \(model): \(response.status) \(response.text)")
        }
        struct Output: Decodable { let data: [Int] }
        struct Answer: Decodable { let outputs: [Output] }
        return try response.json(Answer.self).outputs.first?.data ?? []
    }

    /// ModelInfer calls for the iris input over gRPC (grpcio, `calls` at once over one
    /// HTTP/2 connection) to `target` (host:port): the classes of each answered call, and
    /// the gRPC status names of the failed ones. `pairs`: the input's two flowers repeated
    /// (16 bytes of request and 8 of answer per flower); an answer is [0, 2] when every
    /// pair was classified right.
    public func grpcInfer(_ model: String, target: String, calls: Int = 1, pairs: Int = 1) async throws -> (
        ok: [[Int]], errors: [String]
    ) {
        let python = try TestPaths.venvTool("mlserver", "python")
        let script = TestPaths.repositoryRoot + "/Tests/Fixtures/grpc_infer.py"
        let (status, output) = try await runShell(
            "'\(python)' '\(script)' \(target) \(model) --calls \(calls) --pairs \(pairs)", in: logDirectory,
            timeout: .seconds(120))
        guard status == 0 else { throw TestSetupError("grpc_infer.py failed (\(status)):\n\(output)") }
        struct Answer: Decodable {
            let ok: [[Int]]
            let errors: [String]
        }
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw TestSetupError("grpc_infer.py printed no result:\n\(output)")
        }
        let answer = try JSONDecoder().decode(Answer.self, from: Data(line.utf8))
        return (answer.ok, answer.errors)
    }

    public func stop() async { await process.stop() }
}
