import Foundation
import TestSupport
import Testing

@testable import ModelAgent

/// The agent binary against hostile or careless sources served by the fault server: a
/// storage server echoing credentials, an endless body, a zip bomb, and local paths that
/// name the pod's own secrets. Each model fails with a clear reason and nothing else.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct UntrustedSourceTests {
    final class World: @unchecked Sendable {
        let temp: TemporaryDirectory
        let files: String
        let fileServer: FixtureServer
        let server: FixtureServer
        let config: ConfigDirectory
        var agent: AgentProcess?

        init() async throws {
            temp = try TemporaryDirectory("untrusted")
            files = try temp.subdirectory("files")
            try write("weights", to: files + "/w.bin")
            fileServer = try await FixtureServer(root: files, logDirectory: temp.path)
            server = try await FixtureServer(fakeV2: true, logDirectory: temp.path)
            config = try ConfigDirectory(path: temp.path + "/configs")
        }

        var modelDir: String { temp.path + "/models" }

        func start(
            _ entries: [ConfigDirectory.Entry], arguments: [String] = [], environment: [String: String] = [:],
            localSourceRoots: [String] = AgentProcess.testSourceRoots
        ) async throws -> AgentProcess {
            try config.write(entries)
            let agent = try await AgentProcess(
                configDir: config.path, modelDir: modelDir, serverURL: server.baseURL,
                arguments: AgentProcess.quickRetries + arguments, environment: environment,
                localSourceRoots: localSourceRoots, logDirectory: temp.path)
            self.agent = agent
            return agent
        }

        func failure(of model: String, agent: AgentProcess) async throws -> String {
            var reason = ""
            try await eventually("\(model) to fail") {
                guard let m = try await agent.model(model), m.state == "Failed", let error = m.lastError else {
                    return false
                }
                reason = error
                return true
            }
            return reason
        }

        func stop() async {
            await agent?.stop()
            await server.stop()
            await fileServer.stop()
        }
    }

    @Test("credentials a storage server echoes into its error body reach neither the log nor /v1/models")
    func echoedCredentialsNeverLeak() async throws {
        let w = try await World()
        try await withCleanup {
            let secrets = ["Hunter2secret", "SIGsecret123", "TOKsecret456", "HDRsecret789", "AWSsecret000"]
            try await w.fileServer.addRules([
                ["path": "/files/plain.bin", "echo": true, "status": 403],
                ["path": "/files/xml.bin", "echo": "xml", "status": 403],
            ])
            let host = "127.0.0.1:\(w.fileServer.port)"
            let query = "?X-Amz-Signature=SIGsecret123&X-Amz-Security-Token=TOKsecret456"
            let agent = try await w.start(
                [
                    ConfigDirectory.Entry("plain", "http://reader:Hunter2secret@\(host)/files/plain.bin\(query)"),
                    ConfigDirectory.Entry("xml", "http://reader:Hunter2secret@\(host)/files/xml.bin\(query)"),
                ],
                environment: [
                    "\(host)-headers": #"{"X-Test-Token": "HDRsecret789"}"#, "AWS_SECRET_ACCESS_KEY": "AWSsecret000",
                ])
            let plain = try await w.failure(of: "plain", agent: agent)
            let xml = try await w.failure(of: "xml", agent: agent)
            #expect(plain.contains("403"))
            #expect(xml.contains("AccessDenied"))

            // The server really got (and echoed) every secret, so the test can fail.
            let log = try await w.fileServer.log()
            #expect(log.contains { $0.xTestToken == "HDRsecret789" && $0.authorization?.hasPrefix("Basic ") == true })
            let status = try await TestHTTP.get("\(agent.statusURL)/v1/models").text
            for secret in secrets {
                #expect(!status.contains(secret), "\(secret) in /v1/models")
                #expect(!agent.process.output.contains(secret), "\(secret) in the log")
            }
            #expect(!agent.process.output.contains("cmVhZGVyOkh1bnRlcjJzZWNyZXQ="), "Basic credentials in the log")
        } cleanup: {
            await w.stop()
        }
    }

    @Test("an endless body without Content-Length stops at --max-download-size, leaving nothing behind")
    func endlessBodyIsBounded() async throws {
        let w = try await World()
        try await withCleanup {
            try await w.fileServer.addRules([["path": "/files/endless.bin", "endless": 1 << 30]])
            let agent = try await w.start(
                [ConfigDirectory.Entry("endless", w.fileServer.url(file: "endless.bin"))],
                arguments: ["--max-download-size", "8Mi"])
            let reason = try await w.failure(of: "endless", agent: agent)
            #expect(reason.contains("--max-download-size"))
            #expect(!exists(w.modelDir + "/endless"))
            try await eventually("staging to be empty") { contents(of: w.modelDir + "/.staging").isEmpty }
        } cleanup: {
            await w.stop()
        }
    }

    @Test("a zip bomb is refused from its central directory, before a byte is written")
    func zipBombIsRefused() async throws {
        let w = try await World()
        try await withCleanup {
            try makeZipBomb(at: w.files + "/bomb.zip", entries: 10, mebibytesEach: 100)
            let agent = try await w.start([ConfigDirectory.Entry("bomb", w.fileServer.url(file: "bomb.zip"))])
            let reason = try await w.failure(of: "bomb", agent: agent)
            #expect(reason.contains("decompression bomb"))
            #expect(!exists(w.modelDir + "/bomb"))
            let model = try #require(try await agent.model("bomb"))
            #expect(model.failures >= 1)
        } cleanup: {
            await w.stop()
        }
    }

    @Test("local sources outside the allowed roots, or inside the agent's own directories, are refused")
    func localSourcesAreConfined() async throws {
        let w = try await World()
        try await withCleanup {
            let allowed = try w.temp.subdirectory("pvc")
            try write("weights", to: allowed + "/m/w.bin")
            try FileManager.default.createSymbolicLink(
                atPath: allowed + "/m/passwd", withDestinationPath: "/etc/passwd")
            try write("ok", to: allowed + "/fine/w.bin")
            let agent = try await w.start(
                [
                    ConfigDirectory.Entry("shadow", "file:///etc/shadow"),
                    ConfigDirectory.Entry("token", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
                    ConfigDirectory.Entry("linked", allowed + "/m"),
                    ConfigDirectory.Entry("config", w.config.path),
                    ConfigDirectory.Entry("fine", allowed + "/fine"),
                ],
                localSourceRoots: [allowed, w.config.path])
            try await agent.waitForStates(
                ["shadow": "Failed", "token": "Failed", "linked": "Failed", "config": "Failed", "fine": "Loaded"])
            #expect(
                try await agent.model("shadow")?.lastError?.contains("outside the allowed local source roots") == true)
            #expect(
                try await agent.model("linked")?.lastError?.contains("outside the allowed local source roots") == true)
            #expect(try await agent.model("config")?.lastError?.contains("agent's own directory") == true)
            for name in ["shadow", "token", "linked", "config"] { #expect(!exists(w.modelDir + "/" + name)) }
            await agent.stop()

            // The default root is KServe's /mnt/pvc only.
            let fresh = try await w.start([ConfigDirectory.Entry("fresh", allowed + "/fine")], localSourceRoots: [])
            try await fresh.waitForStates(["fresh": "Failed"])
            #expect(try await fresh.model("fresh")?.lastError?.contains("/mnt/pvc") == true)
        } cleanup: {
            await w.stop()
        }
    }
}
