import Foundation
import TestSupport
import Testing

/// The binary as KServe's webhook or a user starts it: flags, exit codes, `pull`.
@Suite(.timeLimit(.minutes(2)))
struct CommandLineTests {
    func runAgent(_ arguments: [String], in temp: TemporaryDirectory) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(), arguments: arguments,
            logPath: temp.path + "/run-\(UUID().uuidString.prefix(6)).log")
        let status = try await child.waitForExit(timeout: .seconds(60))
        return (status, child.output)
    }

    @Test(arguments: [
        ["--enable-puller", "--log-url", "http://logger"], ["--enable-batcher"], ["--max-batchsize=32"],
        ["--enable-puller", "--component-port", "8080", "--logger-tls-skip-verify"],
    ])
    func refusesKServeLoggerAndBatcherFlags(_ arguments: [String]) async throws {
        let temp = try TemporaryDirectory("cli")
        let (status, output) = try await runAgent(arguments, in: temp)
        #expect(status == 64)
        #expect(output.contains("payload logger / request batcher"))
    }

    @Test(arguments: [
        ["--no-such-flag"], ["--max-concurrent-downloads", "0"], ["--server-url", "ftp://x"], ["pull", "only-one"],
        // Values that used to trap turning into a Duration, or spin the agent.
        ["--header-timeout", "inf"], ["--retry-max-delay", "1e300"], ["--load-timeout", "nan"],
        ["--resync-interval", "1e-300"], ["--stall-timeout", "1e300"],
        ["pull", "--connect-timeout", "1e300", "a", "b"],
        ["--part-size", "9223372036854775807"],
        ["--drain-timeout", "nan"], ["--drain-timeout", "-1"], ["--port", "9100", "--admin-port", "9100"],
        ["--memory-capacity", "1Gi", "--hold-timeout", "nan"], ["--memory-capacity", "1Gi", "--hold-timeout", "1e30"],
        ["--memory-capacity", "0"], ["--memory-capacity", "abc"],
        ["--memory-capacity", "1Gi", "--max-held-requests", "0"],
        ["--disk-capacity", "10Gi"], ["--memory-capacity", "1Gi", "--disk-capacity", "0"],
        ["--memory-capacity", "1Gi", "--disk-capacity", "1e30"],
    ])
    func refusesUnusableArguments(_ arguments: [String]) async throws {
        let temp = try TemporaryDirectory("cli")
        let (status, output) = try await runAgent(arguments, in: temp)
        #expect(status == 64)
        #expect(output.contains("Error:"))
    }

    @Test func anUnusableModelDirStopsStartupWithAClearMessage() async throws {
        let temp = try TemporaryDirectory("cli")
        try write("not a directory", to: temp.path + "/models")
        let (status, output) = try await runAgent(
            [
                "--config-dir", temp.path + "/configs", "--model-dir", temp.path + "/models", "--port", "0",
                "--admin-port", "0",
            ], in: temp)
        #expect(status == 2)
        #expect(output.contains("Failed to bring up agent, shutting down."))
        #expect(output.contains("cannot use model dir"))
    }

    @Test func missingDirectoriesAreCreatedAndSIGTERMExitsCleanly() async throws {
        let temp = try TemporaryDirectory("cli")
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        let agent = try await AgentProcess(
            configDir: temp.path + "/new/configs", modelDir: temp.path + "/new/models", serverURL: server.baseURL,
            logDirectory: temp.path)
        #expect(FileManager.default.fileExists(atPath: temp.path + "/new/configs"))
        #expect(contents(of: temp.path + "/new/models") == [".model-agent.lock", ".staging"])
        #expect(await agent.stop() == 0)
        #expect(try agent.messages(containing: "Shutdown complete, exiting...").count == 1)
        await server.stop()
    }

    @Test func pullFetchesIntoTheDestinationOrLeavesItAsItWas() async throws {
        let temp = try TemporaryDirectory("cli")
        let files = try await FixtureServer(root: (try IrisArtifacts.root), logDirectory: temp.path)
        let destination = try temp.subdirectory("dest")
        try write("kept", to: destination + "/existing.txt")

        let ok = try await runAgent(["pull", files.url(file: "iris.tar.gz"), destination], in: temp)
        #expect(ok.status == 0)
        #expect(contents(of: destination) == ["existing.txt", "model-settings.json", "model.joblib"])

        let failed = try await runAgent(["pull", files.url(file: "missing.tar.gz"), destination + "/other"], in: temp)
        #expect(failed.status == 1)
        #expect(failed.output.contains("HTTP 404"))
        #expect(!exists(destination + "/other"))

        try await files.addRules([["path": "/files/iris.zip", "truncate_after": 100]])
        let broken = try await runAgent(
            ["pull", "--download-attempts", "2", files.url(file: "iris.zip"), destination], in: temp)
        #expect(broken.status == 1)
        #expect(contents(of: destination) == ["existing.txt", "model-settings.json", "model.joblib"])
        await files.stop()
    }

    /// A pod deleted while its init container pulls: SIGTERM (or SIGINT) stops the pull,
    /// which removes what it staged and exits 128 + the signal.
    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalStopsThePullAndLeavesNothingPartial(_ signal: Int32) async throws {
        let temp = try TemporaryDirectory("cli-signal")
        let files = try await FixtureServer(root: (try IrisArtifacts.root), logDirectory: temp.path)
        try await files.addRules([["path": "/files/iris.tar.gz", "stall_after": 100, "stall_seconds": 120]])
        let destination = try temp.subdirectory("dest")
        try write("kept", to: destination + "/existing.txt")
        let child = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(),
            arguments: ["pull", files.url(file: "iris.tar.gz"), destination],
            logPath: temp.path + "/pull-\(signal).log")
        try await eventually("the pull to have started its download") {
            try await files.log().contains { $0.path == "/files/iris.tar.gz" }
        }
        kill(child.pid, signal)
        #expect(try await child.waitForExit(timeout: .seconds(60)) == 128 + signal, "\(child.output)")
        #expect(contents(of: destination) == ["existing.txt"], "nothing staged is left")
        #expect(child.output.contains("Pull stopped by signal"))
        await files.stop()
    }

    /// SIGTERM while a large archive is being unpacked: the extraction stops at once
    /// instead of writing out the whole archive and moving it into the destination.
    @Test func aSignalStopsAnArchiveBeingUnpacked() async throws {
        let temp = try TemporaryDirectory("cli-signal-archive")
        let served = try temp.subdirectory("served")
        // 2 GiB of zeros in two entries: a few MB compressed, many seconds to write out, so
        // the signal lands during the extraction even on a loaded machine. Made without
        // holding a thread: the test's own waits must keep running meanwhile.
        let made = try await runProcess(
            try TestPaths.venvTool("tools", "python3"),
            [
                "-c",
                """
                import io, sys, tarfile
                class Zeros(io.RawIOBase):
                    def __init__(self, n): self.n = n
                    def readable(self): return True
                    def readinto(self, b):
                        k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
                with tarfile.open(sys.argv[1], "w:gz", compresslevel=1) as t:
                    for name in ("zeros1.bin", "zeros2.bin"):
                        info = tarfile.TarInfo(name); info.size = 1 << 30
                        t.addfile(info, io.BufferedReader(Zeros(1 << 30)))
                """,
                served + "/zeros.tar.gz",
            ])
        try #require(made.status == 0, "\(made.output)")
        let files = try await FixtureServer(root: served, logDirectory: temp.path)
        let destination = try temp.subdirectory("dest")
        let child = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(),
            arguments: ["pull", "--max-archive-ratio", "100000", files.url(file: "zeros.tar.gz"), destination],
            logPath: temp.path + "/pull.log")
        try await child.waitForLine(containing: "Extracting")
        kill(child.pid, SIGTERM)
        #expect(try await child.waitForExit(timeout: .seconds(60)) == 128 + SIGTERM, "\(child.output)")
        #expect(contents(of: destination).isEmpty, "nothing unpacked is left")
        #expect(child.output.contains("Pull stopped by signal") && !child.output.contains("Successfully copied"))
        await files.stop()
    }
}

/// /livez, /readyz, probes, /v1/models and /metrics.
@Suite(.timeLimit(.minutes(2)))
struct StatusEndpointTests {
    @Test func readinessWaitsForTheServerAndTheFirstLoads() async throws {
        let temp = try TemporaryDirectory("status")
        let source = try temp.subdirectory("artifact")
        try write("weights", to: source + "/w.bin")
        let config = try ConfigDirectory(path: temp.path + "/configs")
        try config.write([ConfigDirectory.Entry("alpha", source)])
        let port = try freePort()
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: "http://127.0.0.1:\(port)",
            logDirectory: temp.path)

        #expect(try await TestHTTP.get(agent.statusURL + "/livez").status == 200)
        try await eventually("alpha to wait for the server") { try await agent.model("alpha")?.state == "Loading" }
        #expect(try await TestHTTP.get(agent.statusURL + "/readyz").status == 503)
        #expect(try await TestHTTP.get(agent.statusURL + "/", headers: ["K-Network-Probe": "queue"]).status == 503)
        #expect(try await TestHTTP.get(agent.statusURL + "/").status == 404)

        let server = try await FixtureServer(fakeV2: true, port: port, logDirectory: temp.path)
        try await agent.waitForStates(["alpha": "Loaded"])
        try await eventually("readiness") { await agent.isReady() }
        #expect(try await TestHTTP.get(agent.statusURL + "/", headers: ["K-Network-Probe": "queue"]).status == 200)
        #expect(
            try await TestHTTP.get(agent.statusURL + "/any/path", headers: ["User-Agent": "kube-probe/1.30"]).status
                == 200)

        let one = try await TestHTTP.get(agent.statusURL + "/v1/models/alpha")
        #expect(one.status == 200 && one.text.contains(#""state":"Loaded""#))
        #expect(try await TestHTTP.get(agent.statusURL + "/v1/models/nope").status == 404)

        let metrics = try await TestHTTP.get(agent.statusURL + "/metrics").text
        #expect(metrics.contains(#"model_agent_models{state="Loaded"} 1"#))
        #expect(metrics.contains(#"model_agent_loads_total{result="success"} 1"#))
        #expect(metrics.contains(#"model_agent_downloads_total{result="success"} 1"#))
        #expect(metrics.contains("model_agent_ready 1"))
        await agent.stop()
        await server.stop()
    }

    @Test func logLinesAreKServeShapedJSONAndCarryNoSecrets() async throws {
        let temp = try TemporaryDirectory("status")
        let files = try await FixtureServer(root: (try IrisArtifacts.root), logDirectory: temp.path)
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        let config = try ConfigDirectory(path: temp.path + "/configs")
        let secretURL = "http://user:pa55word@127.0.0.1:\(files.port)/files/iris.tar.gz?X-Amz-Signature=topsecret"
        try config.write([ConfigDirectory.Entry("alpha", secretURL)])
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL,
            environment: ["127.0.0.1-headers": #"{"Authorization": "Bearer hunter2"}"#], logDirectory: temp.path)
        try await agent.waitForStates(["alpha": "Loaded"])
        let lines = try agent.logLines()
        #expect(
            lines.allSatisfy { ["debug", "info", "warn", "error"].contains($0.level) && $0.logger == "model-agent" })
        #expect(lines.allSatisfy { $0.caller.contains(".swift:") && $0.ts > 1_700_000_000 })
        let text = agent.process.output
        for secret in ["pa55word", "topsecret", "hunter2"] { #expect(!text.contains(secret)) }
        #expect(text.contains("<redacted>"))
        let status = try await TestHTTP.get(agent.statusURL + "/v1/models").text
        for secret in ["pa55word", "topsecret"] { #expect(!status.contains(secret)) }
        await agent.stop()
        await server.stop()
        await files.stop()
    }
}

/// Storage URIs the agent cannot fetch fail their model clearly; nothing is loaded.
@Suite(.timeLimit(.minutes(2)))
struct UnsupportedStorageTests {
    @Test func unknownSchemesFailTheirModelWithAClearReason() async throws {
        let temp = try TemporaryDirectory("schemes")
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        let config = try ConfigDirectory(path: temp.path + "/configs")
        try config.write([
            ConfigDirectory.Entry("hdfs", "hdfs://namenode/models/x"),
            ConfigDirectory.Entry("noscheme", "s3:/bucket/x"),
            ConfigDirectory.Entry("pvc", "pvc://claim/models/x"),
            ConfigDirectory.Entry("relative", "file://models/x"),
        ])
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL, logDirectory: temp.path)
        try await agent.waitForStates(["hdfs": "Failed", "noscheme": "Failed", "pvc": "Failed", "relative": "Failed"])
        let reasons = Dictionary(uniqueKeysWithValues: try await agent.models().map { ($0.name, $0.lastError ?? "") })
        #expect(reasons["hdfs"]?.contains("protocol hdfs:// is not supported") == true)
        #expect(reasons["noscheme"]?.contains("there is no protocol specified") == true)
        // pvc:// is KServe's mount at /mnt/pvc (absent here, and not among the test's allowed roots).
        #expect(reasons["pvc"]?.contains("/mnt/pvc/models/x") == true)
        #expect(reasons["relative"]?.contains("absolute path") == true)
        try await eventually("the initial round to count failures as done") { await agent.isReady() }
        #expect(try await server.operations().isEmpty)
        #expect(contents(of: temp.path + "/models") == [".model-agent.lock", ".staging"])
        await agent.stop()
        await server.stop()
    }
}

/// `--staging-dir`: downloads are assembled there and renamed into the model dir.
@Suite(.timeLimit(.minutes(2)))
struct StagingDirectoryTests {
    @Test func aStagingDirOutsideTheModelDirIsUsedAndRefusedOnAnotherFilesystem() async throws {
        let temp = try TemporaryDirectory("staging")
        let server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
        let source = try temp.subdirectory("artifact")
        try write("weights", to: source + "/w.bin")
        let config = try ConfigDirectory(path: temp.path + "/configs")
        try config.write([ConfigDirectory.Entry("m", source)])
        let agent = try await AgentProcess(
            configDir: config.path, modelDir: temp.path + "/models", serverURL: server.baseURL,
            arguments: AgentProcess.quickRetries + ["--staging-dir", temp.path + "/staging"], logDirectory: temp.path)
        try await agent.waitForStates(["m": "Loaded"])
        // Only the lock that keeps a second agent away (a file: Triton's index lists directories).
        #expect(contents(of: temp.path + "/models") == [".model-agent.lock", "m"], "no staging in the model dir")
        #expect(exists(temp.path + "/staging") && contents(of: temp.path + "/staging") == [".model-agent.lock"])
        #expect(contents(of: temp.path + "/models/m").contains("w.bin"))
        await agent.stop()

        let child = try ChildProcess(
            name: "model-agent", executable: try TestPaths.agentBinary(),
            arguments: [
                "--config-dir", config.path, "--model-dir", temp.path + "/models", "--port", "0", "--admin-port", "0",
                "--staging-dir", "/dev/shm/model-agent-staging-\(getpid())",
            ],
            logPath: temp.path + "/refused.log")
        #expect(try await child.waitForExit() == 2)
        #expect(child.output.contains("is on another filesystem"))
        try? FileManager.default.removeItem(atPath: "/dev/shm/model-agent-staging-\(getpid())")
        await server.stop()
    }
}
