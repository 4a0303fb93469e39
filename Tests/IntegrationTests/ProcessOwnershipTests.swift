import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// The agent as a process that owns its model dir and its port: one agent per model dir,
/// a server that cannot name itself, an unusable models.json at startup, a FIFO in its
/// place, SIGHUP, clients that hold connections, and the metrics it exposes.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProcessOwnershipTests {
    final class World: @unchecked Sendable {
        let temp: TemporaryDirectory
        let server: FixtureServer
        let config: ConfigDirectory
        var agents: [AgentProcess] = []

        init(configStyle: ConfigDirectory.Style = .kubelet) async throws {
            temp = try TemporaryDirectory("ownership")
            try write("weights", to: temp.path + "/artifact/w.bin")
            server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
            config = try ConfigDirectory(path: temp.path + "/configs", style: configStyle)
        }

        var modelDir: String { temp.path + "/models" }
        var artifact: String { temp.path + "/artifact" }

        func start(_ arguments: [String] = [], server: FixtureServer? = nil) async throws -> AgentProcess {
            let agent = try await AgentProcess(
                configDir: config.path, modelDir: modelDir, serverURL: (server ?? self.server).baseURL,
                arguments: AgentProcess.quickRetries + arguments, logDirectory: temp.path)
            agents.append(agent)
            return agent
        }

        func stop() async {
            for agent in agents { await agent.stop() }
            await server.stop()
        }
    }

    @Test("a second agent on the same model dir exits 2 and leaves the first one's work alone")
    func oneAgentPerModelDir() async throws {
        let w = try await World()
        try await withCleanup {
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let first = try await w.start()
            try await first.waitForStates(["m": "Loaded"])
            let second = try ChildProcess(
                name: "second", executable: try TestPaths.agentBinary(),
                arguments: [
                    "--config-dir", w.config.path, "--model-dir", w.modelDir, "--server-url", w.server.baseURL,
                    "--port", "0", "--admin-port", "0",
                    "--bind-address", "127.0.0.1", "--local-source-root", w.temp.path,
                ],
                logPath: w.temp.path + "/second.log")
            #expect(try await second.waitForExit() == 2)
            #expect(second.output.contains("another model-agent (pid \(first.process.pid)) already manages"))
            #expect(first.process.isRunning)
            #expect(try await first.model("m")?.state == "Loaded")
            #expect(exists(w.modelDir + "/m/w.bin"))
        } cleanup: {
            await w.stop()
        }
    }

    @Test("a V2 server that does not answer GET /v2 is treated as generic and gets its loads")
    func serverWithoutMetadata() async throws {
        let w = try await World()
        try await withCleanup {
            try await w.server.addRules([["path": "/v2", "status": 404, "body": "{\"error\":\"no such route\"}"]])
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let agent = try await w.start()
            try await agent.waitForStates(["m": "Loaded"])
            #expect(await agent.isReady())
            let line = try #require(try agent.messages(containing: "is ready").first)
            #expect(line.contains("GET /v2 answered 404") && line.contains("generic"))
        } cleanup: {
            await w.stop()
        }
    }

    @Test("an unusable models.json at startup serves the marked models on disk, and readiness says why")
    func malformedConfigAtStartupServesTheDisk() async throws {
        let w = try await World()
        try await withCleanup {
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let first = try await w.start()
            try await first.waitForStates(["m": "Loaded"])
            #expect(await first.stop() == 0)

            // A fresh server (it lost every model) and a models.json that does not parse.
            let fresh = try await FixtureServer(fakeV2: true, logDirectory: w.temp.path)
            try w.config.write(raw: #"[{"modelName": "m", "modelSpec": {"#)
            let second = try await w.start(server: fresh)
            try await second.waitForStates(["m": "Loaded"])
            #expect(try await fresh.operations().map(\.op) == ["load"])
            try await eventually("readiness") { await second.isReady() }
            let readiness = try await TestHTTP.get("\(second.statusURL)/readyz").text
            #expect(readiness.contains("serving the last good state") && readiness.contains("malformed models.json"))
            #expect(try await TestHTTP.get("\(second.statusURL)/metrics").text.contains("model_agent_config_valid 0"))
            #expect(try second.messages(containing: "Failed to sync model config file: malformed").count >= 1)
            #expect(try second.messages(containing: ")Failed to sync").isEmpty)

            // A good file again: applied, and readiness is plain again.
            try w.config.write([ConfigDirectory.Entry("m", w.artifact), ConfigDirectory.Entry("n", w.artifact)])
            try await second.waitForStates(["m": "Loaded", "n": "Loaded"])
            #expect(try await TestHTTP.get("\(second.statusURL)/readyz").text == "ready\n")
            await fresh.stop()
        } cleanup: {
            await w.stop()
        }
    }

    @Test("a typo reverted to the last good content makes readiness plain again")
    func revertedTypo() async throws {
        let w = try await World()
        try await withCleanup {
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let agent = try await w.start()
            try await agent.waitForStates(["m": "Loaded"])
            try w.config.write(raw: "[{")
            try await eventually("readiness to say why") {
                try await TestHTTP.get("\(agent.statusURL)/readyz").text.contains("serving the last good state")
            }
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            try await eventually("readiness to be plain again") {
                try await TestHTTP.get("\(agent.statusURL)/readyz").text == "ready\n"
            }
            #expect(try await TestHTTP.get("\(agent.statusURL)/metrics").text.contains("model_agent_config_valid 1"))
        } cleanup: {
            await w.stop()
        }
    }

    @Test("an entry refused at startup keeps its marked model on disk and loaded")
    func refusedEntryAtStartupKeepsItsModel() async throws {
        let w = try await World()
        try await withCleanup {
            try w.config.write([ConfigDirectory.Entry("m", w.artifact), ConfigDirectory.Entry("n", w.artifact)])
            let first = try await w.start()
            try await first.waitForStates(["m": "Loaded", "n": "Loaded"])
            #expect(await first.stop() == 0)

            // After an upgrade (or a typo), n's entry is refused: its model must survive.
            try w.config.write([
                ConfigDirectory.Entry("m", w.artifact), ConfigDirectory.Entry("n", w.artifact, memory: "-5Gi"),
            ])
            try await w.server.clearLog()
            let second = try await w.start()
            try await second.waitForStates(["m": "Loaded", "n": "Loaded"])
            #expect(try second.messages(containing: "keeping what the agent has for n").count == 1)
            #expect(try await w.server.operations().allSatisfy { $0.op != "unload" })
            #expect(exists(w.modelDir + "/n/w.bin"))
        } cleanup: {
            await w.stop()
        }
    }

    @Test("a FIFO in place of models.json is refused without blocking; SIGHUP re-reads instead of killing")
    func fifoAndHangUp() async throws {
        let w = try await World(configStyle: .plain)
        try await withCleanup {
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let agent = try await w.start()
            try await agent.waitForStates(["m": "Loaded"])

            let path = w.config.path + "/models.json"
            try FileManager.default.removeItem(atPath: path)
            #expect(mkfifo(path, 0o644) == 0)
            try await eventually("the FIFO to be refused") {
                try !agent.messages(containing: "is not a regular file").isEmpty
            }
            #expect(try await TestHTTP.get("\(agent.statusURL)/livez").status == 200)
            #expect(try await agent.model("m")?.state == "Loaded")

            // SIGHUP re-reads models.json and re-checks every model with the server (which
            // nothing else would do here: the resync is off).
            try await w.server.clearLog()
            kill(agent.process.pid, SIGHUP)
            try await eventually("the SIGHUP re-check with the server") {
                try await w.server.log().contains { $0.op == "ready" && $0.model == "m" }
            }
            #expect(try agent.messages(containing: "Re-reading models.json (SIGHUP)").count == 1)
            #expect(agent.process.isRunning)
            try FileManager.default.removeItem(atPath: path)
            try w.config.write([ConfigDirectory.Entry("m", w.artifact), ConfigDirectory.Entry("n", w.artifact)])
            try await agent.waitForStates(["m": "Loaded", "n": "Loaded"])
            #expect(await agent.stop() == 0)
        } cleanup: {
            await w.stop()
        }
    }

    @Test("idle and slow clients cannot exhaust the port: the longest idle makes room, stalled heads are closed")
    func connectionsAreBounded() async throws {
        let w = try await World()
        try await withCleanup {
            try w.config.write([])
            let agent = try await w.start(["--max-connections", "8", "--header-timeout", "2"])
            var idle: [Int32] = []
            defer { for fd in idle { close(fd) } }
            for _ in 0..<40 { idle.append(try connectLoopback(port: agent.statusPort)) }
            // Every probe still gets through while 40 clients hold connections open.
            for _ in 0..<5 { #expect(try await TestHTTP.get("\(agent.statusURL)/livez").status == 200) }

            // A client that never finishes its request head, or its body, is cut off after
            // --header-timeout (2 s here): not sooner, and well before the test's own limit.
            for stall in [
                "GET /livez HTTP/1.1\r\nHost: x\r\n", "POST /livez HTTP/1.1\r\nContent-Length: 100\r\n\r\nab",
            ] {
                let slow = try connectLoopback(port: agent.statusPort)
                defer { close(slow) }
                _ = stall.withCString { send(slow, $0, strlen($0), 0) }
                var buffer = [UInt8](repeating: 0, count: 256)
                var timeout = timeval(tv_sec: 90, tv_usec: 0)
                setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let started = ContinuousClock.now
                let n = recv(slow, &buffer, buffer.count, 0)
                let waited = ContinuousClock.now - started
                #expect(n == 0, "the server closed the stalled connection (\(stall.prefix(4)))")
                #expect(waited >= .seconds(1) && waited < .seconds(60), "closed after \(waited)")
            }
            let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(agent.process.pid)/fd").count
            #expect(open < 100, "\(open) descriptors open")
        } cleanup: {
            await w.stop()
        }
    }

    @Test("metrics carry HELP and TYPE for every family, and load calls are counted one by one")
    func metricsAndCallCounts() async throws {
        let w = try await World()
        try await withCleanup {
            try await w.server.addRules([
                ["path": "/v2/repository/models/m/load", "status": 503, "body": "{\"error\":\"busy\"}", "times": 1]
            ])
            try w.config.write([ConfigDirectory.Entry("m", w.artifact)])
            let agent = try await w.start()
            try await agent.waitForStates(["m": "Loaded"])
            let text = try await TestHTTP.get("\(agent.statusURL)/metrics").text
            let families = Set(
                text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap {
                    $0.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
                }.map { $0.replacing(#/_(bucket|sum|count)$/#, with: "") })
            for family in families {
                #expect(text.contains("# HELP \(family) "), "\(family) has no HELP")
                #expect(text.contains("# TYPE \(family) "), "\(family) has no TYPE")
            }
            #expect(text.contains(#"model_agent_loads_total{result="failure"} 1"#))
            #expect(text.contains(#"model_agent_loads_total{result="success"} 1"#))
        } cleanup: {
            await w.stop()
        }
    }

    @Test func stsKeysWithoutAnExpiryAreStillCached() async throws {
        let temp = try TemporaryDirectory("sts")
        let sts = try await FixtureServer(logDirectory: temp.path)
        let answer = """
            <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
            <AccessKeyId>AKIDNOEXPIRY</AccessKeyId><SecretAccessKey>secret-no-expiry</SecretAccessKey>
            <Expiration>whenever</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
            </AssumeRoleWithWebIdentityResponse>
            """
        try await sts.addRules([["path": "/", "method": "POST", "status": 200, "body": answer]])
        try write("web-identity-token", to: temp.path + "/token")
        let pool = TransferPool(lanes: 2, settings: TransportSettings())
        let provider = AWSCredentialProvider(
            source: .webIdentity(
                roleARN: "arn:aws:iam::1:role/r", tokenFile: temp.path + "/token", sessionName: "s",
                stsEndpoint: sts.baseURL),
            pool: pool, logger: Logger(label: "t"))
        for _ in 0..<3 { #expect(try await provider.credentials()?.accessKeyId == "AKIDNOEXPIRY") }
        #expect(try await sts.log().count == 1)
        await pool.shutdown()
        await sts.stop()
    }
}
