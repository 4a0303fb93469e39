import Foundation
import TestSupport

/// One scenario's world: a model dir served by a real MLServer, reached through a
/// recording proxy (so every load/unload the agent sends is counted, and faults can be
/// injected), an HTTP file server with the iris artifacts, and a config dir.
final class MLServerHarness: @unchecked Sendable {
    let temp: TemporaryDirectory
    let modelDir: String
    let logs: String
    let config: ConfigDirectory
    let files: FixtureServer
    private(set) var mlserver: MLServerProcess
    let proxy: FixtureServer
    private(set) var agents: [AgentProcess] = []

    init(configStyle: ConfigDirectory.Style = .kubelet) async throws {
        temp = try TemporaryDirectory("agent-mlserver")
        modelDir = try temp.subdirectory("models")
        logs = try temp.subdirectory("logs")
        config = try ConfigDirectory(path: temp.path + "/configs", style: configStyle)
        files = try await FixtureServer(root: (try IrisArtifacts.root), logDirectory: logs)
        mlserver = try await MLServerProcess(repository: modelDir, logDirectory: logs)
        proxy = try await FixtureServer(upstream: mlserver.baseURL, logDirectory: logs)
    }

    /// Runs `body` in a fresh harness and stops every process it started before returning,
    /// whether `body` succeeds or throws, so no server outlives its test.
    static func run(
        configStyle: ConfigDirectory.Style = .kubelet, _ body: (MLServerHarness) async throws -> Void
    ) async throws {
        let harness = try await MLServerHarness(configStyle: configStyle)
        do {
            try await body(harness)
        } catch {
            await harness.shutdown()
            throw error
        }
        await harness.shutdown()
    }

    func url(_ file: String) -> String { files.url(file: file) }

    /// Replaces MLServer with a fresh process on the same port: it has lost every model.
    func restartMLServer() async throws {
        await mlserver.stop()
        mlserver = try await MLServerProcess(
            repository: modelDir, logDirectory: logs, port: mlserver.port, grpcPort: mlserver.grpcPort)
    }

    func startAgent(_ arguments: [String] = AgentProcess.quickRetries) async throws -> AgentProcess {
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: modelDir, serverURL: proxy.baseURL, arguments: arguments,
            logDirectory: logs)
        agents.append(agent)
        return agent
    }

    /// Files and directories in the model dir, without MLServer's settings.json.
    func modelDirEntries() -> [String] {
        contents(of: modelDir).filter { $0 != "settings.json" && $0 != ".model-agent.lock" }
    }

    func markers(of model: String) -> [String] {
        contents(of: modelDir + "/" + model).filter { $0.hasPrefix("SUCCESS.") }
    }

    func stagingEntries() -> [String] { contents(of: modelDir + "/.staging") }

    func shutdown() async {
        for agent in agents { await agent.stop() }
        await proxy.stop()
        await files.stop()
        await mlserver.stop()
    }
}
