import Foundation
import TestSupport
import Testing

@testable import ModelAgent

/// The agent core end to end: models.json → download → marker → load into a real
/// MLServer 1.7.1, through config changes and restarts (reference scenarios 1–11, 17).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AgentLifecycleTests {
    typealias Entry = ConfigDirectory.Entry

    @Test("cold start with three models: all downloaded, marked, loaded and answering")
    func coldStart() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([
                Entry("iris-a", h.url("iris.tar.gz")),
                Entry("iris-b", h.url("iris.zip")),
                Entry("iris-c", (try IrisArtifacts.directory)),
            ])
            let agent = try await h.startAgent()
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded", "iris-c": "Loaded"])
            for name in ["iris-a", "iris-b", "iris-c"] {
                #expect(try await h.mlserver.infer(name) == [0, 2])
                // The same request through the agent's proxied port, as queue-proxy sends it.
                #expect(try await h.mlserver.infer(name, via: agent.proxyURL) == [0, 2])
                #expect(h.markers(of: name).count == 1)
                #expect(contents(of: h.modelDir + "/" + name).contains("model.joblib"))
            }
            #expect(await agent.isReady())
            // KServe's V1 model path belongs to the server (MLServer has no V1: its 404).
            let v1 = try await TestHTTP.get(agent.proxyURL + "/v1/models/iris-a")
            #expect(v1.status == 404 && !v1.text.contains("storageUri"), "\(v1.text)")
            #expect(try await h.proxy.operations().map(\.op) == ["load", "load", "load"])
            #expect(h.stagingEntries().isEmpty)
            #expect(try agent.messages(containing: "Successfully loaded model").count == 3)
            #expect(try agent.messages(containing: "Downloading model from").count == 3)
        }
    }

    @Test("gRPC inference crosses the proxied port over h2c, many calls on one connection, counted per model")
    func grpcThroughTheProxy() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent(
                AgentProcess.quickRetries + ["--h2c-server-url", "http://127.0.0.1:\(h.mlserver.grpcPort)"])
            try await agent.waitForStates(["iris": "Loaded"])
            let target = "127.0.0.1:\(agent.proxyPort)"
            let calls = try await h.mlserver.grpcInfer("iris", target: target, calls: 24)
            #expect(calls.errors.isEmpty && calls.ok.count == 24, "\(calls)")
            #expect(calls.ok.allSatisfy { $0 == [0, 2] }, "\(calls.ok)")
            // Two calls of 32 MB each, with 16 MB answers, far past any flow-control window:
            // streamed, not buffered.
            let big = try await h.mlserver.grpcInfer("iris", target: target, calls: 2, pairs: 1_000_000)
            #expect(big.errors.isEmpty && big.ok == [[0, 2], [0, 2]], "\(big)")
            let peak = peakResidentBytes(of: agent.process.pid) ?? .max
            #expect(peak < 64 << 20, "peak RSS \(peak >> 20) MiB")
            // The server's own gRPC errors come back as they are.
            let absent = try await h.mlserver.grpcInfer("absent", target: target)
            #expect(absent.ok.isEmpty && absent.errors == ["NOT_FOUND"], "\(absent)")
            // HTTP/1.1 on the same port still goes to the REST port.
            #expect(try await h.mlserver.infer("iris", via: agent.proxyURL) == [0, 2])
            // Probes over HTTP/2 are answered by the agent, as over HTTP/1.1.
            let probe = try await runShell(
                "curl -sS -i --http2-prior-knowledge -A kube-probe/1.30 \(agent.proxyURL)/", in: h.logs)
            #expect(probe.output.hasPrefix("HTTP/2 200") && probe.output.hasSuffix("queue"), "\(probe.output)")

            let metrics = try await TestHTTP.get(agent.statusURL + "/metrics").text
            // The model is named inside the gRPC message: 26 calls and the REST one.
            #expect(metrics.contains(#"model_agent_proxy_requests_total{model="iris"} 27"#), "\(metrics)")
            #expect(metrics.contains(#"model_agent_proxy_errors_total{model="iris"} 0"#))
            #expect(metrics.contains(#"model_agent_proxy_requests_total{model=""} 1"#))
            let status = try await TestHTTP.get(agent.statusURL + "/v1/models/iris").text
            #expect(status.contains(#""inFlightRequests":0"#) && status.contains(#""lastRequest":"#), "\(status)")
        }
    }

    @Test("a ..data swap that adds one model and removes another sends exactly those two operations")
    func dataSwap() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-b", h.url("iris.zip"))])
            let agent = try await h.startAgent()
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])
            try await h.proxy.clearLog()

            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-c", h.url("iris.tgz"))])
            try await agent.waitForStates(["iris-a": "Loaded", "iris-c": "Loaded"])
            try await eventually("iris-b's directory to go") { !exists(h.modelDir + "/iris-b") }

            let ops = try await h.proxy.operations()
            #expect(ops.count == 2)
            #expect(ops.contains { $0.op == "load" && $0.model == "iris-c" })
            #expect(ops.contains { $0.op == "unload" && $0.model == "iris-b" })
            #expect(await !h.mlserver.isModelReady("iris-b"))
            #expect(try await h.mlserver.infer("iris-c") == [0, 2])
            #expect(try await agent.model("iris-a")?.loads == 1)
        }
    }

    @Test("a spec change reloads once, and three unrelated updates afterwards do not reload it again")
    func specChangeReloadsOnce() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent()
            try await agent.waitForStates(["iris-a": "Loaded"])
            try await h.proxy.clearLog()

            try h.config.write([Entry("iris-a", h.url("iris.zip"))])
            try await eventually("iris-a to be reloaded from the zip") {
                let a = try await agent.model("iris-a")
                return a?.state == "Loaded" && a?.downloads == 2
            }
            // Unrelated updates: another model comes, the array is reordered, it goes.
            try h.config.write([Entry("iris-a", h.url("iris.zip")), Entry("iris-d", h.url("iris.tgz"))])
            try await agent.waitForStates(["iris-a": "Loaded", "iris-d": "Loaded"])
            let reads = try await agent.configReads()
            try h.config.write([Entry("iris-d", h.url("iris.tgz")), Entry("iris-a", h.url("iris.zip"))])
            try await eventually("the reordered file to be read") { try await agent.configReads() > reads }
            try h.config.write([Entry("iris-a", h.url("iris.zip"))])
            try await agent.waitForStates(["iris-a": "Loaded"])

            #expect(try await h.proxy.count("load", "iris-a") == 1)
            #expect(try await h.proxy.count("unload", "iris-a") == 1)
            let a = try #require(try await agent.model("iris-a"))
            #expect(a.downloads == 2 && a.loads == 2 && a.unloads == 1)
            #expect(a.storageUri == h.url("iris.zip"))
            #expect(try await h.mlserver.infer("iris-a") == [0, 2])
        }
    }

    @Test("a config change made while startup downloads run is applied")
    func changeDuringStartup() async throws {
        try await MLServerHarness.run { h in
            try await h.files.addRules([["path": "/files/iris.tar.gz", "delay": 3, "times": 1]])
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent()
            #expect(try await agent.model("iris-a")?.state != "Loaded")
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-b", h.url("iris.zip"))])
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])
            #expect(try await h.mlserver.infer("iris-b") == [0, 2])
        }
    }

    @Test("in-place writes are seen; malformed JSON keeps the last good state; null and [] remove everything")
    func inPlaceMalformedNullEmpty() async throws {
        try await MLServerHarness.run(configStyle: .plain) { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent()
            try await agent.waitForStates(["iris-a": "Loaded"])

            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-b", h.url("iris.zip"))])
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])

            try await h.proxy.clearLog()
            try h.config.write(raw: #"[{"modelName": "iris-a", "modelSpec": {"#)
            // The error is logged by the read that refused the file, and a refused read applies
            // nothing: once it is logged, the read is over and there is nothing to wait for.
            try await eventually("the parse error to be logged") {
                try !agent.messages(containing: "Failed to sync model config file").isEmpty
            }
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])
            #expect(try await h.proxy.operations().isEmpty)

            try h.config.write(raw: "null")
            try await agent.waitForStates([:])
            #expect(h.modelDirEntries() == [".staging"])
            #expect(await !h.mlserver.isModelReady("iris-a"))

            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            try await agent.waitForStates(["iris-a": "Loaded"])
            try h.config.write(raw: "[]")
            try await agent.waitForStates([:])
            #expect(h.modelDirEntries() == [".staging"])
            #expect(await !h.mlserver.isModelReady("iris-a"))
        }
    }

    @Test("a warm restart neither downloads nor loads; it loads only what the server lost")
    func warmRestart() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let first = try await h.startAgent()
            try await first.waitForStates(["iris-a": "Loaded"])
            #expect(await first.stop() == 0)
            try await h.files.clearLog()
            try await h.proxy.clearLog()

            let second = try await h.startAgent()
            try await second.waitForStates(["iris-a": "Loaded"])
            #expect(try await h.files.log().isEmpty)
            #expect(try await h.proxy.operations().isEmpty)
            #expect(try await second.model("iris-a")?.downloads == 0)
            await second.stop()

            try await h.restartMLServer()
            let third = try await h.startAgent()
            try await third.waitForStates(["iris-a": "Loaded"])
            #expect(try await h.files.log().isEmpty)
            #expect(try await h.proxy.operations().map(\.op) == ["load"])
            #expect(try await h.mlserver.infer("iris-a") == [0, 2])
        }
    }

    @Test("a model server that restarts under a running agent gets its models back at the next resync")
    func serverRestartIsNoticed() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent(["--resync-interval", "1", "--retry-initial-delay", "0.2"])
            try await agent.waitForStates(["iris-a": "Loaded"])
            try await h.files.clearLog()
            try await h.proxy.clearLog()
            // The fresh server has lost the model; the agent's next resync notices (how soon is
            // not asserted: the resync runs every second and may win any race with the test).
            try await h.restartMLServer()
            try await eventually("iris-a to be loaded again", timeout: .seconds(90)) {
                let reloaded = try await h.proxy.count("load", "iris-a") == 1
                return reloaded ? await h.mlserver.isModelReady("iris-a") : false
            }
            #expect(try await h.mlserver.infer("iris-a") == [0, 2])
            #expect(try await agent.model("iris-a")?.loads == 2)
            #expect(try await h.files.log().isEmpty, "reloaded from disk, not downloaded again")
            #expect(try !agent.messages(containing: "is no longer loaded in the model server").isEmpty)
        }
    }

    @Test("a restart with a stale and a changed model on disk completes startup and converges")
    func restartWithStaleAndChanged() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-b", h.url("iris.zip"))])
            let first = try await h.startAgent()
            try await first.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])
            await first.stop()
            try await h.proxy.clearLog()

            let changed = ModelSpec(
                storageUri: h.url("iris.zip"), framework: "sklearn", memory: try MemoryQuantity(parsing: "256Mi"))
            try h.config.write([Entry("iris-a", h.url("iris.zip")), Entry("iris-c", h.url("iris.tgz"))])
            let second = try await h.startAgent()
            try await eventually("startup to complete") { await second.isReady() }
            try await second.waitForStates(["iris-a": "Loaded", "iris-c": "Loaded"])
            try await eventually("iris-b to be removed") { !exists(h.modelDir + "/iris-b") }
            #expect(h.markers(of: "iris-a") == [MarkerFile.name(for: changed)])
            #expect(await !h.mlserver.isModelReady("iris-b"))
            #expect(try await h.proxy.count("unload", "iris-b") == 1)
            #expect(try await h.proxy.count("load", "iris-a") == 1)
            #expect(try await h.proxy.count("load", "iris-c") == 1)
            #expect(h.modelDirEntries() == [".staging", "iris-a", "iris-c"])
        }
    }

    @Test("a download failing mid-way leaves no marker and no partial files, and is retried")
    func failedDownloadIsCleanAndRetried() async throws {
        try await MLServerHarness.run { h in
            try await h.files.addRules([["path": "/files/iris.tar.gz", "truncate_after": 200, "times": 2]])
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent([
                "--download-attempts", "2", "--retry-initial-delay", "3", "--retry-max-delay", "3", "--resync-interval",
                "0",
            ])
            try await eventually("iris-a to fail", timeout: .seconds(90), interval: .milliseconds(50)) {
                try await agent.model("iris-a")?.state == "Failed"
            }
            let failed = try #require(try await agent.model("iris-a"))
            #expect(failed.lastError?.contains("download of \(h.url("iris.tar.gz")) failed after 2 attempts") == true)
            #expect(!exists(h.modelDir + "/iris-a"))
            #expect(h.stagingEntries().isEmpty)
            #expect(await !h.mlserver.isModelReady("iris-a"))

            try await agent.waitForStates(["iris-a": "Loaded"])
            #expect(h.markers(of: "iris-a").count == 1)
            #expect(try await h.mlserver.infer("iris-a") == [0, 2])
            let gets = try await h.files.log().filter { $0.path == "/files/iris.tar.gz" }
            #expect(gets.count == 3)
        }
    }

    @Test("a load answered 500 then 200 is retried; a 4xx load error is reported with the server's reason")
    func loadErrors() async throws {
        try await MLServerHarness.run { h in
            try await h.proxy.addRules([
                [
                    "method": "POST", "path": "/v2/repository/models/iris-a/load", "status": 500,
                    "body": "Internal Server Error", "times": 1,
                ],
                [
                    "method": "POST", "path": "/v2/repository/models/iris-b/load", "status": 422,
                    "body": #"{"error":"Invalid URI specified for model iris-b"}"#, "content_type": "application/json",
                    "times": 1,
                ],
            ])
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz")), Entry("iris-b", h.url("iris.zip"))])
            let agent = try await h.startAgent([
                "--retry-initial-delay", "2", "--retry-max-delay", "2", "--resync-interval", "0",
            ])
            try await eventually("iris-b to fail with the server's reason") {
                let b = try await agent.model("iris-b")
                return b?.state == "Failed" && b?.lastError?.contains("Invalid URI specified for model iris-b") == true
            }
            try await agent.waitForStates(["iris-a": "Loaded", "iris-b": "Loaded"])
            #expect(try await h.proxy.count("load", "iris-a") == 2)
            #expect(try await h.proxy.count("load", "iris-b") == 2)
            #expect(try !agent.messages(containing: "Retrying load of model iris-a").isEmpty)
            #expect(try !agent.messages(containing: "Failed to load model iris-b with status [422]").isEmpty)
        }
    }

    @Test("removing a model the server does not know: the 404 unload counts as done and the files go")
    func unloadOfUnknownModel() async throws {
        try await MLServerHarness.run { h in
            // A model a previous agent left on disk, complete and marked, unknown to this server.
            let ghost = ModelSpec(storageUri: h.url("iris.tar.gz"), framework: "sklearn")
            let ghostDir = h.modelDir + "/ghost"
            try FileManager.default.copyItem(atPath: (try IrisArtifacts.directory), toPath: ghostDir)
            try write(ghost.markerJSON, to: ghostDir + "/" + MarkerFile.name(for: ghost))
            try h.config.write([Entry("iris-a", h.url("iris.tar.gz"))])
            let agent = try await h.startAgent()
            try await agent.waitForStates(["iris-a": "Loaded"])
            try await eventually("ghost to be removed") { !exists(ghostDir) }
            let unloads = try await h.proxy.log().filter { $0.op == "unload" && $0.model == "ghost" }
            #expect(unloads.map(\.status) == [404])
            #expect(try !agent.messages(containing: "Successfully unloaded model ghost").isEmpty)
        }
    }

    @Test("hostile model names are refused one by one; valid entries still load")
    func hostileNames() async throws {
        try await MLServerHarness.run { h in
            let uri = h.url("iris.tar.gz")
            let names = [#""../evil""#, #""/abs""#, #""""#, #"".hidden""#, #""a/b""#, #""..""#, "7", "null"]
            let hostile = names.map {
                #"{"modelName":\#($0),"modelSpec":{"storageUri":"\#(uri)","framework":"sklearn"}}"#
            }
            let valid = #"{"modelName":"ok","modelSpec":{"storageUri":"\#(uri)","framework":"sklearn"}}"#
            try h.config.write(raw: "[" + (hostile + [valid]).joined(separator: ",") + "]")
            let agent = try await h.startAgent()
            try await agent.waitForStates(["ok": "Loaded"])
            #expect(h.modelDirEntries() == [".staging", "ok"])
            #expect(contents(of: h.temp.path).sorted() == ["configs", "logs", "models"])
            #expect(!exists("/abs") && !exists(h.temp.path + "/evil"))
            let refusals = try agent.messages(containing: "Refusing models.json entry")
            #expect(refusals.count == names.count)
            #expect(refusals.contains { $0.contains(#"invalid model name "../evil""#) })
        }
    }
}
