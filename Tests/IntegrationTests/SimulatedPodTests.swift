import Foundation
import TestSupport
import Testing

/// The standalone example (examples/kubernetes/standalone) run as the kubelet would run
/// it: both containers with the manifest's own command, args, env, ports, volumes, user and
/// security context (read from the YAML), the ConfigMap projected with `..data`, then a
/// ConfigMap edit, then SIGTERM with the manifest's grace period before SIGKILL.
@Suite(.serialized, .enabled(if: getuid() == 0, "network and mount namespaces need root"))
struct SimulatedPodTests {
    static let manifestFile =
        TestPaths.repositoryRoot + "/examples/kubernetes/standalone/mlserver-with-model-agent.yaml"

    struct ModelList: Decodable {
        let name: String
        let state: String
    }

    @Test("the standalone Deployment serves its models, follows a ConfigMap edit and stops within its grace period")
    func standaloneDeployment() async throws {
        let manifest = try PodManifest(yamlFile: Self.manifestFile)
        let agentSpec = try manifest.container("agent")
        let serverSpec = try manifest.container("mlserver")
        let agentReady = try #require(agentSpec.readiness)
        let agentLive = try #require(agentSpec.liveness)
        let serverReady = try #require(serverSpec.readiness)
        let agentPort = try #require(agentSpec.ports["agent"])
        let adminPort = try #require(agentSpec.ports["admin"])
        let configMapName = "model-agent-models"
        let initial = try #require(manifest.configMaps[configMapName]?["models.json"])

        let agentBinary = try TestPaths.agentBinary()
        // MLServer's venv (whose packages Python reads as the pod's uid) and our binary.
        let pod = try SimulatedPod(
            manifest: manifest,
            reachable: [
                agentBinary, try TestPaths.venvTool("mlserver", "mlserver"), TestPaths.fixtures + "/pod_container.sh",
            ])
        try await withCleanup {
            // The model store: rclone serve s3 on the pod's loopback, holding the iris model
            // at every s3:// URI the ConfigMap names.
            let store = try TemporaryDirectory("model-agent-pod-s3")
            let uris = try Self.modelURIs(initial)
            #expect(!uris.isEmpty)
            for uri in uris {
                let destination = store.path + "/" + uri.dropFirst("s3://".count)
                try FileManager.default.createDirectory(
                    atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: try IrisArtifacts.directory, toPath: destination)
            }
            let s3 = try pod.startPeer(
                "s3", try TestPaths.venvTool("tools", "rclone"),
                [
                    "serve", "s3", "--addr", "127.0.0.1:9000", "--auth-key",
                    "\(RcloneS3Server.accessKey),\(RcloneS3Server.secretKey)", "--config", "/dev/null",
                    "--vfs-cache-mode", "off", store.path,
                ], environment: ["RCLONE_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin"])
            try await s3.waitForLine(containing: "Starting s3 server")

            let server = try pod.start(
                "mlserver", path: TestPaths.venvs + "/mlserver/bin:/usr/local/bin:/usr/bin:/bin")
            // The image's ENTRYPOINT, from the Dockerfile, found on PATH as in the image.
            #expect((agentBinary as NSString).lastPathComponent == "model-agent")
            let agent = try pod.start(
                "agent", entrypoint: try Self.imageEntrypoint(),
                path: (agentBinary as NSString).deletingLastPathComponent + ":/usr/local/bin:/usr/bin:/bin",
                secrets: [
                    "model-store": [
                        "AWS_ACCESS_KEY_ID": RcloneS3Server.accessKey,
                        "AWS_SECRET_ACCESS_KEY": RcloneS3Server.secretKey,
                        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
                    ]
                ])

            // Both containers become ready by their own probes; every model is loaded.
            try await Self.waitFor("the agent's liveness probe", while: agent, timeout: .seconds(60)) {
                await pod.probe(agentLive) == 200
            }
            try await Self.waitFor("MLServer's readiness probe", while: server, timeout: .seconds(180)) {
                await pod.probe(serverReady) == 200
            }
            let names = try Self.modelNames(initial)
            try await Self.waitForLoaded(names, pod: pod, adminPort: adminPort, agent: agent)
            #expect(await pod.probe(agentReady) == 200)
            let models = pod.volumeDirectories["models"]!
            for name in names {
                #expect(FileManager.default.fileExists(atPath: "\(models)/\(name)/model.joblib"))
            }

            // Inference through the agent's port, as the Service sends it.
            let inference = await pod.http(
                agentPort, "/v2/models/\(names[0])/infer",
                json:
                    #"{"inputs":[{"name":"predict","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.7,3.0,5.2,2.3]]}]}"#
            )
            #expect(
                inference.status == 200 && inference.body.contains(#""data":[0,2]"#),
                "\(inference)\n\(agent.output.suffix(3000))")

            // `kubectl edit configmap`: the first model leaves, another arrives under a new
            // name from the same artifacts.
            let edited = initial.replacingOccurrences(of: "\"\(names[0])\"", with: "\"\(names[0])-edited\"")
            try #require(edited != initial)
            try pod.configMaps[configMapName]!.write(raw: edited)
            try await Self.waitForLoaded(
                try Self.modelNames(edited), pod: pod, adminPort: adminPort, agent: agent)
            try await eventually("the removed model's files to go") {
                !FileManager.default.fileExists(atPath: "\(models)/\(names[0])")
            }
            let index = await pod.http(serverReady.port, "/v2/repository/index", json: "{}")
            #expect(index.status == 200, "\(index)")
            let repository = try JSONDecoder().decode([ModelList].self, from: Data(index.body.utf8))
            let ready = Set(repository.filter { $0.state == "READY" }.map(\.name))
            #expect(ready == Set(try Self.modelNames(edited)), "MLServer's repository: \(index.body)")

            // Pod deletion: SIGTERM to each container's process, SIGKILL after the grace
            // period. The agent fails its readiness probe at once, drains, and exits 0 in time.
            let terminated = ContinuousClock.now
            kill(agent.pid, SIGTERM)
            kill(server.pid, SIGTERM)
            // The admin port answers while the agent drains: the probe fails with 503.
            try await eventually("the agent's readiness probe to fail after SIGTERM", timeout: .seconds(10)) {
                await pod.probe(agentReady) == 503
            }
            let grace = Duration.seconds(manifest.terminationGracePeriod)
            let status = try? await agent.waitForExit(timeout: grace)
            #expect(status == 0, "the agent exited \(String(describing: status)) within \(grace) of SIGTERM")
            #expect(ContinuousClock.now - terminated < grace)
            #expect(agent.output.contains("Shutdown complete, exiting..."), "\(agent.output.suffix(2000))")
            if (try? await server.waitForExit(timeout: grace - (ContinuousClock.now - terminated))) == nil {
                await server.stop(grace: .zero)  // the kubelet's SIGKILL
            }
            await s3.stop()
        } cleanup: {
            await pod.tearDown()
        }
    }

    /// The runtime stage's `ENTRYPOINT [...]` (the last one in the Dockerfile).
    static func imageEntrypoint() throws -> [String] {
        let dockerfile = try String(contentsOfFile: TestPaths.repositoryRoot + "/Dockerfile", encoding: .utf8)
        guard let line = dockerfile.split(separator: "\n").last(where: { $0.hasPrefix("ENTRYPOINT ") }),
            let list = try JSONSerialization.jsonObject(with: Data(line.dropFirst("ENTRYPOINT ".count).utf8))
                as? [String], !list.isEmpty
        else { throw TestSetupError("the Dockerfile has no ENTRYPOINT in exec form") }
        return list
    }

    /// Waits for `condition` while `process` runs: its exit ends the wait at once, with its
    /// status and last output as the error.
    static func waitFor(
        _ what: String, while process: ChildProcess, timeout: Duration, _ condition: () async throws -> Bool
    ) async throws {
        try await eventually(what, timeout: timeout) {
            if process.exitCode != nil { return true }
            return try await condition()
        }
        if let code = process.exitCode {
            throw TestSetupError("\(process.name) exited with \(code):\n\(process.output.suffix(3000))")
        }
    }

    private static func entries(_ modelsJSON: String) throws -> [[String: Any]] {
        guard let list = try JSONSerialization.jsonObject(with: Data(modelsJSON.utf8)) as? [[String: Any]] else {
            throw TestSetupError("models.json of the manifest is not a list")
        }
        return list
    }

    static func modelNames(_ modelsJSON: String) throws -> [String] {
        try entries(modelsJSON).compactMap { $0["modelName"] as? String }
    }

    static func modelURIs(_ modelsJSON: String) throws -> [String] {
        try entries(modelsJSON).compactMap { ($0["modelSpec"] as? [String: Any])?["storageUri"] as? String }
            .filter { $0.hasPrefix("s3://") }
    }

    static func waitForLoaded(_ names: [String], pod: SimulatedPod, adminPort: Int, agent: ChildProcess)
        async throws
    {
        var last = ""
        do {
            try await waitFor("models \(names) Loaded", while: agent, timeout: .seconds(120)) {
                let answer = await pod.http(adminPort, "/v1/models")
                last = answer.body
                guard answer.status == 200,
                    let models = try? JSONDecoder().decode([ModelList].self, from: Data(answer.body.utf8))
                else { return false }
                return Set(models.map(\.name)) == Set(names) && models.allSatisfy { $0.state == "Loaded" }
            }
        } catch {
            throw TestSetupError("\(error); /v1/models: \(last)\nagent log:\n\(agent.output.suffix(3000))")
        }
    }
}
