import Foundation

/// A real Triton 2.51 (CPU, from PyPI's nvidia-pytriton) in explicit model-control mode
/// on an ephemeral loopback port, serving `repository`. Stopped with SIGTERM, then
/// SIGKILL; the python-backend shared-memory regions it leaves in /dev/shm are removed.
public final class TritonProcess: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    private let shmBefore: Set<String>

    public init(repository: String, logDirectory: String) async throws {
        let venv = TestPaths.venvs + "/triton"
        let lib = venv + "/lib"
        let site = try FileManager.default.contentsOfDirectory(atPath: lib).first { $0.hasPrefix("python3") }
            .map { lib + "/" + $0 + "/site-packages/pytriton/tritonserver" }
        guard let server = site, FileManager.default.isExecutableFile(atPath: server + "/bin/tritonserver") else {
            throw TestSetupError("Triton is missing from \(venv); run scripts/setup-env")
        }
        shmBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
        port = try freePort()
        process = try ChildProcess(
            name: "tritonserver", executable: server + "/bin/tritonserver",
            arguments: [
                "--model-repository=\(repository)", "--model-control-mode=explicit",
                "--backend-directory=\(server)/backends", "--http-address=127.0.0.1", "--http-port=\(port)",
                "--allow-grpc=false", "--allow-metrics=false", "--disable-auto-complete-config",
                "--exit-timeout-secs=5",
            ],
            // The python backend's stub finds numpy through the python3 first on PATH.
            environment: ["PATH": venv + "/bin:/usr/bin:/bin", "HOME": NSTemporaryDirectory()],
            logPath: logDirectory + "/triton-\(port).log")
        try await eventually("Triton to be live", timeout: .seconds(60)) {
            guard self.process.isRunning else {
                throw TestSetupError("Triton exited:\n\(self.process.output.suffix(3000))")
            }
            return (try? await TestHTTP.get("\(self.baseURL)/v2/health/live").status) == 200
        }
    }

    public func isModelReady(_ model: String) async -> Bool {
        (try? await TestHTTP.get("\(baseURL)/v2/models/\(model)/ready").status) == 200
    }

    /// add_one-style inference: INPUT0 [1, 2, 3].
    /// `via`: another base URL to send the request to (the agent's proxied port).
    public func infer(_ model: String, via base: String? = nil) async throws -> [Double] {
        let body = #"{"inputs":[{"name":"INPUT0","shape":[3],"datatype":"FP32","data":[1,2,3]}]}"#
        let response = try await TestHTTP.post("\(base ?? baseURL)/v2/models/\(model)/infer", json: body)
        guard response.status == 200 else {
            throw TestSetupError("infer \(model): \(response.status) \(response.text)")
        }
        struct Output: Decodable { let data: [Double] }
        struct Answer: Decodable { let outputs: [Output] }
        return try response.json(Answer.self).outputs.first?.data ?? []
    }

    public func stop() async {
        await process.stop(grace: .seconds(10))
        let now = Set((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [])
        for region in now.subtracting(shmBefore) where region.hasPrefix("triton_python_backend_shm_region") {
            try? FileManager.default.removeItem(atPath: "/dev/shm/" + region)
        }
    }
}

/// Copies the add_one fixture to `destination`, with `increment` in model.py and
/// `edit` applied to the layout afterwards.
public func makeAddOne(at destination: String, increment: Double = 1, edit: (String) throws -> Void = { _ in }) throws {
    try? FileManager.default.removeItem(atPath: destination)
    try FileManager.default.createDirectory(
        atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: TestPaths.fixtures + "/triton/add_one", toPath: destination)
    let model = destination + "/1/model.py"
    let text = try String(contentsOfFile: model, encoding: .utf8)
        .replacingOccurrences(of: "INCREMENT = 1.0", with: "INCREMENT = \(increment)")
    try write(text, to: model)
    try edit(destination)
}
