import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// The s3:// provider against `rclone serve s3` (which verifies SigV4) and the transfer
/// engine's ranged parts, retries and verification, in process.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct S3ProviderTests {
    final class World: @unchecked Sendable {
        let workspace: ProviderWorkspace
        let rclone: RcloneS3Server
        var temp: TemporaryDirectory { workspace.temp }
        var logs: String { workspace.logs }
        var store: ModelStore { workspace.store }
        var pool: TransferPool { workspace.pool }

        init(stallTimeout: Duration = ProviderWorkspace.patientStallTimeout) async throws {
            workspace = try ProviderWorkspace("s3", stallTimeout: stallTimeout)
            rclone = try await RcloneS3Server(root: workspace.temp.path + "/buckets", logDirectory: workspace.logs)
        }

        func fetch(
            _ uri: String, _ environment: [String: String]? = nil, partSize: Int64 = 1 << 20, threshold: Int64 = 2 << 20
        ) async throws -> (StagingDirectory, FetchReport) {
            let provider = StorageFactory.s3Provider(
                engine: workspace.engine(partSize: partSize, threshold: threshold),
                environment: environment ?? rclone.environment(), logger: Logger(label: "test"))
            return try await workspace.fetch(provider, uri)
        }

        func stop() async {
            await workspace.stop()
            await rclone.stop()
        }
    }

    /// Random bytes from the kernel in large reads: a per-word generator loop takes over
    /// 20 s for 300 MiB in a debug build and holds a cooperative thread all that time,
    /// starving every other test's waits.
    static func randomData(_ count: Int) -> Data {
        let source = FileHandle(forReadingAtPath: "/dev/urandom")!
        defer { try? source.close() }
        var data = Data(capacity: count)
        while data.count < count {
            let chunk = source.readData(ofLength: min(count - data.count, 16 << 20))
            precondition(!chunk.isEmpty, "/dev/urandom returned nothing")
            data.append(chunk)
        }
        return data
    }

    @Test func exactPrefixesSingleObjectsNestedAndAwkwardKeys() async throws {
        let w = try await World()
        try w.rclone.put("models", "m1/a.txt", "a")
        try w.rclone.put("models", "m1/sub/deeper/b.bin", "b")
        try w.rclone.put("models", "m10/sibling.txt", "must not be fetched")
        try w.rclone.put("models", "m1.txt", "must not be fetched either")
        try w.rclone.put("models", "single/model.joblib", "joblib")
        let awkward = [
            "a b.txt", "a+b.txt", "a=b.txt", "a~b-c_d.txt", "ü/ö.txt", "x%20y.txt", "semi;colon&amp.txt", "q'uote.txt",
        ]
        for name in awkward { try w.rclone.put("models", "awk/" + name, name) }

        let (m1, report) = try await w.fetch("s3://models/m1")
        #expect(report.files == 2 && report.bytes == 2)
        #expect(report.checks.counts == ["md5": 2], "rclone's ETags are MD5s")
        #expect(contents(of: m1.root) == ["a.txt", "sub"])
        #expect(try String(contentsOfFile: m1.root + "/sub/deeper/b.bin", encoding: .utf8) == "b")

        let (single, _) = try await w.fetch("s3://models/single/model.joblib")
        #expect(contents(of: single.root) == ["model.joblib"])

        let (slash, _) = try await w.fetch("s3://models/m1/")
        #expect(contents(of: slash.root) == ["a.txt", "sub"])

        let (awk, _) = try await w.fetch("s3://models/awk")
        for name in awkward {
            #expect(try String(contentsOfFile: awk.root + "/" + name, encoding: .utf8) == name)
        }

        let missing = await #expect(throws: NoObjectsFound.self) { try await w.fetch("s3://models/nothing") }
        #expect(missing?.description == "no objects found at s3://models/nothing")
        await w.stop()
    }

    @Test func listingsFollowContinuationTokens() async throws {
        let w = try await World()
        for i in 0..<1050 { try w.rclone.put("models", String(format: "many/f%04d.txt", i), "\(i)") }
        let (staging, report) = try await w.fetch("s3://models/many")
        #expect(report.files == 1050)
        #expect(try String(contentsOfFile: staging.root + "/f1049.txt", encoding: .utf8) == "1049")

        // Small pages, directly: the same keys in the same order.
        let config = try S3Configuration.from(environment: w.rclone.environment())
        let credentials = AWSCredentialProvider(
            source: S3Configuration.credentialSource(environment: w.rclone.environment(), region: "us-east-1"),
            pool: w.pool, logger: Logger(label: "t"))
        let client = S3Client(config: config, credentials: credentials, pool: w.pool)
        let paged = try await client.list(bucket: "models", prefix: "many/", pageSize: 7)
        let whole = try await client.list(bucket: "models", prefix: "many/")
        #expect(paged.count == 1050 && paged.map(\.key) == whole.map(\.key))
        await w.stop()
    }

    @Test func aWrongSecretIsAClear403AndNoSecretLeaks() async throws {
        let w = try await World()
        try w.rclone.put("models", "m1/a.txt", "a")
        let error = await #expect(throws: S3Error.self) {
            try await w.fetch("s3://models/m1", w.rclone.environment(secret: "wrong-secret-value"))
        }
        #expect(error?.status == 403 && error?.code == "SignatureDoesNotMatch")
        #expect(error?.isTransient == false)
        #expect(error?.description.contains("wrong-secret-value") == false)
        await w.stop()
    }

    @Test func anonymousBuckets() async throws {
        let w = try await World()
        let open = try await RcloneS3Server(root: w.temp.path + "/public", auth: false, logDirectory: w.logs)
        try open.put("public", "m/a.txt", "open")
        let (asked, _) = try await w.fetch(
            "s3://public/m",
            [
                "AWS_ENDPOINT_URL": open.endpoint, "awsAnonymousCredential": "true",
                "AWS_ACCESS_KEY_ID": "ignored", "AWS_SECRET_ACCESS_KEY": "ignored",
            ])
        #expect(contents(of: asked.root) == ["a.txt"])
        let (nothingConfigured, _) = try await w.fetch(
            "s3://public/m", ["S3_ENDPOINT": "127.0.0.1:\(open.port)", "S3_USE_HTTPS": "0"])
        #expect(contents(of: nothingConfigured.root) == ["a.txt"])
        await open.stop()
        await w.stop()
    }

    @Test("a 300 MiB object in ranged parts, compared byte for byte and MD5-verified")
    func largeObjectInParts() async throws {
        let w = try await World()
        let data = Self.randomData(300 << 20)
        try w.rclone.put("models", "big/weights.bin", data)
        let (staging, report) = try await w.fetch("s3://models/big", partSize: 8 << 20, threshold: 64 << 20)
        #expect(report.bytes == 300 << 20)
        #expect(FileManager.default.contents(atPath: staging.root + "/weights.bin") == data)
        staging.discard()
        await w.stop()
    }

    @Test func corruptAndShortBodiesAreDetectedAndRetried() async throws {
        let w = try await World()
        let data = Self.randomData(5 << 20 + 123)
        try w.rclone.put("models", "m/w.bin", data)
        try w.rclone.put("models", "small/s.bin", Self.randomData(200_000))
        let proxy = try await FixtureServer(upstream: w.rclone.endpoint, logDirectory: w.logs)
        var env = w.rclone.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL

        // One part arrives with a flipped byte: the MD5 check fails and the file is fetched again.
        try await proxy.addRules([["method": "GET", "path": "/models/m/w.bin", "corrupt": true, "times": 1]])
        let (staging, _) = try await w.fetch("s3://models/m", env)
        #expect(FileManager.default.contents(atPath: staging.root + "/w.bin") == data)
        let partGets = try await proxy.log().filter { $0.path == "/models/m/w.bin" && $0.method == "GET" }
        #expect(partGets.count == 12, "6 parts, twice")
        #expect(partGets.allSatisfy { $0.range != nil })

        // A small object (one stream) corrupted once, and one cut short once.
        try await proxy.clearLog()
        try await proxy.addRules([
            ["method": "GET", "path": "/models/small/s.bin", "corrupt": true, "times": 1],
            ["method": "GET", "path": "/models/small/s.bin", "truncate_after": 1000, "times": 1],
        ])
        let (small, _) = try await w.fetch("s3://models/small", env)
        #expect(try FileSystem.fileSize(small.root + "/s.bin") == 200_000)
        #expect(try await proxy.log().filter { $0.path == "/models/small/s.bin" }.count == 3)
        await proxy.stop()
        await w.stop()
    }

    @Test func stallsAndSlowDownsAreRecovered() async throws {
        let w = try await World(stallTimeout: .seconds(2))
        let data = Self.randomData(6 << 20)
        try w.rclone.put("models", "m/w.bin", data)
        let proxy = try await FixtureServer(upstream: w.rclone.endpoint, logDirectory: w.logs)
        var env = w.rclone.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL
        let slowDown = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        try await proxy.addRules([
            ["method": "GET", "path": "/models/m/w.bin", "status": 503, "body": slowDown, "times": 3],
            ["method": "GET", "path": "/models/m/w.bin", "stall_after": 4096, "stall_seconds": 120, "times": 1],
            ["method": "GET", "path": "/models/m/w.bin", "reset_after": 10000, "times": 1],
        ])
        let started = ContinuousClock.now
        let (staging, _) = try await w.fetch("s3://models/m", env)
        // Far less than the 2-minute stall; room for a machine that pauses under load.
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(FileManager.default.contents(atPath: staging.root + "/w.bin") == data)
        let statuses = try await proxy.log().filter { $0.path == "/models/m/w.bin" }.map(\.status)
        #expect(statuses.filter { $0 == 503 }.count == 3)
        await proxy.stop()
        await w.stop()
    }

    @Test func aModelTooBigForTheDiskIsRefusedBeforeAnyDownload() async throws {
        let w = try await World()
        let server = try await RcloneS3Server(root: w.temp.path + "/sparse", md5ETags: false, logDirectory: w.logs)
        try server.put("models", "huge/small.txt", "x")
        try server.put("models", "huge/weights.bin", Data())
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: server.root + "/models/huge/weights.bin"))
        try handle.truncate(atOffset: 1 << 43)  // sparse: an 8 TiB object on a small disk
        try handle.close()
        let proxy = try await FixtureServer(upstream: server.endpoint, logDirectory: w.logs)
        var env = server.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL
        let error = await #expect(throws: InsufficientDiskSpace.self) { try await w.fetch("s3://models/huge", env) }
        #expect(error?.needed ?? 0 > 1 << 43)
        #expect(try await proxy.log().allSatisfy { $0.range == nil && !$0.path.contains("weights.bin") })
        #expect(contents(of: w.store.stagingRoot).isEmpty)
        await proxy.stop()
        await server.stop()
        await w.stop()
    }

    @Test func hostileKeysRefuseTheModel() async throws {
        let objects = [
            ListedObject(key: "m/ok.txt", size: 1), ListedObject(key: "m/../../etc/passwd", size: 1),
        ]
        #expect(throws: UnsafePath.self) { try ObjectLayout.plan(prefix: "m", objects: objects) }
        let clash = [ListedObject(key: "m/a//b", size: 1), ListedObject(key: "m/a/b", size: 1)]
        #expect(throws: UnsafePath.self) { try ObjectLayout.plan(prefix: "m", objects: clash) }
        let layout = try ObjectLayout.plan(
            prefix: "m",
            objects: [
                ListedObject(key: "m", size: 1), ListedObject(key: "m/", size: 0), ListedObject(key: "m/d/", size: 0),
                ListedObject(key: "m/x", size: 1), ListedObject(key: "m10/y", size: 1),
                ListedObject(key: "m//z", size: 1),
            ])
        #expect(layout.map(\.path) == ["m", "x", "z"])
    }
}

extension S3ProviderTests {
    @Test func aServerIgnoringRangesGetsOneStream() async throws {
        let w = try await World()
        let data = Self.randomData(5 << 20)
        try w.rclone.put("models", "m/w.bin", data)
        let proxy = try await FixtureServer(upstream: w.rclone.endpoint, logDirectory: w.logs)
        var env = w.rclone.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL
        try await proxy.addRules([["method": "GET", "path": "/models/m/w.bin", "ignore_range": true]])
        let (staging, _) = try await w.fetch("s3://models/m", env)
        #expect(FileManager.default.contents(atPath: staging.root + "/w.bin") == data)
        let gets = try await proxy.log().filter { $0.path == "/models/m/w.bin" && $0.method == "GET" }
        #expect(gets.contains { $0.range != nil }, "parts were tried first")
        #expect(gets.filter { $0.range == nil }.map(\.status) == [200], "then one plain GET")
        await proxy.stop()
        await w.stop()
    }
}

/// S3's additional checksums (x-amz-checksum-*). `rclone serve s3` keeps the checksum a
/// PUT declares (it does not check it) and returns it on HEAD and GET with checksum mode,
/// so a wrong one stands for an object corrupted at rest.
extension S3ProviderTests {
    /// PUTs `data` through the agent's own signer with `checksum` as S3 headers.
    static func put(
        _ w: World, _ key: String, _ data: [UInt8], checksum: (name: String, value: String)
    ) async throws {
        var request = HTTPRequest(
            method: "PUT", url: w.rclone.endpoint + "/models/" + key, headers: [checksum], body: data)
        SigV4Signer(region: "us-east-1", service: "s3").sign(
            &request,
            credentials: AWSCredentials(
                accessKeyId: RcloneS3Server.accessKey, secretAccessKey: RcloneS3Server.secretKey),
            payloadHash: "UNSIGNED-PAYLOAD")
        let response = try await w.pool.perform(request)
        #expect(response.status == 200, "PUT \(key)")
    }

    static func crc(_ algorithm: CRCAlgorithm, _ data: [UInt8]) -> UInt64 {
        data.withUnsafeBytes { algorithm.update(0, $0) }
    }

    static func header(_ checksum: Checksum) -> (name: String, value: String) {
        let parts = checksum.description.split(separator: " ")
        return ("x-amz-checksum-" + parts[0], String(parts[1]))
    }

    @Test("CRC-64/NVME, CRC-32C and CRC-32 are verified (streams and parts) and reported")
    func additionalChecksumsAreVerified() async throws {
        let w = try await World()
        try w.rclone.put("models", "ck/.keep", "")
        let small = [UInt8](Self.randomData(200_000))
        let large = [UInt8](Self.randomData(5 << 20 + 123))
        let other = [UInt8](Self.randomData(3 << 20))
        try await Self.put(
            w, "ck/small.bin", small, checksum: Self.header(.crc(.crc64nvme, Self.crc(.crc64nvme, small))))
        try await Self.put(
            w, "ck/large.bin", large, checksum: Self.header(.crc(.crc32c, Self.crc(.crc32c, large))))
        try await Self.put(
            w, "ck/other.bin", other, checksum: Self.header(.crc(.crc32, Self.crc(.crc32, other))))
        let proxy = try await FixtureServer(upstream: w.rclone.endpoint, logDirectory: w.logs)
        var env = w.rclone.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL

        let (staging, report) = try await w.fetch("s3://models/ck", env)
        #expect(report.checks.counts == ["crc64nvme": 1, "crc32c": 1, "crc32": 1, "md5": 1], "\(report.checks)")
        #expect(FileManager.default.contents(atPath: staging.root + "/large.bin") == Data(large))
        #expect(FileManager.default.contents(atPath: staging.root + "/small.bin") == Data(small))
        staging.discard()
        let log = try await proxy.log()
        #expect(
            log.filter { $0.method == "HEAD" }.map(\.path).sorted() == [
                "/models/ck/large.bin", "/models/ck/other.bin",
            ],
            "one HEAD per file fetched in parts, none for streams")

        func largeGets() async throws -> Int {
            try await proxy.log().filter { $0.path == "/models/ck/large.bin" && $0.method == "GET" }.count
        }

        // A part corrupted in flight fails the CRC: the file is fetched again.
        try await proxy.clearLog()
        try await proxy.addRules([["method": "GET", "path": "/models/ck/large.bin", "corrupt": true, "times": 1]])
        let (again, _) = try await w.fetch("s3://models/ck", env)
        #expect(FileManager.default.contents(atPath: again.root + "/large.bin") == Data(large))
        #expect(try await largeGets() == 12)
        again.discard()

        // A part cut short resumes where it stopped, and its CRC (computed as the bytes are
        // written) continues with it: one more GET, no second round. The first part is the
        // one cut: the parts arrive in any order, and the last is shorter than the cut.
        try await proxy.clearLog()
        try await proxy.addRules([
            [
                "method": "GET", "path": "/models/ck/large.bin", "range_prefix": "bytes=0-",
                "truncate_after": 300_000, "times": 1,
            ]
        ])
        let (resumed, resumedReport) = try await w.fetch("s3://models/ck", env)
        #expect(FileManager.default.contents(atPath: resumed.root + "/large.bin") == Data(large))
        #expect(resumedReport.checks.counts["crc32c"] == 1)
        #expect(try await largeGets() == 7)
        resumed.discard()

        // A store that runs every range to the end of the object: each part keeps its own
        // bytes and stops there, one GET per part.
        try await proxy.clearLog()
        try await proxy.addRules([["method": "GET", "path": "/models/ck/large.bin", "open_end": true]])
        let (openEnded, _) = try await w.fetch("s3://models/ck", env)
        #expect(FileManager.default.contents(atPath: openEnded.root + "/large.bin") == Data(large))
        #expect(try await largeGets() == 6)
        openEnded.discard()
        try await proxy.clearRules()

        // Answers that name no version, or another one (a store ignoring If-Match): a stream
        // without an ETag does not vouch for itself with its CRC header (the listing's MD5
        // is checked), and a part of another version is never kept.
        try await proxy.addRules([
            ["method": "GET", "path": "/models/ck/small.bin", "response_etag": "", "times": 1],
            ["method": "GET", "path": "/models/ck/large.bin", "response_etag": "\"0123abcd-2\""],
        ])
        let changed = await #expect(throws: DownloadFailed.self) { try await w.fetch("s3://models/ck", env) }
        #expect("\(changed.map { "\($0)" } ?? "")".contains("large.bin changed during the download"))
        try await proxy.clearRules()
        try await proxy.addRules([["method": "GET", "path": "/models/ck/small.bin", "response_etag": ""]])
        let (unnamed, unnamedReport) = try await w.fetch("s3://models/ck", env)
        #expect(unnamedReport.checks.counts == ["md5": 2, "crc32c": 1, "crc32": 1], "\(unnamedReport.checks)")
        #expect(FileManager.default.contents(atPath: unnamed.root + "/small.bin") == Data(small))
        unnamed.discard()
        await proxy.stop()
        await w.stop()
    }

    @Test("an object whose stored CRC disagrees with its bytes fails, leaving nothing")
    func aWrongAdditionalChecksumFails() async throws {
        let w = try await World()
        try w.rclone.put("models", ".keep", "")
        for (key, size) in [("bad/stream.bin", 100_000), ("badparts/parts.bin", 3 << 20)] {
            let data = [UInt8](Self.randomData(size))
            let wrong = Self.crc(.crc64nvme, data) ^ 1
            try await Self.put(w, key, data, checksum: Self.header(.crc(.crc64nvme, wrong)))
            let failure = await #expect(throws: DownloadFailed.self) {
                try await w.fetch("s3://models/" + key.split(separator: "/")[0])
            }
            let message = failure.map { "\($0)" } ?? ""
            #expect(message.contains("crc64nvme"), "the error names the check: \(message)")
            #expect(message.contains("the same content came twice"), "two equal results end the rounds: \(message)")
        }
        #expect(
            try FileSystem.listDirectory(w.store.stagingRoot).filter {
                $0.hasSuffix(".staging") || $0.hasSuffix(".scratch")
            }
            .isEmpty, "no partial files")

        // With checks off only sizes count, and the object comes down.
        let provider = StorageFactory.s3Provider(
            engine: {
                var engine = w.workspace.engine()
                engine.verifyChecksums = false
                return engine
            }(), environment: w.rclone.environment(), logger: Logger(label: "test"))
        let (staging, report) = try await w.workspace.fetch(provider, "s3://models/badparts")
        #expect(report.checks.counts == ["size": 1])
        staging.discard()
        await w.stop()
    }

    /// Some S3-compatible stores (Backblaze B2) answer 400 to x-amz-checksum-mode. The
    /// agent stops asking and checks what the listing gave; the SDKs' opt-out
    /// (AWS_RESPONSE_CHECKSUM_VALIDATION=when_required) never asks.
    @Test func aStoreRefusingChecksumModeStillServesItsObjects() async throws {
        let w = try await World()
        try w.rclone.put("models", ".keep", "")
        let small = [UInt8](Self.randomData(100_000))
        let large = [UInt8](Self.randomData(3 << 20))
        try await Self.put(w, "b2/small.bin", small, checksum: Self.header(.crc(.crc32c, Self.crc(.crc32c, small))))
        try await Self.put(w, "b2/large.bin", large, checksum: Self.header(.crc(.crc32c, Self.crc(.crc32c, large))))
        let proxy = try await FixtureServer(upstream: w.rclone.endpoint, logDirectory: w.logs)
        try await proxy.addRules([
            [
                "if_header": "x-amz-checksum-mode", "status": 400,
                "body":
                    "<Error><Code>InvalidArgument</Code><Message>Unsupported header 'x-amz-checksum-mode' received for this API call.</Message></Error>",
            ]
        ])
        var env = w.rclone.environment()
        env["AWS_ENDPOINT_URL"] = proxy.baseURL

        // The parts' file, with no lookup, falls back to its MD5 ETag. rclone sends a stored
        // checksum with every GET, asked for or not, so the streamed file keeps its CRC.
        let (staging, report) = try await w.fetch("s3://models/b2", env)
        #expect(report.checks.counts == ["md5": 1, "crc32c": 1], "\(report.checks)")
        #expect(FileManager.default.contents(atPath: staging.root + "/small.bin") == Data(small))
        #expect(FileManager.default.contents(atPath: staging.root + "/large.bin") == Data(large))
        staging.discard()
        #expect(try await proxy.log().contains { $0.status == 400 }, "the header was refused")

        try await proxy.clearLog()
        env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = "when_required"
        let (plain, plainReport) = try await w.fetch("s3://models/b2", env)
        #expect(plainReport.checks.counts == ["md5": 1, "crc32c": 1])
        #expect(try await proxy.log().allSatisfy { $0.status != 400 }, "never asked")
        #expect(try await proxy.log().allSatisfy { $0.method != "HEAD" }, "no lookup without checksum mode")
        plain.discard()
        await proxy.stop()
        await w.stop()
    }
}
