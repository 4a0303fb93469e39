import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// The http(s) and local providers, in process, against the fixture file server.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HTTPStorageTests {
    final class World: @unchecked Sendable {
        let workspace: ProviderWorkspace
        let root: String
        let server: FixtureServer
        var pool: TransferPool { workspace.pool }

        init(stallTimeout: Duration = ProviderWorkspace.patientStallTimeout) async throws {
            workspace = try ProviderWorkspace("http-storage", lanes: 4, stallTimeout: stallTimeout)
            root = try workspace.temp.subdirectory("files")
            try FileManager.default.copyItem(
                atPath: (try IrisArtifacts.root) + "/iris.tar.gz", toPath: root + "/iris.tar.gz")
            try FileManager.default.copyItem(atPath: (try IrisArtifacts.root) + "/iris.zip", toPath: root + "/blob")
            try FileManager.default.copyItem(atPath: (try IrisArtifacts.directory), toPath: root + "/iris")
            try S3ProviderTests.randomData(3 << 20).write(to: URL(fileURLWithPath: root + "/big.bin"))
            server = try await FixtureServer(root: root, logDirectory: workspace.logs)
        }

        func fetch(_ url: String, environment: [String: String] = [:], attempts: Int = 4) async throws -> (
            StagingDirectory, FetchReport
        ) {
            // Production part sizes: a 3 MiB file is one probe request.
            let engine = workspace.engine(partSize: 16 << 20, threshold: 64 << 20, attempts: attempts)
            let provider = HTTPStorageProvider(engine: engine, environment: environment)
            return try await workspace.fetch(provider, url)
        }

        func stop() async {
            await workspace.stop()
            await server.stop()
        }
    }

    @Test func aPlainFileIsNamedAfterTheLastPathSegment() async throws {
        let w = try await World()
        let (staging, report) = try await w.fetch(w.server.url(file: "iris/model.joblib?token=abc"))
        #expect(contents(of: staging.root) == ["model.joblib"])
        let size = try FileSystem.fileSize(w.root + "/iris/model.joblib")
        #expect(report.files == 1 && report.bytes == size)
        #expect(report.checks.counts == ["size": 1], "a plain HTTP server publishes no checksum")
        #expect(
            FileManager.default.contents(atPath: staging.root + "/model.joblib")
                == FileManager.default.contents(atPath: w.root + "/iris/model.joblib"))
        await #expect(throws: UnsupportedStorage.self) { try await w.fetch(w.server.url(file: "iris/")) }
        await w.stop()
    }

    @Test func transferLanesStartWithWorkAndEndAfterAnIdleSpell() async throws {
        let w = try await World()
        let url = w.server.url(file: "iris/model.joblib")
        func burst(_ pool: TransferPool, _ count: Int) async throws -> [Int] {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<count { group.addTask { try await pool.perform(HTTPRequest(url: url)).status } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        // Lanes that outlive the test: started by work only, never more than the limit.
        var patient = TransportSettings()
        patient.idleRelease = .seconds(600)
        let kept = TransferPool(lanes: 3, settings: patient)
        #expect(kept.liveLanes == 0)
        #expect(try await burst(kept, 6) == Array(repeating: 200, count: 6))
        #expect((1...3).contains(kept.liveLanes))
        await kept.shutdown()
        #expect(kept.liveLanes == 0)

        // Lanes with a short idle spell end, and start again for new work; with a 1 ms
        // spell, work keeps arriving while lanes are ending, and none of it is lost.
        var brief = TransportSettings()
        brief.idleRelease = .milliseconds(1)
        let ending = TransferPool(lanes: 3, settings: brief)
        for _ in 0..<20 { #expect(try await burst(ending, 4) == Array(repeating: 200, count: 4)) }
        let deadline = ContinuousClock.now + .seconds(30)
        while ending.liveLanes > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(ending.liveLanes == 0)
        #expect(try await ending.perform(HTTPRequest(url: url)).status == 200)
        await ending.shutdown()
        #expect(ending.liveLanes == 0)
        await w.stop()
    }

    @Test func archivesAreExtractedByNameOrContentType() async throws {
        let w = try await World()
        let (byName, _) = try await w.fetch(w.server.url(file: "iris.tar.gz"))
        #expect(contents(of: byName.root) == ["model-settings.json", "model.joblib"])
        try await w.server.addRules([["path": "/files/blob", "content_type": "application/zip"]])
        let (byType, report) = try await w.fetch(w.server.url(file: "blob"))
        #expect(contents(of: byType.root) == ["model-settings.json", "model.joblib"])
        #expect(report.files == 2)
        await w.stop()
    }

    @Test func errorStatusesAreRefusedAndOnlyServerErrorsRetried() async throws {
        let w = try await World()
        let missing = await #expect(throws: DownloadFailed.self) {
            try await w.fetch(w.server.url(file: "missing.tgz"))
        }
        #expect(missing?.isTransient == false)
        #expect(missing?.description.contains("HTTP 404") == true)
        #expect(try await w.server.log().filter { $0.path == "/files/missing.tgz" }.count == 1)

        try await w.server.addRules([["path": "/files/iris.tar.gz", "status": 503, "times": 2]])
        _ = try await w.fetch(w.server.url(file: "iris.tar.gz"))
        #expect(try await w.server.log().filter { $0.path == "/files/iris.tar.gz" }.map(\.status) == [503, 503, 206])
        await w.stop()
    }

    @Test func aBrokenTransferResumesWithARangeAndTheSameValidator() async throws {
        let w = try await World()
        try await w.server.addRules([["path": "/files/big.bin", "truncate_after": 100_000, "times": 1]])
        let (staging, _) = try await w.fetch(w.server.url(file: "big.bin"))
        #expect(
            FileManager.default.contents(atPath: staging.root + "/big.bin")
                == FileManager.default.contents(atPath: w.root + "/big.bin"))
        let gets = try await w.server.log().filter { $0.path == "/files/big.bin" }
        #expect(gets.map(\.range) == ["bytes=0-16777215", "bytes=100000-16777215"])
        await w.stop()
    }

    @Test func aResumeTheServerDoesNotHonourStartsOver() async throws {
        let w = try await World()
        try await w.server.addRules([
            ["path": "/files/big.bin", "truncate_after": 100_000, "times": 1],
            ["path": "/files/big.bin", "ignore_range": true, "times": 1],
        ])
        let (staging, _) = try await w.fetch(w.server.url(file: "big.bin"))
        #expect(
            FileManager.default.contents(atPath: staging.root + "/big.bin")
                == FileManager.default.contents(atPath: w.root + "/big.bin"))
        #expect(try await w.server.log().filter { $0.path == "/files/big.bin" }.count == 3)
        await w.stop()
    }

    @Test func aStalledTransferIsAbortedAndRetried() async throws {
        let w = try await World(stallTimeout: .seconds(2))
        // The server goes silent for 2 minutes; with a 2 s stall timeout the transfer resumes
        // long before (the bound leaves room for a machine that pauses under load).
        try await w.server.addRules([
            ["path": "/files/big.bin", "stall_after": 50_000, "stall_seconds": 120, "times": 1]
        ])
        let started = ContinuousClock.now
        let (staging, _) = try await w.fetch(w.server.url(file: "big.bin"))
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(
            FileManager.default.contents(atPath: staging.root + "/big.bin")
                == FileManager.default.contents(atPath: w.root + "/big.bin"))
        await w.stop()
    }

    @Test func hostHeadersAreSentButNeverFollowARedirectToAnotherHost() async throws {
        let w = try await World()
        let environment = ["127.0.0.1:\(w.server.port)-headers": #"{"X-Test-Token": "s3cr3t"}"#]
        _ = try await w.fetch(w.server.url(file: "iris.tar.gz"), environment: environment)
        #expect(try await w.server.log().last?.xTestToken == "s3cr3t")

        try await w.server.clearLog()
        try await w.server.addRules([
            ["path": "/files/same-host", "redirect": "/files/iris.tar.gz"],
            ["path": "/files/other-host", "redirect": "http://localhost:\(w.server.port)/files/iris.tar.gz"],
        ])
        _ = try await w.fetch(w.server.url(file: "same-host"), environment: environment)
        _ = try await w.fetch(w.server.url(file: "other-host"), environment: environment)
        let tokens = try await w.server.log().map { $0.xTestToken ?? "-" }
        #expect(tokens == ["s3cr3t", "s3cr3t", "s3cr3t", "-"])

        // Same host, another port: another origin, so a `host:port-headers` value stays behind.
        let other = try await FixtureServer(root: w.root, logDirectory: w.workspace.logs)
        try await w.server.addRules([["path": "/files/other-port", "redirect": other.url(file: "iris.tar.gz")]])
        _ = try await w.fetch(w.server.url(file: "other-port"), environment: environment)
        #expect(try await w.server.log().last?.xTestToken == "s3cr3t")
        #expect(try await other.log().map { $0.xTestToken ?? "-" } == ["-"])
        await other.stop()

        let bad = await #expect(throws: ConfigurationError.self) {
            try await w.fetch(w.server.url(file: "iris.tar.gz"), environment: ["127.0.0.1-headers": "{not json s3cr3t"])
        }
        #expect(bad?.description.contains("s3cr3t") == false)
        await w.stop()
    }

    @Test("a tar entry over 1 GiB is extracted whole, not truncated")
    func hugeTarEntry() async throws {
        let w = try await World()
        try run(
            try TestPaths.venvTool("tools", "python3"),
            [
                "-c",
                """
                import tarfile, sys
                # Written sparse (the zeros are a hole), so the test costs the disk one
                # GiB, the agent's copy, not three.
                size = (1 << 30) + 1
                info = tarfile.TarInfo("huge.bin"); info.size = size
                with open(sys.argv[1] + "/huge.tar", "wb") as f:
                    f.write(info.tobuf(format=tarfile.GNU_FORMAT))
                    f.seek(size - 6, 1); f.write(b"TAIL!!")
                    f.write(bytes((-size) % 512 + 1024))
                """,
                w.root,
            ])
        let (staging, report) = try await w.fetch(w.server.url(file: "huge.tar"))
        #expect(report.bytes == (1 << 30) + 1)
        let file = try OpenFile(reading: staging.root + "/huge.bin")
        #expect(try file.size() == (1 << 30) + 1)
        var tail = [UInt8](repeating: 0, count: 6)
        _ = try tail.withUnsafeMutableBytes { try file.read(into: $0, at: (1 << 30) - 5) }
        #expect(String(decoding: tail, as: UTF8.self) == "TAIL!!")
        staging.discard()
        await w.stop()
    }
}

@Suite struct LocalStorageTests {
    func fetch(_ path: String, store: ModelStore, roots: [String]? = nil) async throws -> (
        StagingDirectory, FetchReport
    ) {
        let staging = try store.makeStaging(for: try ModelName(validating: "m"))
        let provider = LocalStorageProvider(
            roots: roots ?? [FileSystem.parentPath(store.modelDir)], forbidden: [store.modelDir, store.stagingRoot])
        return (staging, try await provider.fetch(.local(path: path), into: staging, logger: Logger(label: "t")))
    }

    @Test func copiesAFileOrADirectoryFollowingSymlinks() async throws {
        let temp = try TemporaryDirectory("local")
        let store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: Logger(label: "t"))
        try write("weights", to: temp.path + "/src/sub/w.bin")
        try write("config", to: temp.path + "/elsewhere/config.pbtxt")
        try FileManager.default.createSymbolicLink(
            atPath: temp.path + "/src/config.pbtxt", withDestinationPath: temp.path + "/elsewhere/config.pbtxt")

        let (dir, report) = try await fetch(temp.path + "/src", store: store)
        #expect(report == FetchReport(files: 2, bytes: 13))
        #expect(try String(contentsOfFile: dir.root + "/config.pbtxt", encoding: .utf8) == "config")
        #expect(FileSystem.kind(dir.root + "/config.pbtxt") == .file)
        #expect(try String(contentsOfFile: dir.root + "/sub/w.bin", encoding: .utf8) == "weights")

        let (single, _) = try await fetch(temp.path + "/src/sub/w.bin", store: store)
        #expect(contents(of: single.root) == ["w.bin"])

        // Links that reach one directory twice (each level doubling the tree) are refused.
        for level in 0..<4 {
            let dir = temp.path + "/dag/l\(level)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for link in ["a", "b"] {
                try FileManager.default.createSymbolicLink(
                    atPath: dir + "/" + link, withDestinationPath: "../l\(level + 1)")
            }
        }
        try write("leaf", to: temp.path + "/dag/l4/file.txt")
        let twice = await #expect(throws: LocalSourceError.self) {
            try await fetch(temp.path + "/dag/l0", store: store)
        }
        #expect(twice?.description.contains("a second time") == true)

        try FileManager.default.createDirectory(atPath: temp.path + "/empty", withIntermediateDirectories: true)
        await #expect(throws: LocalSourceError.self) { try await fetch(temp.path + "/empty", store: store) }
        await #expect(throws: LocalSourceError.self) { try await fetch(temp.path + "/missing", store: store) }
    }
}
