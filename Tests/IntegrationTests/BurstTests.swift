import Foundation
import TestSupport
import Testing

@testable import ModelAgent

/// Reference scenarios 11 and 16: a burst of changes to one model while others work, and
/// the global download limit.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BurstTests {
    @Test("twelve changes to one model during slow downloads coalesce to the last; nothing deadlocks")
    func burstOfChangesCoalesces() async throws {
        let temp = try TemporaryDirectory("burst")
        let files = try temp.subdirectory("files")
        for version in 0..<12 { try write("v\(version)", to: files + "/v\(version)/w.bin") }
        for other in 0..<20 { try write("o\(other)", to: files + "/o\(other)/w.bin") }
        let fileServer = try await FixtureServer(root: files, logDirectory: temp.path)
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        // Every download takes 0.6 s, so changes pile up while one is in flight.
        try await fileServer.addRules([["path_prefix": "/files/", "delay": 0.6]])
        let config = try ConfigDirectory(path: temp.path + "/configs")
        let others = (0..<20).map { ConfigDirectory.Entry("other-\($0)", fileServer.url(file: "o\($0)/w.bin")) }
        try config.write([ConfigDirectory.Entry("hot", fileServer.url(file: "v0/w.bin"))] + others)
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL, logDirectory: temp.path)
        for version in 1..<12 {
            try await Task.sleep(for: .milliseconds(250))
            try config.write([ConfigDirectory.Entry("hot", fileServer.url(file: "v\(version)/w.bin"))] + others)
        }
        try await eventually("every model to settle", timeout: .seconds(90)) {
            let models = try await agent.models()
            return models.count == 21 && models.allSatisfy { $0.state == "Loaded" }
                && models.first { $0.name == "hot" }?.storageUri == fileServer.url(file: "v11/w.bin")
        }
        #expect(try String(contentsOfFile: temp.path + "/models/hot/w.bin", encoding: .utf8) == "v11")
        let hot = try #require(try await agent.model("hot"))
        #expect(hot.loads < 12, "superseded versions were never loaded: \(hot.loads) loads for 12 wishes")
        let loads = try await server.operations().filter { $0.op == "load" && $0.model == "hot" }.count
        #expect(loads == hot.loads)
        await agent.stop()
        await server.stop()
        await fileServer.stop()
    }

    @Test("no more than --max-concurrent-downloads models download at once")
    func downloadLimitHolds() async throws {
        let temp = try TemporaryDirectory("limit")
        let files = try temp.subdirectory("files")
        for model in 0..<12 { try write("\(model)", to: files + "/m\(model)/w.bin") }
        let fileServer = try await FixtureServer(root: files, logDirectory: temp.path)
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        try await fileServer.addRules([["path_prefix": "/files/", "delay": 0.5]])
        let config = try ConfigDirectory(path: temp.path + "/configs")
        try config.write((0..<12).map { ConfigDirectory.Entry("m\($0)", fileServer.url(file: "m\($0)/w.bin")) })
        let started = ContinuousClock.now
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL,
            arguments: AgentProcess.quickRetries + ["--max-concurrent-downloads", "3"], logDirectory: temp.path)
        try await agent.waitForStates(Dictionary(uniqueKeysWithValues: (0..<12).map { ("m\($0)", "Loaded") }))
        // 12 downloads of 0.5 s, 3 at a time: at least 4 rounds.
        #expect(ContinuousClock.now - started >= .seconds(2))
        let answered = try await fileServer.log().map(\.time).sorted()
        #expect(answered.count == 12)
        for (index, time) in answered.enumerated() where index >= 3 {
            #expect(time - answered[index - 3] >= 0.4, "at most 3 downloads answered within one delay")
        }
        await agent.stop()
        await server.stop()
        await fileServer.stop()
    }

    @Test func theServerIsFoundThroughComponentPort() async throws {
        let temp = try TemporaryDirectory("port")
        let port = try freePort()
        let server = try await FixtureServer(fakeV2: true, port: port, logDirectory: temp.path)
        try write("w", to: temp.path + "/artifact/w.bin")
        let config = try ConfigDirectory(path: temp.path + "/configs")
        try config.write([ConfigDirectory.Entry("m", temp.path + "/artifact")])
        let child = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(),
            arguments: [
                "--enable-puller", "--config-dir", config.path, "--model-dir", temp.path + "/models",
                "--component-port", String(port), "--port", "0", "--admin-port", "0", "--drain-timeout", "0",
                "--bind-address", "127.0.0.1",
                "--local-source-root", temp.path,
            ],
            logPath: temp.path + "/agent.log")
        try await eventually("the load to reach the server on --component-port") {
            try await server.operations().contains { $0.op == "load" && $0.model == "m" }
        }
        await child.stop()
        await server.stop()
    }
}
