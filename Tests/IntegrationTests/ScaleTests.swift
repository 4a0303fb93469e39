import Foundation
import TestSupport
import Testing

@Suite(.serialized, .timeLimit(.minutes(3)))
struct ScaleTests {
    @Test("500 models against an instant fake server: all loaded, no deadlock, bounded threads")
    func fiveHundredModels() async throws {
        let temp = try TemporaryDirectory("agent-scale")
        let logs = try temp.subdirectory("logs")
        let source = try temp.subdirectory("artifact")
        try write("weights", to: source + "/weights.bin")
        let server = try await FixtureServer(fakeV2: true, logDirectory: logs)
        var agent: AgentProcess?
        try await withCleanup {
            try await fiveHundredModels(server: server, temp: temp, logs: logs, source: source) { agent = $0 }
        } cleanup: {
            await agent?.stop()
            await server.stop()
        }
    }

    private func fiveHundredModels(
        server: FixtureServer, temp: TemporaryDirectory, logs: String, source: String,
        started: (AgentProcess) -> Void
    ) async throws {
        let config = try ConfigDirectory(path: temp.path + "/configs")
        let names = (0..<500).map { String(format: "m%03d", $0) }
        try config.write(names.map { ConfigDirectory.Entry($0, source) })

        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL, logDirectory: logs)
        started(agent)
        var maxThreads = 0
        try await eventually("500 models to load", timeout: .seconds(120), interval: .milliseconds(200)) {
            maxThreads = max(maxThreads, agent.process.threadCount)
            let models = try await agent.models()
            return models.count == 500 && models.allSatisfy { $0.state == "Loaded" }
        }
        #expect(await agent.isReady())
        let loads = try await server.operations().filter { $0.op == "load" }
        #expect(loads.count == 500)
        #expect(Set(loads.map(\.model)) == Set(names))
        // Lanes (16 data + 6 control), the status server, the watcher and the Swift and
        // Dispatch pools; nothing grows with the model count.
        #expect(maxThreads < 64, "peak thread count \(maxThreads)")

        // And all of them go away again.
        try config.write(raw: "[]")
        try await eventually("500 models to be removed", timeout: .seconds(120), interval: .milliseconds(200)) {
            try await agent.models().isEmpty
        }
        #expect(try await server.operations().filter { $0.op == "unload" }.count == 500)
        #expect(contents(of: temp.path + "/models") == [".model-agent.lock", ".staging"])
    }
}
