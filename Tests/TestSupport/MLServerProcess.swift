import Foundation

/// A real MLServer 1.7.1 serving `repository` on an ephemeral loopback port, with
/// startup loading off so that only the agent decides what is loaded.
public final class MLServerProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public let repository: String
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public init(repository: String, logDirectory: String, port: Int? = nil) async throws {
        self.repository = repository
        self.port = try port ?? freePort()
        let settings = """
            {"debug": false, "load_models_at_startup": false, "host": "127.0.0.1", "http_port": \(self.port),
             "grpc_port": 0, "metrics_port": 0, "parallel_workers": 0}
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

    public func stop() async { await process.stop() }
}
