import Foundation
import TestSupport
import Testing

/// The memory cache (`--memory-capacity`) against a real MLServer: models load while they
/// fit, the rest stand by on disk; a request for one on standby waits while the least
/// recently used idle model is unloaded and it is loaded, then goes through.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CacheTests {
    typealias Entry = ConfigDirectory.Entry

    /// Four iris models of 256Mi each; the capacity holds two.
    static func fourModels(_ h: MLServerHarness) throws {
        try h.config.write((1...4).map { Entry("m\($0)", h.url("iris.tar.gz"), memory: "256Mi") })
    }

    static let cache = ["--memory-capacity", "512Mi"]

    /// The four models with a disk tier that has room for no Standby model (only models
    /// loaded or in use keep their files): every model starts `Remote`.
    static func allRemote(_ h: MLServerHarness, _ extra: [String] = []) async throws -> AgentProcess {
        try fourModels(h)
        let agent = try await h.startAgent(AgentProcess.quickRetries + cache + ["--disk-capacity", "1Ki"] + extra)
        try await agent.waitForStates(["m1": "Remote", "m2": "Remote", "m3": "Remote", "m4": "Remote"])
        return agent
    }

    /// The models MLServer holds now.
    static func served(_ h: MLServerHarness) async -> Set<String> {
        var ready: Set<String> = []
        for name in ["m1", "m2", "m3", "m4", "big"] where await h.mlserver.isModelReady(name) { ready.insert(name) }
        return ready
    }

    @Test("loads what fits in models.json order; a request for a model on standby evicts the least recently used")
    func evictsLeastRecentlyUsed() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let agent = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await agent.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            #expect(await Self.served(h) == ["m1", "m2"])
            #expect(FileManager.default.fileExists(atPath: h.modelDir + "/m3/model.joblib"), "on disk, verified")
            #expect(h.markers(of: "m3").count == 1)
            #expect(await agent.isReady(), "models on standby do not hold readiness back")

            // m1 is used after m2: m2 becomes the least recently used.
            #expect(try await h.mlserver.infer("m2", via: agent.proxyURL) == [0, 2])
            #expect(try await h.mlserver.infer("m1", via: agent.proxyURL) == [0, 2])
            try await h.proxy.clearLog()
            #expect(try await h.mlserver.infer("m3", via: agent.proxyURL) == [0, 2])
            let ops = try await h.proxy.operations()
            #expect(ops.map { "\($0.op) \($0.model)" } == ["unload m2", "load m3"], "\(ops)")
            #expect(await Self.served(h) == ["m1", "m3"])
            try await agent.waitForStates(["m1": "Loaded", "m2": "Standby", "m3": "Loaded", "m4": "Standby"])

            let m3 = try await agent.model("m3")
            #expect(m3?.misses == 1 && m3?.coldLoads == 1 && m3?.hits == 0, "\(String(describing: m3))")
            #expect((m3?.lastColdLoadMs ?? -1) >= 0)
            #expect(m3?.memoryBytes == 256 << 20)
            let m2 = try await agent.model("m2")
            #expect(m2?.evictions == 1 && m2?.hits == 1, "\(String(describing: m2))")
            // Loading or unloading through the proxied port is refused: the agent decides.
            let sideLoad = try await TestHTTP.post(agent.proxyURL + "/v2/repository/models/m4/load", json: "{}")
            #expect(sideLoad.status == 403, "\(sideLoad.status) \(sideLoad.text)")
            #expect(await !h.mlserver.isModelReady("m4"))
            // A hit now: no load, no unload.
            #expect(try await h.mlserver.infer("m3", via: agent.proxyURL) == [0, 2])
            #expect(try await agent.model("m3")?.hits == 1)
            #expect(try await h.proxy.operations().count == 2)

            let evictions = try agent.logLines().filter { $0.msg.hasPrefix("Evicting model") }
            #expect(evictions.map(\.msg) == ["Evicting model m2 to make room for m3"])
            #expect(try agent.messages(containing: "Loading model m3 on request (cold load)").count == 1)
            let metrics = try await TestHTTP.get(agent.statusURL + "/metrics").text
            #expect(metrics.contains("model_agent_cache_capacity_bytes \(512 << 20)"), "\(metrics)")
            #expect(metrics.contains("model_agent_cache_used_bytes \(512 << 20)"))
            #expect(metrics.contains(#"model_agent_cache_evictions_total{model="m2"} 1"#))
            #expect(metrics.contains(#"model_agent_cache_cold_loads_total{model="m3"} 1"#))
            #expect(metrics.contains(#"model_agent_models{state="Standby"} 2"#))
        }
    }

    @Test("a model with a request in flight is not evicted, even when it is the least recently used")
    func aModelInUseIsNotEvicted() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let agent = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await agent.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            // A request for m1 starts and is still being sent when m2 is used: m1 is the
            // least recently used, but in use.
            let open = try OpenRequest(port: agent.proxyPort, path: "/v2/models/m1/infer")
            try await eventually("m1's request in flight") { try await agent.model("m1")?.inFlightRequests == 1 }
            #expect(try await h.mlserver.infer("m2", via: agent.proxyURL) == [0, 2])
            try await h.proxy.clearLog()
            #expect(try await h.mlserver.infer("m3", via: agent.proxyURL) == [0, 2])
            let ops = try await h.proxy.operations()
            #expect(ops.map { "\($0.op) \($0.model)" } == ["unload m2", "load m3"], "\(ops)")
            #expect(await Self.served(h) == ["m1", "m3"])
            open.abandon()
            try await eventually("m1's request ended") { try await agent.model("m1")?.inFlightRequests == 0 }
        }
    }

    @Test("concurrent first requests for a model on standby share one load, over HTTP and gRPC")
    func concurrentRequestsLoadOnce() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let agent = try await h.startAgent(
                AgentProcess.quickRetries + Self.cache + [
                    "--h2c-server-url", "http://127.0.0.1:\(h.mlserver.grpcPort)",
                ])
            try await agent.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            try await h.proxy.clearLog()
            let answers = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<8 { group.addTask { try await h.mlserver.infer("m4", via: agent.proxyURL) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.count == 8 && answers.allSatisfy { $0 == [0, 2] }, "\(answers)")
            #expect(try await h.proxy.count("load", "m4") == 1)
            #expect(try await h.proxy.count("unload", "m2") == 1, "m2 ranks below m1 by models.json order")
            let m4 = try await agent.model("m4")
            #expect(m4?.coldLoads == 1 && (m4?.misses ?? 0) + (m4?.hits ?? 0) == 8, "\(String(describing: m4))")

            // gRPC counts as use and loads on demand too: m3 is on standby.
            let calls = try await h.mlserver.grpcInfer("m3", target: "127.0.0.1:\(agent.proxyPort)", calls: 4)
            #expect(calls.errors.isEmpty && calls.ok == Array(repeating: [0, 2], count: 4), "\(calls)")
            #expect(try await h.proxy.count("load", "m3") == 1)
            #expect(try await agent.model("m3")?.coldLoads == 1)
        }
    }

    @Test("a held request gets 503 with Retry-After when its load times out or fails; readiness checks load nothing")
    func heldRequestsAreAnsweredWhenTheLoadDoesNotCome() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let agent = try await h.startAgent(AgentProcess.quickRetries + Self.cache + ["--hold-timeout", "1"])
            try await agent.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            // A readiness check answers for what the server holds: it loads nothing.
            let ready = try await TestHTTP.get(agent.proxyURL + "/v2/models/m3/ready")
            #expect(ready.status != 200)
            #expect(try await h.proxy.count("load", "m3") == 0)

            // A load slower than --hold-timeout: the request is answered 503, the load goes on.
            try await h.proxy.addRules([
                ["method": "POST", "path": "/v2/repository/models/m3/load", "delay": 4, "times": 1]
            ])
            let slow = try await TestHTTP.post(agent.proxyURL + "/v2/models/m3/infer", json: Self.irisBody)
            #expect(slow.status == 503 && slow.headers["retry-after"] == "1", "\(slow.status) \(slow.headers)")
            #expect(slow.text.contains("still being loaded"), "\(slow.text)")
            try await agent.waitForStates(["m3": "Loaded"], exactly: false)
            #expect(try await h.mlserver.infer("m3", via: agent.proxyURL) == [0, 2])

            // A failed load: its waiting request is refused at once, no model is evicted for
            // the next one while the worker backs off, and a request after that loads it.
            try await h.proxy.addRules([
                ["method": "POST", "path": "/v2/repository/models/m4/load", "status": 400, "body": "boom", "times": 1]
            ])
            let failed = try await TestHTTP.post(agent.proxyURL + "/v2/models/m4/infer", json: Self.irisBody)
            #expect(failed.status == 503 && failed.headers["retry-after"] == "1", "\(failed.status)")
            #expect(failed.text.contains("could not be loaded") && !failed.text.contains("boom"), "\(failed.text)")
            try await eventually("m4 to load on a later request") {
                (try? await h.mlserver.infer("m4", via: agent.proxyURL)) == [0, 2]
            }
            #expect(try await h.proxy.count("load", "m4") == 2)
        }
    }

    static let irisBody = """
        {"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}
        """

    @Test("a model larger than the whole capacity fails clearly and is never loaded")
    func aTooLargeModelFails() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([
                Entry("m1", h.url("iris.tar.gz"), memory: "256Mi"),
                Entry("big", h.url("iris.tar.gz"), memory: "1Gi"),
            ])
            let agent = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await agent.waitForStates(["m1": "Loaded", "big": "Failed"])
            let big = try await agent.model("big")
            #expect(
                big?.lastError?.contains("more than the whole --memory-capacity") == true, "\(String(describing: big))")
            #expect(h.markers(of: "big").count == 1, "downloaded and marked as any other")
            let answer = try await TestHTTP.post(agent.proxyURL + "/v2/models/big/infer", json: "{}")
            #expect(answer.status == 503)
            #expect(answer.text.contains("does not fit") && !answer.text.contains("capacity"), "\(answer.text)")
            #expect(try await h.proxy.count("load", "big") == 0)
            #expect(await Self.served(h) == ["m1"])
        }
    }

    @Test("the recency order survives a restart: the most recently used models are loaded first")
    func restartKeepsTheRecencyOrder() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let first = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await first.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            #expect(try await h.mlserver.infer("m4", via: first.proxyURL) == [0, 2])
            #expect(try await h.mlserver.infer("m1", via: first.proxyURL) == [0, 2])
            #expect(await Self.served(h) == ["m1", "m4"])
            #expect(await first.stop() == 0)
            let remembered = try String(contentsOfFile: h.modelDir + "/.model-agent-recency", encoding: .utf8)
            #expect(remembered.split(separator: "\n").prefix(2) == ["m1", "m4"], "\(remembered)")

            // A new server holds nothing: the new agent loads m1 and m4, not models.json's m1 and m2.
            try await h.restartMLServer()
            try await h.proxy.clearLog()
            let second = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await second.waitForStates(["m1": "Loaded", "m2": "Standby", "m3": "Standby", "m4": "Loaded"])
            #expect(await Self.served(h) == ["m1", "m4"])
            #expect(try await h.proxy.count("load", "m2") == 0)
        }
    }

    @Test("with a disk tier, Standby models leave the disk and a request fetches, loads and serves them")
    func diskTierFetchesOnRequest() async throws {
        try await MLServerHarness.run { h in
            let agent = try await Self.allRemote(h)
            #expect(await agent.isReady(), "models off disk do not hold readiness back")
            #expect(!FileManager.default.fileExists(atPath: h.modelDir + "/m1"), "nothing downloaded")
            #expect(try await agent.model("m1")?.onDisk == false)

            // m1 and m2 are fetched and loaded on request.
            #expect(try await h.mlserver.infer("m1", via: agent.proxyURL) == [0, 2])
            #expect(try await h.mlserver.infer("m2", via: agent.proxyURL) == [0, 2])
            try await agent.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Remote", "m4": "Remote"])
            let m1 = try await agent.model("m1")
            #expect(m1?.onDisk == true && (m1?.diskBytes ?? 0) > 0 && m1?.downloads == 1, "\(String(describing: m1))")
            #expect(h.markers(of: "m1").count == 1)
            #expect(try agent.messages(containing: "Fetching model m1 on request").count == 1)

            // m3 takes m1's memory (least recently used); m1, now Standby, leaves the disk.
            try await h.proxy.clearLog()
            #expect(try await h.mlserver.infer("m3", via: agent.proxyURL) == [0, 2])
            try await agent.waitForStates(["m1": "Remote", "m2": "Loaded", "m3": "Loaded", "m4": "Remote"])
            let ops = try await h.proxy.operations()
            #expect(ops.map { "\($0.op) \($0.model)" } == ["unload m1", "load m3"], "\(ops)")
            #expect(!FileManager.default.fileExists(atPath: h.modelDir + "/m1"), "m1's files are gone")
            let gone = try await agent.model("m1")
            #expect(
                gone?.onDisk == false && gone?.diskEvictions == 1 && gone?.diskHash == nil,
                "\(String(describing: gone))")
            #expect(try agent.messages(containing: "Removed model m1 from disk").count == 1)
            let metrics = try await TestHTTP.get(agent.statusURL + "/metrics").text
            #expect(metrics.contains("model_agent_cache_disk_capacity_bytes 1024"), "\(metrics)")
            #expect(metrics.contains(#"model_agent_cache_disk_evictions_total{model="m1"} 1"#))
            #expect(metrics.contains(#"model_agent_models{state="Remote"} 2"#))

            // m1 again: downloaded again, loaded in m2's place; m2 leaves the disk.
            #expect(try await h.mlserver.infer("m1", via: agent.proxyURL) == [0, 2])
            try await agent.waitForStates(["m1": "Loaded", "m2": "Remote", "m3": "Loaded", "m4": "Remote"])
            #expect(try await agent.model("m1")?.downloads == 2)
            #expect(await Self.served(h) == ["m1", "m3"])
            #expect(!FileManager.default.fileExists(atPath: h.modelDir + "/m2"))
            #expect(FileManager.default.fileExists(atPath: h.modelDir + "/m3/model.joblib"))
        }
    }

    @Test("a fetch for a request that gave up goes on, and its model is loaded when it lands")
    func aFetchOutlivesItsRequest() async throws {
        try await MLServerHarness.run { h in
            let agent = try await Self.allRemote(h, ["--hold-timeout", "1"])
            // m2 and m3 fill the memory: m1 can only wait for its files and then for a slot.
            // (Their own fetches may take longer than the short hold: asked until served.)
            for model in ["m2", "m3"] {
                try await eventually("\(model) served") {
                    (try? await h.mlserver.infer(model, via: agent.proxyURL)) == [0, 2]
                }
            }
            // m1's download pauses for 4 s; the request waits 1 s.
            try await h.files.addRules([
                ["path": "/files/iris.tar.gz", "stall_after": 100, "stall_seconds": 4, "times": 1]
            ])
            let answer = try await TestHTTP.post(agent.proxyURL + "/v2/models/m1/infer", json: Self.irisBody)
            #expect(answer.status == 503 && answer.headers["retry-after"] == "1", "\(answer.status) \(answer.text)")
            // The download goes on, and when it lands m1 is loaded (in the place of the least
            // recently used) though nobody waits any more: its files are not dropped for want
            // of disk room, and a client that asks again finds it loaded.
            try await agent.waitForStates(["m1": "Loaded"], exactly: false, timeout: .seconds(90))
            #expect(try await h.mlserver.infer("m1", via: agent.proxyURL) == [0, 2])
            let m1 = try #require(try await agent.model("m1"))
            #expect(m1.misses == 1 && m1.hits == 1 && m1.downloads == 1 && m1.failures == 0, "\(m1)")
            // The paused download was not thrown away when the first request gave up: it
            // completed (only that one pauses; a download started again would not).
            let downloads = try agent.logLines().filter { $0.msg == "Downloaded model m1" }
            #expect(downloads.count == 1 && (downloads.first?.duration_ms ?? 0) >= 3500, "\(downloads)")
        }
    }

    @Test("a disk tier switched on over a full model dir removes Standby models only, least recently used first")
    func aDiskTierOverAFullModelDir() async throws {
        try await MLServerHarness.run { h in
            try Self.fourModels(h)
            let first = try await h.startAgent(AgentProcess.quickRetries + Self.cache)
            try await first.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Standby"])
            #expect(await first.stop() == 0)
            let m3Bytes = try await Self.treeBytes(h.modelDir + "/m3")

            // Room for one Standby model beside the two loaded ones (which the server still
            // holds): m3, the more recent, stays; m4 leaves. Nothing loaded is touched.
            try await h.proxy.clearLog()
            let loadedBytes = try await Self.treeBytes(h.modelDir + "/m1") + Self.treeBytes(h.modelDir + "/m2")
            let capacity = loadedBytes + m3Bytes + m3Bytes / 2
            let second = try await h.startAgent(
                AgentProcess.quickRetries + Self.cache + ["--disk-capacity", "\(capacity)"])
            try await second.waitForStates(["m1": "Loaded", "m2": "Loaded", "m3": "Standby", "m4": "Remote"])
            #expect(!FileManager.default.fileExists(atPath: h.modelDir + "/m4"))
            #expect(h.markers(of: "m3").count == 1)
            let ops = try await h.proxy.operations()
            #expect(ops.filter { $0.op == "load" || $0.op == "unload" }.isEmpty, "\(ops)")
            #expect(await Self.served(h) == ["m1", "m2"])
            #expect(try await second.model("m3")?.diskBytes == m3Bytes)
        }
    }

    @Test("a request for a model off disk whose download fails is answered 503 at once, not after the hold")
    func aFailedFetchIsAnsweredAtOnce() async throws {
        try await MLServerHarness.run { h in
            try h.config.write([
                Entry("m1", h.url("iris.tar.gz"), memory: "256Mi"),
                Entry("gone", h.url("missing.tar.gz"), memory: "256Mi"),
            ])
            let agent = try await h.startAgent(AgentProcess.quickRetries + Self.cache + ["--disk-capacity", "1Ki"])
            try await agent.waitForStates(["m1": "Remote", "gone": "Remote"])
            let started = ContinuousClock.now
            let answer = try await TestHTTP.post(agent.proxyURL + "/v2/models/gone/infer", json: Self.irisBody)
            #expect(answer.status == 503 && answer.headers["retry-after"] == "1", "\(answer.status) \(answer.text)")
            #expect(answer.text.contains("could not be loaded") && !answer.text.contains("missing"), "\(answer.text)")
            // The default hold is 120 s: the answer came from the failure.
            #expect(ContinuousClock.now - started < .seconds(60))
            // Its status says why, and each new try (on request, after the backoff) counts
            // on from there, so that the backoff grows.
            try await eventually("the failure shown") {
                let gone = try await agent.model("gone")
                return gone?.state == "Remote" && gone?.failures == 1 && gone?.lastError?.contains("404") == true
            }
            try await eventually("a second failed try", timeout: .seconds(60)) {
                _ = try await TestHTTP.post(agent.proxyURL + "/v2/models/gone/infer", json: Self.irisBody)
                return try await agent.model("gone")?.failures == 2
            }
            // The other model is fetched and served as usual.
            #expect(try await h.mlserver.infer("m1", via: agent.proxyURL) == [0, 2])
        }
    }

    /// What `du -B1 -s` says a directory takes (allocated blocks, symlinks not followed).
    static func treeBytes(_ path: String) async throws -> Int64 {
        let (status, output) = try await runProcess("/usr/bin/du", ["-s", "-B1", path])
        guard status == 0, let bytes = output.split(separator: "\t").first.flatMap({ Int64($0) }) else {
            throw TestSetupError("du said \(output)")
        }
        return bytes
    }
}
