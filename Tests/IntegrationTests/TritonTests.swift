import Foundation
import TestSupport
import Testing

@testable import ModelAgent

/// The agent driving a real Triton 2.51 in explicit mode (python-backend models), through
/// the recording proxy.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct TritonTests {
    typealias Entry = ConfigDirectory.Entry

    final class Harness: @unchecked Sendable {
        let temp: TemporaryDirectory
        let modelDir: String
        let logs: String
        let sources: String
        let config: ConfigDirectory
        let triton: TritonProcess
        let proxy: FixtureServer
        var agent: AgentProcess?

        init() async throws {
            temp = try TemporaryDirectory("triton")
            modelDir = try temp.subdirectory("models")
            logs = try temp.subdirectory("logs")
            sources = try temp.subdirectory("sources")
            config = try ConfigDirectory(path: temp.path + "/configs")
            triton = try await TritonProcess(repository: modelDir, logDirectory: logs)
            proxy = try await FixtureServer(upstream: triton.baseURL, logDirectory: logs)
        }

        func source(_ name: String, increment: Double = 1, edit: (String) throws -> Void = { _ in }) throws -> String {
            try makeAddOne(at: sources + "/" + name, increment: increment, edit: edit)
            return sources + "/" + name
        }

        func startAgent(_ extra: [String] = [], environment: [String: String] = [:]) async throws -> AgentProcess {
            let agent = try await AgentProcess(
                configDir: config.path, modelDir: modelDir, serverURL: proxy.baseURL,
                arguments: AgentProcess.quickRetries + extra, environment: environment, logDirectory: logs)
            self.agent = agent
            return agent
        }

        func shutdown() async {
            await agent?.stop()
            await proxy.stop()
            await triton.stop()
        }
    }

    @Test("python models from a local path and from S3: loaded, answering, reloaded once, unloaded on removal")
    func loadsReloadsAndRemoves() async throws {
        let h = try await Harness()
        let rclone = try await RcloneS3Server(root: h.temp.path + "/buckets", logDirectory: h.logs)
        try makeAddOne(at: rclone.root + "/models/triton/add_one")
        try h.config.write([
            Entry("local-add", try h.source("v1"), framework: "triton"),
            Entry("s3-add", "s3://models/triton/add_one", framework: "triton"),
        ])
        let agent = try await h.startAgent(environment: rclone.environment())
        try await agent.waitForStates(["local-add": "Loaded", "s3-add": "Loaded"])
        #expect(try await h.triton.infer("local-add") == [2, 3, 4])
        #expect(try await h.triton.infer("s3-add") == [2, 3, 4])
        #expect(try await h.triton.infer("s3-add", via: agent.proxyURL) == [2, 3, 4])
        #expect(try agent.messages(containing: "(triton 2.51.0;").count == 1)
        // Triton's index lists the hidden staging dir, but nothing ever loads it in explicit mode.
        let index = try await TestHTTP.post(h.triton.baseURL + "/v2/repository/index", json: "{}").text
        #expect(index.contains(#"{"name":".staging"}"#))

        try await h.proxy.clearLog()
        try h.config.write([
            Entry("local-add", try h.source("v2", increment: 10), framework: "triton"),
            Entry("s3-add", "s3://models/triton/add_one", framework: "triton"),
        ])
        try await eventually("the new version to answer") { (try? await h.triton.infer("local-add")) == [11, 12, 13] }
        let reads = try await agent.configReads()
        try h.config.write([
            Entry("s3-add", "s3://models/triton/add_one", framework: "triton"),
            Entry("local-add", h.sources + "/v2", framework: "triton"),
        ])
        // A reordered array changes nothing: once the agent has read it, nothing may follow.
        try await eventually("the reordered file to be read") { try await agent.configReads() > reads }
        #expect(try await h.proxy.count("load", "local-add") == 1)
        #expect(try await h.proxy.count("unload", "local-add") == 1)

        try h.config.write([Entry("s3-add", "s3://models/triton/add_one", framework: "triton")])
        try await agent.waitForStates(["s3-add": "Loaded"])
        #expect(await !h.triton.isModelReady("local-add"))
        #expect(!exists(h.modelDir + "/local-add"))
        await rclone.stop()
        await h.shutdown()
    }

    @Test("a broken model.py fails with Triton's reason; the others load, even after Triton turns not-ready")
    func brokenModelDoesNotBlockOthers() async throws {
        let h = try await Harness()
        let broken = try h.source("broken") { dir in
            try write("def oops(:\n", to: dir + "/1/model.py")
        }
        try h.config.write([
            Entry("broken", broken, framework: "triton"), Entry("good", try h.source("good"), framework: "triton"),
        ])
        let agent = try await h.startAgent(["--retry-initial-delay", "30", "--retry-max-delay", "60"])
        try await agent.waitForStates(["broken": "Failed", "good": "Loaded"])
        let failed = try #require(try await agent.model("broken"))
        #expect(failed.lastError?.contains("SyntaxError") == true)
        #expect(failed.lastError?.contains("status 400") == true)
        #expect(try await h.proxy.count("load", "broken") == 1, "a broken model is not hammered with retries")

        // Triton's strict readiness now says 400, for every model: the agent gates on liveness.
        #expect(try await TestHTTP.get(h.triton.baseURL + "/v2/health/ready").status == 400)
        try h.config.write([
            Entry("broken", broken, framework: "triton"), Entry("good", h.sources + "/good", framework: "triton"),
            Entry("later", try h.source("later"), framework: "triton"),
        ])
        try await agent.waitForStates(["broken": "Failed", "good": "Loaded", "later": "Loaded"])
        #expect(try await h.triton.infer("later") == [2, 3, 4])
        await h.shutdown()
    }

    @Test("a config.pbtxt naming another model is fixed in staging; the source is untouched")
    func configNameIsRewritten() async throws {
        let h = try await Harness()
        let source = try h.source("misnamed") { dir in
            let config = try String(contentsOfFile: dir + "/config.pbtxt", encoding: .utf8)
            try write(
                config.replacingOccurrences(of: #"name: "add_one""#, with: #"name: "something_else""#),
                to: dir + "/config.pbtxt")
        }
        try h.config.write([Entry("renamed", source, framework: "triton")])
        let agent = try await h.startAgent()
        try await agent.waitForStates(["renamed": "Loaded"])
        #expect(try await h.triton.infer("renamed") == [2, 3, 4])
        let staged = try String(contentsOfFile: h.modelDir + "/renamed/config.pbtxt", encoding: .utf8)
        #expect(staged.hasPrefix(#"name: "renamed""#))
        #expect(staged.contains(#"name: "INPUT0""#), "nested names are left alone")
        #expect(try String(contentsOfFile: source + "/config.pbtxt", encoding: .utf8).contains("something_else"))
        await h.shutdown()
    }

    @Test("artifacts Triton cannot serve are refused before any load: no version dir, no model.py")
    func unservableLayoutsAreRefused() async throws {
        let h = try await Harness()
        let flat = try h.source("flat") { dir in
            try FileManager.default.moveItem(atPath: dir + "/1/model.py", toPath: dir + "/model.py")
            try FileManager.default.removeItem(atPath: dir + "/1")
        }
        let noCode = try h.source("nocode") { dir in try FileManager.default.removeItem(atPath: dir + "/1/model.py") }
        try h.config.write([Entry("flat", flat, framework: "triton"), Entry("nocode", noCode, framework: "triton")])
        let agent = try await h.startAgent()
        try await agent.waitForStates(["flat": "Failed", "nocode": "Failed"])
        let reasons = Dictionary(uniqueKeysWithValues: try await agent.models().map { ($0.name, $0.lastError ?? "") })
        #expect(reasons["flat"]?.contains("no version directory") == true)
        #expect(reasons["nocode"]?.contains("has no model.py") == true)
        #expect(try await h.proxy.operations().isEmpty)
        #expect(!exists(h.modelDir + "/flat") && !exists(h.modelDir + "/nocode"))
        await h.shutdown()
    }

    @Test("a load that hangs times out, is reported, and frees its load slot")
    func hangingLoadTimesOut() async throws {
        let h = try await Harness()
        let slow = try h.source("slow") { dir in
            let code = try String(contentsOfFile: dir + "/1/model.py", encoding: .utf8)
            try write(
                code.replacingOccurrences(
                    of: "class TritonPythonModel:\n",
                    with:
                        "class TritonPythonModel:\n    def initialize(self, args):\n        import time\n        time.sleep(12)\n\n"
                ),
                to: dir + "/1/model.py")
        }
        try h.config.write([Entry("stuck", slow, framework: "triton")])
        let agent = try await h.startAgent([
            "--load-timeout", "3", "--max-concurrent-loads", "1", "--retry-initial-delay", "60", "--retry-max-delay",
            "60",
        ])
        try await eventually("the stuck load to be in flight") { try await h.proxy.count("load", "stuck") == 1 }
        // The only load slot is taken by a call that will not answer in time.
        try h.config.write([
            Entry("stuck", slow, framework: "triton"), Entry("waiting", try h.source("fast"), framework: "triton"),
        ])
        try await agent.waitForStates(["stuck": "Failed", "waiting": "Loaded"], timeout: .seconds(90))
        let stuck = try #require(try await agent.model("stuck"))
        #expect(stuck.lastError?.contains("did not answer within 3 s") == true, "\(stuck.lastError ?? "")")
        #expect(try await h.proxy.count("load", "stuck") == 1, "a timed-out load is not sent again at once")
        #expect(try await h.proxy.operations().map(\.model) == ["stuck", "waiting"])
        #expect(try await h.triton.infer("waiting") == [2, 3, 4])
        await h.shutdown()
    }

    /// t1, t2, t3 (adding 1, 2, 3) of 100Mi each, for the memory cache's tests.
    static func threeCachedModels(_ h: Harness) throws {
        try h.config.write([
            Entry("t1", try h.source("t1", increment: 1), framework: "triton", memory: "100Mi"),
            Entry("t2", try h.source("t2", increment: 2), framework: "triton", memory: "100Mi"),
            Entry("t3", try h.source("t3", increment: 3), framework: "triton", memory: "100Mi"),
        ])
    }

    @Test(
        "with --memory-capacity, Triton holds what fits; a request for a model on standby evicts the least recently used"
    )
    func memoryCacheLoadsOnDemand() async throws {
        let h = try await Harness()
        try Self.threeCachedModels(h)
        let agent = try await h.startAgent(["--memory-capacity", "200Mi"])
        try await agent.waitForStates(["t1": "Loaded", "t2": "Loaded", "t3": "Standby"], timeout: .seconds(90))
        #expect(await !h.triton.isModelReady("t3"))
        #expect(try await h.triton.infer("t1", via: agent.proxyURL) == [2, 3, 4])
        try await h.proxy.clearLog()
        // t2 is the least recently used now.
        #expect(try await h.triton.infer("t3", via: agent.proxyURL) == [4, 5, 6])
        #expect(try await h.proxy.operations().map { "\($0.op) \($0.model)" } == ["unload t2", "load t3"])
        #expect(await !h.triton.isModelReady("t2"))
        try await agent.waitForStates(["t1": "Loaded", "t2": "Standby", "t3": "Loaded"])
        // And back: t2 evicts t1, the least recently used.
        #expect(try await h.triton.infer("t2", via: agent.proxyURL) == [3, 4, 5])
        #expect(await !h.triton.isModelReady("t1"))
        #expect(await h.triton.isModelReady("t3"))
        await h.shutdown()
    }

    @Test("with a disk tier, Triton's evicted models leave the disk and are fetched again on request")
    func diskTierFetchesOnDemand() async throws {
        let h = try await Harness()
        try Self.threeCachedModels(h)
        let agent = try await h.startAgent(["--memory-capacity", "200Mi", "--disk-capacity", "1Ki"])
        try await agent.waitForStates(["t1": "Remote", "t2": "Remote", "t3": "Remote"], timeout: .seconds(90))
        #expect(!exists(h.modelDir + "/t1"))
        #expect(try await h.triton.infer("t1", via: agent.proxyURL) == [2, 3, 4])
        #expect(try await h.triton.infer("t2", via: agent.proxyURL) == [3, 4, 5])
        // t3 takes t1's place in memory; t1, now on standby, leaves the disk.
        #expect(try await h.triton.infer("t3", via: agent.proxyURL) == [4, 5, 6])
        try await agent.waitForStates(["t1": "Remote", "t2": "Loaded", "t3": "Loaded"])
        #expect(await !h.triton.isModelReady("t1"))
        #expect(!exists(h.modelDir + "/t1"))
        // And back: fetched again, loaded in t2's place.
        #expect(try await h.triton.infer("t1", via: agent.proxyURL) == [2, 3, 4])
        try await agent.waitForStates(["t1": "Loaded", "t2": "Remote", "t3": "Loaded"])
        #expect(try await agent.model("t1")?.downloads == 2)
        await h.shutdown()
    }
}

/// MLServer layout adaptation: settings generated from the framework, names rewritten.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct MLServerLayoutTests {
    @Test(
        "a bare model.joblib loads thanks to generated settings; a foreign name is rewritten; unknown frameworks fail")
    func settingsAreGeneratedOrFixed() async throws {
        let h = try await MLServerHarness()
        let renamed = try h.temp.subdirectory("renamed")
        try FileManager.default.copyItem(
            atPath: (try IrisArtifacts.directory) + "/model.joblib", toPath: renamed + "/model.joblib")
        try write(
            #"{"name": "someone-else", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib", "version": "v7"}}"#,
            to: renamed + "/model-settings.json")
        try h.config.write([
            ConfigDirectory.Entry("bare", h.url("iris/model.joblib"), framework: "sklearn"),
            ConfigDirectory.Entry("renamed", renamed, framework: "sklearn"),
            ConfigDirectory.Entry("mystery", h.url("iris/model.joblib"), framework: "pmml"),
        ])
        let agent = try await h.startAgent()
        try await agent.waitForStates(["bare": "Loaded", "renamed": "Loaded", "mystery": "Failed"])
        #expect(try await h.mlserver.infer("bare") == [0, 2])
        #expect(try await h.mlserver.infer("renamed") == [0, 2])
        let generated = try String(contentsOfFile: h.modelDir + "/bare/model-settings.json", encoding: .utf8)
        #expect(generated.contains(#""implementation" : "mlserver_sklearn.SKLearnModel""#))
        #expect(generated.contains(#""uri" : "./model.joblib""#) && generated.contains(#""name" : "bare""#))
        let rewritten = try String(contentsOfFile: h.modelDir + "/renamed/model-settings.json", encoding: .utf8)
        #expect(rewritten.contains(#""name" : "renamed""#) && rewritten.contains(#""version" : "v7""#))
        #expect(try String(contentsOfFile: renamed + "/model-settings.json", encoding: .utf8).contains("someone-else"))
        let mystery = try #require(try await agent.model("mystery"))
        #expect(mystery.lastError?.contains(#"framework "pmml" has no MLServer runtime"#) == true)
        #expect(try await h.proxy.count("load", "mystery") == 0)
        await h.shutdown()
    }
}
