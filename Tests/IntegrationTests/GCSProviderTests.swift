import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// The gs:// provider against fake-gcs-server, and Google's token flows against a token
/// endpoint and metadata server that verify what they receive.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct GCSProviderTests {
    final class World: @unchecked Sendable {
        let workspace: ProviderWorkspace
        let gcs: FakeGCSServer
        var temp: TemporaryDirectory { workspace.temp }
        var logs: String { workspace.logs }
        var store: ModelStore { workspace.store }
        var pool: TransferPool { workspace.pool }

        init(seed: (String) throws -> Void = { _ in }) async throws {
            workspace = try ProviderWorkspace("gcs")
            let seedDirectory = try workspace.temp.subdirectory("seed")
            try seed(seedDirectory)
            gcs = try await FakeGCSServer(seed: seedDirectory, logDirectory: workspace.logs)
        }

        var environment: [String: String] { ["STORAGE_EMULATOR_HOST": "127.0.0.1:\(gcs.port)"] }

        func fetch(_ uri: String, _ environment: [String: String]? = nil) async throws -> (
            StagingDirectory, FetchReport
        ) {
            let provider = StorageFactory.gcsProvider(
                engine: workspace.engine(attempts: 4), environment: environment ?? self.environment,
                logger: Logger(label: "t"))
            return try await workspace.fetch(provider, uri)
        }

        func stop() async {
            await workspace.stop()
            await gcs.stop()
        }
    }

    static func put(_ seed: String, _ path: String, _ data: Data) throws {
        let full = seed + "/" + path
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: full))
    }

    @Test func prefixesSingleObjectsNestedKeysPlaceholdersAndPaging() async throws {
        let w = try await World { seed in
            try Self.put(seed, "models/m1/a.txt", Data("a".utf8))
            try Self.put(seed, "models/m1/sub/deeper/b.bin", Data("b".utf8))
            try Self.put(seed, "models/m10/sibling.txt", Data("no".utf8))
            try Self.put(seed, "models/single/model.joblib", Data("joblib".utf8))
            for i in 0..<1005 { try Self.put(seed, String(format: "models/many/f%04d.txt", i), Data("\(i)".utf8)) }
        }
        try await w.gcs.upload("models", "m1/emptydir/", Data())

        let (m1, report) = try await w.fetch("gs://models/m1")
        #expect(report.files == 2 && report.bytes == 2)
        #expect(report.checks.counts == ["crc32c": 2])
        #expect(contents(of: m1.root) == ["a.txt", "sub"])
        #expect(!exists(m1.root + "/emptydir"))
        let (single, _) = try await w.fetch("gs://models/single/model.joblib")
        #expect(contents(of: single.root) == ["model.joblib"])
        let (many, manyReport) = try await w.fetch("gs://models/many")
        #expect(manyReport.files == 1005)
        #expect(try String(contentsOfFile: many.root + "/f1004.txt", encoding: .utf8) == "1004")
        let missing = await #expect(throws: NoObjectsFound.self) { try await w.fetch("gs://models/nothing") }
        #expect(missing?.description == "no objects found at gs://models/nothing")

        let client = GCSClient(
            baseURL: "http://127.0.0.1:\(w.gcs.port)",
            tokens: GCSTokenProvider(source: .anonymous, pool: w.pool, logger: Logger(label: "t")), pool: w.pool)
        let paged = try await client.list(bucket: "models", prefix: "many/", pageSize: 7)
        #expect(paged.count == 1005 && Set(paged.map(\.key)).count == 1005)
        #expect(paged.allSatisfy { $0.checksum?.algorithm == "crc32c" })
        await w.stop()
    }

    @Test("a 300 MiB object in ranged parts, compared byte for byte and CRC32C-verified")
    func largeObject() async throws {
        let data = S3ProviderTests.randomData(300 << 20)
        let w = try await World { seed in try Self.put(seed, "models/big/weights.bin", data) }
        let (staging, report) = try await w.fetch("gs://models/big")
        #expect(report.bytes == 300 << 20)
        #expect(FileManager.default.contents(atPath: staging.root + "/weights.bin") == data)
        staging.discard()
        await w.stop()
    }

    @Test func corruptedDataIsCaughtByCRC32C() async throws {
        let data = S3ProviderTests.randomData(5 << 20 + 7)
        let w = try await World { seed in
            try Self.put(seed, "models/m/w.bin", data)
            try Self.put(seed, "models/small/s.bin", Data(repeating: 7, count: 4000))
        }
        let proxy = try await FixtureServer(upstream: w.gcs.endpoint, logDirectory: w.logs)
        let env = ["STORAGE_EMULATOR_HOST": proxy.baseURL]
        try await proxy.addRules([
            ["method": "GET", "path": "/storage/v1/b/models/o/m%2Fw.bin", "corrupt": true, "times": 1]
        ])
        let (staging, _) = try await w.fetch("gs://models/m", env)
        #expect(FileManager.default.contents(atPath: staging.root + "/w.bin") == data)
        #expect(try await proxy.log().filter { $0.path.hasPrefix("/storage/v1/b/models/o/m%2Fw.bin") }.count == 12)
        staging.discard()

        try await proxy.addRules([["method": "GET", "path": "/storage/v1/b/models/o/small%2Fs.bin", "corrupt": true]])
        let error = await #expect(throws: DownloadFailed.self) { try await w.fetch("gs://models/small", env) }
        #expect(error?.description.contains("does not match its crc32c") == true)
        #expect(contents(of: w.store.stagingRoot).isEmpty)
        await proxy.stop()
        await w.stop()
    }

    @Test func serviceAccountJWTsAreSignedForTheRightAudienceAndScope() async throws {
        let w = try await World { seed in try Self.put(seed, "models/m/a.txt", Data("a".utf8)) }
        let tokens = try await GoogleTokenServer(directory: try w.temp.subdirectory("sa"))
        let proxy = try await FixtureServer(upstream: w.gcs.endpoint, logDirectory: w.logs)
        let env = ["STORAGE_EMULATOR_HOST": proxy.baseURL, "GOOGLE_APPLICATION_CREDENTIALS": tokens.serviceAccountFile]
        _ = try await w.fetch("gs://models/m", env)
        _ = try await w.fetch("gs://models/m", env)
        let issued = try await tokens.log()
        #expect(issued.map(\.verdict) == ["ok", "ok"], "one token per provider, each checked by the endpoint")
        #expect(issued.allSatisfy { $0.grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" })
        let requests = try await proxy.log()
        #expect(!requests.isEmpty)
        #expect(requests.allSatisfy { $0.authorization?.hasPrefix("Bearer sa-token-") == true })

        let user = [
            "STORAGE_EMULATOR_HOST": proxy.baseURL, "GOOGLE_APPLICATION_CREDENTIALS": tokens.authorizedUserFile,
        ]
        try await proxy.clearLog()
        _ = try await w.fetch("gs://models/m", user)
        #expect(try await tokens.log().last?.grant == "refresh_token")
        #expect(try await proxy.log().allSatisfy { $0.authorization?.hasPrefix("Bearer user-token-") == true })
        await proxy.stop()
        await tokens.stop()
        await w.stop()
    }

    @Test func aTokenIsReusedUntilItNearsExpiry() async throws {
        let w = try await World { seed in try Self.put(seed, "models/m/a.txt", Data("a".utf8)) }
        let shortLived = try await GoogleTokenServer(directory: try w.temp.subdirectory("short"), lifetime: 120)
        func fetches(margin: Int) async throws -> Int {
            let before = try await shortLived.log().count
            let tokens = GCSTokenProvider(
                source: .keyFile(path: shortLived.serviceAccountFile), pool: w.pool, logger: Logger(label: "t"),
                refreshMargin: margin)
            for _ in 0..<3 { _ = try await tokens.token() }
            return try await shortLived.log().count - before
        }
        #expect(try await fetches(margin: 60) == 1)
        #expect(try await fetches(margin: 300) == 3, "a 120 s token is always inside a 300 s margin")
        await shortLived.stop()
        await w.stop()
    }

    @Test func theMetadataServerIsAskedWithMetadataFlavorAndAnonymousIsTheFallback() async throws {
        let w = try await World { seed in try Self.put(seed, "models/m/a.txt", Data("a".utf8)) }
        let tokens = try await GoogleTokenServer(directory: try w.temp.subdirectory("md"))
        let proxy = try await FixtureServer(upstream: w.gcs.endpoint, logDirectory: w.logs)
        let env = ["GCE_METADATA_HOST": tokens.metadataHost]
        let provider = GCSTokenProvider(
            source: GCSCredentialSource.from(environment: env), pool: w.pool, logger: Logger(label: "t"))
        #expect(try await provider.token()?.hasPrefix("metadata-token-") == true)
        #expect(try await tokens.log().map(\.verdict) == ["ok"])

        // Without the header the fixture refuses, as the real metadata server does.
        let bare = try await TestHTTP.get(
            "http://\(tokens.metadataHost)/computeMetadata/v1/instance/service-accounts/default/token")
        #expect(bare.status == 403)

        // Nothing listening where the metadata server should be: anonymous requests.
        let closed = try freePort()
        let anonymous = GCSTokenProvider(
            source: .metadataServer(host: "127.0.0.1:\(closed)"), pool: w.pool, logger: Logger(label: "t"))
        #expect(try await anonymous.token() == nil)
        _ = try await w.fetch("gs://models/m", ["STORAGE_EMULATOR_HOST": proxy.baseURL])
        #expect(try await proxy.log().allSatisfy { $0.authorization == nil })
        await proxy.stop()
        await tokens.stop()
        await w.stop()
    }

    @Test func aMetadataServerThatFailsAtFirstIsAskedAgainNotAbandoned() async throws {
        let w = try await World { _ in }
        let tokens = try await GoogleTokenServer(directory: try w.temp.subdirectory("md"), failMetadata: 2)
        let provider = GCSTokenProvider(
            source: .metadataServer(host: tokens.metadataHost), pool: w.pool, logger: Logger(label: "t"))
        // Two failures are errors worth a retry (the download backs off), not "anonymous".
        for _ in 0..<2 { await #expect(throws: CredentialError.self) { try await provider.token() } }
        #expect(try await provider.token()?.hasPrefix("metadata-token-") == true)
        #expect(try await tokens.log().map(\.verdict) == ["failed on purpose", "failed on purpose", "ok"])

        // A metadata server that is absent at first and appears later is used once it does.
        let port = try freePort()
        let late = GCSTokenProvider(
            source: .metadataServer(host: "127.0.0.1:\(port)"), pool: w.pool, logger: Logger(label: "t"),
            absenceRecheck: .zero)
        #expect(try await late.token() == nil)
        let appeared = try await FixtureServer(
            upstream: "http://\(tokens.metadataHost)", port: port, logDirectory: w.logs)
        #expect(try await late.token()?.hasPrefix("metadata-token-") == true)
        await appeared.stop()
        await tokens.stop()
        await w.stop()
    }

    @Test func credentialSourcesFollowGooglesOrder() {
        #expect(GCSCredentialSource.from(environment: [:]) == .metadataServer(host: "metadata.google.internal"))
        #expect(
            GCSCredentialSource.from(environment: ["GCE_METADATA_HOST": "10.0.0.1:80"])
                == .metadataServer(host: "10.0.0.1:80"))
        #expect(
            GCSCredentialSource.from(environment: [
                "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "STORAGE_EMULATOR_HOST": "x",
            ])
                == .keyFile(path: "/k.json"))
        #expect(GCSCredentialSource.from(environment: ["STORAGE_EMULATOR_HOST": "x"]) == .anonymous)
        #expect(
            GCSCredentialSource.from(environment: [
                "gcsAnonymousCredential": "true", "GOOGLE_APPLICATION_CREDENTIALS": "/k",
            ])
                == .anonymous)
        #expect(GCSClient.baseURL(environment: [:]) == "https://storage.googleapis.com")
        #expect(GCSClient.baseURL(environment: ["STORAGE_EMULATOR_HOST": "localhost:4443"]) == "http://localhost:4443")
        #expect(GCSClient.baseURL(environment: ["STORAGE_EMULATOR_HOST": "https://gcs:1"]) == "https://gcs:1")
        #expect(GCSClient.checksum(crc32c: "G9ywgw==", md5: "dk76iD3aHhHbR2ccSju9ng==") == .crc(.crc32c, 0x1BDC_B083))
        #expect(
            GCSClient.checksum(crc32c: nil, md5: "dk76iD3aHhHbR2ccSju9ng==")
                == .md5(hex: "764efa883dda1e11db47671c4a3bbd9e"))
    }

    @Test func anMLServerModelPulledFromGCS() async throws {
        let h = try await MLServerHarness()
        let seed = try h.temp.subdirectory("gcs-seed")
        for file in ["model.joblib", "model-settings.json"] {
            try Self.put(
                seed, "models/sklearn/iris/" + file,
                try Data(contentsOf: URL(fileURLWithPath: (try IrisArtifacts.directory) + "/" + file)))
        }
        let gcs = try await FakeGCSServer(seed: seed, logDirectory: h.logs)
        try h.config.write([ConfigDirectory.Entry("iris-gcs", "gs://models/sklearn/iris")])
        let agent = try await AgentProcess(
            configDir: h.config.path, modelDir: h.modelDir, serverURL: h.proxy.baseURL,
            environment: ["STORAGE_EMULATOR_HOST": "127.0.0.1:\(gcs.port)"], logDirectory: h.logs)
        try await agent.waitForStates(["iris-gcs": "Loaded"])
        #expect(try await h.mlserver.infer("iris-gcs") == [0, 2])
        await agent.stop()
        await gcs.stop()
        await h.shutdown()
    }
}
