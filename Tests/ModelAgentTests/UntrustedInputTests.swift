import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// Inputs that used to trap (an overflow is SIGILL: every model in the pod goes down, and
/// at every restart again): each is now a clear error for its own entry or archive.
@Suite struct UntrustedQuantityTests {
    @Test(arguments: [
        "9999999999999999999999Ei", "1000000000000000000000Ei", "-5Gi", "-0", "8Ei", "9223372036854775808",
        "1e-9223372036854775808", "1e9223372036854775807", "99999999999999999999999999999999999999", "1e24Ei",
        "12345678901234567890", "0.00000000000000000000000000000000000000000000000000012345678901234567890",
    ])
    func refusedWithoutTrapping(_ text: String) {
        #expect(throws: InvalidQuantity.self) { try MemoryQuantity(parsing: text) }
    }

    @Test func extremesThatFitAreExact() throws {
        let tiny = "0." + String(repeating: "0", count: 51) + "1"
        #expect(try MemoryQuantity(parsing: tiny).nanos == 1)
        #expect(try MemoryQuantity(parsing: "7Ei").bytes == 7 << 60)
        #expect(try MemoryQuantity(parsing: "9223372036854775807").bytes == Int64.max)
        #expect(try MemoryQuantity(parsing: "+1Gi") == MemoryQuantity(parsing: "1073741824"))
        #expect(try MemoryQuantity(parsing: "0.5").bytes == 1)
    }

    @Test func aBadMemoryRefusesOnlyItsOwnEntry() throws {
        let json = """
            [{"modelName": "huge", "modelSpec": {"storageUri": "s3://b/h", "memory": "9999999999999999999999Ei"}},
             {"modelName": "negative", "modelSpec": {"storageUri": "s3://b/n", "memory": "-5Gi"}},
             {"modelName": "fine", "modelSpec": {"storageUri": "s3://b/f", "memory": "1Gi"}}]
            """
        let file = try ModelsFile.parse(Array(json.utf8))
        #expect(file.entries.map(\.name.rawValue) == ["fine"])
        #expect(file.refusals.compactMap { $0.name?.rawValue } == ["huge", "negative"])
        #expect(file.refusals[1].reason.contains("negative"))
    }
}

/// Tar headers built byte by byte, so each hostile field can be set exactly.
enum TarBytes {
    static func header(name: String, type: UInt8, size: Int64 = 0, sizeField: [UInt8]? = nil) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) {
            for (i, b) in bytes.enumerated() { block[offset + i] = b }
        }
        func octal(_ value: Int64, width: Int) -> [UInt8] {
            let digits = String(value, radix: 8)
            return Array((String(repeating: "0", count: width - 1 - digits.count) + digits).utf8) + [0]
        }
        put(Array(name.utf8.prefix(100)), at: 0)
        put(octal(0o644, width: 8), at: 100)
        put(sizeField ?? octal(size, width: 12), at: 124)
        put(octal(0, width: 12), at: 136)
        block[156] = type
        put(Array("ustar\0".utf8), at: 257)
        put(Array("00".utf8), at: 263)
        put([UInt8](repeating: 0x20, count: 8), at: 148)
        let sum = block.reduce(0) { $0 + Int64($1) }
        put(octal(sum, width: 7) + [0x20], at: 148)
        return block
    }

    static func padded(_ data: [UInt8]) -> [UInt8] {
        data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    /// A pax record: "<length> <key>=<value>\n", the length counting itself.
    static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).count + body.utf8.count != length { length += 1 }
        return Array((String(length) + body).utf8)
    }

    static func pax(_ records: [UInt8]) -> [UInt8] {
        header(name: "PaxHeader", type: UInt8(ascii: "x"), size: Int64(records.count)) + padded(records)
    }

    static let end = [UInt8](repeating: 0, count: 1024)
}

@Suite struct HostileArchiveTests {
    func extract(_ bytes: [UInt8], as format: ArchiveFormat = .tar, limits: DownloadLimits = DownloadLimits()) throws
        -> FetchReport
    {
        let temp = try TemporaryDirectory("hostile")
        let store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: Logger(label: "t"))
        try Data(bytes).write(to: URL(fileURLWithPath: temp.path + "/a"))
        let staging = try store.makeStaging(for: try ModelName(validating: "m"))
        defer { staging.discard() }
        return try ArchiveFormat.extract(format, archive: temp.path + "/a", into: staging, limits: limits)
    }

    @Test func aWellFormedHandMadeTarExtracts() throws {
        let data = Array("hello".utf8)
        let tar =
            TarBytes.header(name: "a.txt", type: UInt8(ascii: "0"), size: 5) + TarBytes.padded(data) + TarBytes.end
        #expect(try extract(tar) == FetchReport(files: 1, bytes: 5))
    }

    @Test func paxSizeMinusOneBeforeALongNameEntry() {
        let tar =
            TarBytes.pax(TarBytes.paxRecord("size", "-1"))
            + TarBytes.header(name: "././@LongLink", type: UInt8(ascii: "L"), size: 8)
            + TarBytes.padded(Array("x".utf8))
            + TarBytes.end
        #expect(throws: ArchiveError.self) { try extract(tar) }
    }

    @Test(arguments: ["9223372036854775807", "99999999999999999999999"])
    func paxSizesPastEighteenDigitsAreRefused(_ size: String) {
        let tar =
            TarBytes.pax(TarBytes.paxRecord("size", size)) + TarBytes.header(name: "f", type: UInt8(ascii: "0"))
            + TarBytes.end
        let error = #expect(throws: ArchiveError.self) { try extract(tar) }
        #expect(error?.description.contains("pax size") == true)
    }

    @Test func aHugeDeclaredSizeIsChargedBeforeAnyByteIsWritten() {
        let tar =
            TarBytes.pax(TarBytes.paxRecord("size", "922337203685477580"))
            + TarBytes.header(
                name: "f", type: UInt8(ascii: "0")) + TarBytes.end
        let error = #expect(throws: ArchiveError.self) { try extract(tar) }
        #expect(error?.description.contains("--max-archive-ratio") == true)
    }

    @Test func hugeBase256Sizes() {
        for type in [UInt8(ascii: "0"), UInt8(ascii: "5"), UInt8(ascii: "x")] {
            let field: [UInt8] = [0x80] + [UInt8](repeating: 0xff, count: 11)
            let tar = TarBytes.header(name: "f", type: type, sizeField: field) + TarBytes.end
            #expect(throws: ArchiveError.self) { try extract(tar) }
            let negative: [UInt8] = [0xff] + [UInt8](repeating: 0xff, count: 11)
            #expect(throws: ArchiveError.self) {
                try extract(TarBytes.header(name: "f", type: type, sizeField: negative) + TarBytes.end)
            }
        }
    }

    @Test(arguments: [
        "9223372036854775807 path=x\n", "99999999999999999999 path=x\n", "1 x", "3 path=x\n", "0 path=x\n",
        " path=x\n", "30 path=x",
    ])
    func malformedPaxRecordLengths(_ records: String) {
        let tar = TarBytes.pax(Array(records.utf8)) + TarBytes.header(name: "f", type: UInt8(ascii: "0")) + TarBytes.end
        #expect(throws: ArchiveError.self) { try extract(tar) }
    }

    /// One stored entry whose central-directory sizes live in a zip64 extra field.
    static func zip64(size: UInt64, compressedSize: UInt64, endRecordOffset: UInt64? = nil) -> [UInt8] {
        func le(_ value: UInt64, _ bytes: Int) -> [UInt8] {
            (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        }
        let name = Array("a.txt".utf8)
        let data = Array("abc".utf8)
        var crc = CRC32.ieee()
        crc.update(data)
        let local =
            le(0x0403_4b50, 4) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(UInt64(crc.value), 4) + le(3, 4)
            + le(3, 4) + le(UInt64(name.count), 2) + le(0, 2) + name + data
        let extra = le(1, 2) + le(16, 2) + le(size, 8) + le(compressedSize, 8)
        let central =
            le(0x0201_4b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(UInt64(crc.value), 4)
            + le(0xffff_ffff, 4) + le(0xffff_ffff, 4) + le(UInt64(name.count), 2) + le(UInt64(extra.count), 2)
            + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + name + extra
        var out = local + central
        if let endRecordOffset {
            out += le(0x0706_4b50, 4) + le(0, 4) + le(endRecordOffset, 8) + le(1, 4)
        }
        out +=
            le(0x0605_4b50, 4) + le(0, 2) + le(0, 2) + le(1, 2) + le(1, 2) + le(UInt64(central.count), 4)
            + le(UInt64(local.count), 4) + le(0, 2)
        return out
    }

    @Test func zip64FieldsAboveInt64MaxAreRefused() throws {
        #expect(try extract(Self.zip64(size: 3, compressedSize: 3), as: .zip) == FetchReport(files: 1, bytes: 3))
        #expect(throws: ArchiveError.self) { try extract(Self.zip64(size: .max, compressedSize: 3), as: .zip) }
        #expect(throws: ArchiveError.self) { try extract(Self.zip64(size: 3, compressedSize: .max), as: .zip) }
        #expect(throws: ArchiveError.self) {
            try extract(Self.zip64(size: 3, compressedSize: 3, endRecordOffset: .max), as: .zip)
        }
        #expect(throws: (any Error).self) {
            try extract(Self.zip64(size: UInt64(Int64.max), compressedSize: UInt64(Int64.max)), as: .zip)
        }
    }

    @Test func aZipBombIsRefusedBeforeAnyByteIsWritten() throws {
        let temp = try TemporaryDirectory("bomb")
        try makeZipBomb(at: temp.path + "/bomb.zip", entries: 4, mebibytesEach: 64)
        let store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: Logger(label: "t"))
        let staging = try store.makeStaging(for: try ModelName(validating: "m"))
        let error = #expect(throws: ArchiveError.self) {
            try ArchiveFormat.extract(.zip, archive: temp.path + "/bomb.zip", into: staging)
        }
        #expect(error?.description.contains("--max-archive-ratio") == true)
        #expect(contents(of: staging.root).isEmpty)

        var limits = DownloadLimits()
        limits.maxArchiveRatio = 100_000
        limits.maxDownloadBytes = 100 << 20
        let capped = #expect(throws: ArchiveError.self) {
            try ArchiveFormat.extract(.zip, archive: temp.path + "/bomb.zip", into: staging, limits: limits)
        }
        #expect(capped?.description.contains("--max-download-size") == true)
        #expect(contents(of: staging.root).isEmpty)
    }

    @Test func theDiskBoundNeedsAnOperator() {
        let budget = ExtractionBudget(limit: 10, bound: .disk(available: 11))
        #expect(throws: Never.self) { try budget.charge(6, entry: "a") }
        let error = #expect(throws: InsufficientDiskSpace.self) { try budget.charge(6, entry: "b") }
        #expect(error?.isTransient == false)
        #expect(throws: ArchiveError.self) { try budget.charge(-1, entry: "c") }
    }
}

@Suite struct DiskPressureTests {
    @Test func aFullVolumeIsNotRetriedSoon() {
        #expect(SystemError("write", path: "/x", code: ENOSPC).isTransient == false)
        #expect(SystemError("write", path: "/x", code: ENOSPC).description.contains("volume is full"))
        #expect(SystemError("write", path: "/x", code: EIO).isTransient)
        #expect(TransferError.sink(SystemError("write", path: "/x", code: EDQUOT)).isTransient == false)
        #expect(InsufficientDiskSpace(path: "/m", needed: 2, available: 1).isTransient == false)
    }

    @Test func headroomIsProportionalWithASmallFloor() {
        #expect(DiskSpace.headroom(for: 1_000_000) == 1 << 20)
        #expect(DiskSpace.headroom(for: 10 << 30) == (10 << 30) / 50)
        // A 1 MB model now needs about 17 MB free (the writers' 16 MiB floor), where the old
        // fixed 64 MiB headroom refused it on a 64 MB volume.
        #expect(1_000_000 + max(DiskSpace.headroom(for: 1_000_000), 16 << 20) < 20 << 20)
    }
}

@Suite struct SecretHandlingTests {
    @Test func passwordsWithDelimitersNeverShow() {
        #expect(Redaction.uri("http://admin:pw#frag@host/x") == "http://<redacted>@host/x")
        #expect(Redaction.uri("https://admin:p?w@host/m.bin?sig=abc") == "https://<redacted>@host/m.bin?<redacted>")
        #expect(Redaction.uri("https://host/m.bin#part") == "https://host/m.bin")
        #expect(Redaction.uri("s3://bucket/key") == "s3://bucket/key")
        for uri in ["http://admin:pw#frag@host/x", "http://admin:p?w@host/x"] {
            let error = #expect(throws: UnsupportedStorage.self) { try StorageLocation.parse(uri) }
            #expect(error?.description.contains("pw") == false)
            #expect(error?.description.contains("p?w") == false)
        }
    }

    @Test func registeredSecretsAreScrubbedFromAnyText() {
        let redactor = SecretRedactor()
        redactor.registerSecrets(inURI: "https://user:Hunter2x@h/m.bin?X-Amz-Signature=SIGabc123&x=1")
        redactor.registerSecrets(inEnvironment: [
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "h:8443-headers": #"{"Authorization": "Bearer tok-987654"}"#,
            "PATH": "/usr/bin",
        ])
        let text =
            "user:Hunter2x sent SIGabc123 with wJalrXUtnFEMI and Bearer tok-987654 via dXNlcjpIdW50ZXIyeA== /usr/bin"
        let clean = redactor.redact(text)
        for secret in ["Hunter2x", "SIGabc123", "wJalrXUtnFEMI", "tok-987654", "dXNlcjpIdW50ZXIyeA=="] {
            #expect(!clean.contains(secret), "\(secret) in \(clean)")
        }
        #expect(clean.contains("/usr/bin"))
        redactor.register("ab")
        #expect(redactor.redact("about") == "about")
    }

    @Test func errorBodiesAreNeverCopiedRaw() {
        let echo = Array("GET /m?X-Amz-Signature=SIGabc\nAuthorization: Bearer abc\n".utf8)
        let plain = HTTPStatusError(status: 403, body: echo, context: "GET m")
        #expect(plain.description == "GET m: HTTP 403")
        let xml = Array("<Error><Code>AccessDenied</Code><Message>no</Message><Req>secret</Req></Error>".utf8)
        #expect(HTTPStatusError(status: 403, body: xml, context: "c").description == "c: HTTP 403: AccessDenied: no")
        let google = Array(#"{"error": {"code": 403, "message": "no access", "errors": [{"debug": "x"}]}}"#.utf8)
        #expect(GCSError(operation: "list", status: 403, body: google).message == "no access")
        #expect(GCSError(operation: "list", status: 403, body: echo).message.isEmpty)
    }

    @Test func credentialsFollowNoRedirectToAnotherOrigin() throws {
        let a = try #require(URLParts("http://127.0.0.1:8080/x"))
        #expect(a.origin == URLParts("http://127.0.0.1:8080/y")?.origin)
        #expect(a.origin != URLParts("http://127.0.0.1:8081/x")?.origin)
        #expect(a.origin != URLParts("https://127.0.0.1:8080/x")?.origin)
        #expect(URLParts("https://h/x")?.origin == URLParts("https://h:443/y")?.origin)
    }

    @Test func pvcURIsMapToTheKServeMount() throws {
        #expect(try StorageLocation.parse("pvc://claim/models/x") == .local(path: "/mnt/pvc/models/x"))
    }
}

/// Found by the pbtxt fuzz target: an unterminated string value trapped (a reversed range).
/// Reaching the expectations at all is the first check; an unterminated value is no field.
@Suite struct FuzzFindingsTests {
    @Test(arguments: ["pname: \"", "name: '", "a: \"x\" name: \"", "\"", "name: \"abc\\"])
    func unterminatedStringsInConfigPbtxt(_ text: String) {
        #expect(!ProtoText.topLevelFields(text).contains { $0.key == "name" })
        let (updated, changed) = ProtoText.settingName("m", in: text)
        #expect(changed && updated == "name: \"m\"\n" + text)
    }
}

@Suite struct ReviewFindingsTests {
    /// Zeros after a gzip member are padding; a member after padding is refused, however
    /// the input happens to be buffered.
    @Test(arguments: [1, 7, 256 << 10])
    func gzipPaddingIsTheEnd(bufferSize: Int) throws {
        let temp = try TemporaryDirectory("gz")
        try run(
            try TestPaths.venvTool("tools", "python3"),
            [
                "-c",
                """
                import gzip, sys
                a, b = gzip.compress(b"first", mtime=0), gzip.compress(b"second", mtime=0)
                open(sys.argv[1] + "/ok.gz", "wb").write(a + b + bytes(100))
                open(sys.argv[1] + "/bad.gz", "wb").write(a + bytes(100) + b)
                """,
                temp.path,
            ])
        func inflate(_ name: String) throws -> String {
            let source = try ZlibInflater(
                FileSpanSource(file: try OpenFile(reading: temp.path + "/" + name)), wrapper: .gzip,
                bufferSize: bufferSize)
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 3)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
                if n == 0 { break }
                out += buffer[..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
        #expect(try inflate("ok.gz") == "firstsecond")
        #expect(throws: ArchiveError.self) { try inflate("bad.gz") }
    }

    @Test func percentEncodedPasswordsAreRedactedAsSent() {
        let redactor = SecretRedactor()
        redactor.registerSecrets(inURI: "http://user:p%3Fss-word@h/x")
        let basic = Base64.encode(Array("user:p?ss-word".utf8))
        let clean = redactor.redact("password p?ss-word, header Basic \(basic)")
        #expect(!clean.contains("p?ss-word") && !clean.contains(basic))
    }

    @Test func aSlashInAPasswordIsRefusedNotShown() {
        let error = #expect(throws: UnsupportedStorage.self) { try StorageLocation.parse("http://u:pa/ss@h/x") }
        #expect(error?.description.contains("%2F") == true)
        #expect(throws: Never.self) { try StorageLocation.parse("http://[::1]:8080/m.bin") }
        #expect(throws: Never.self) { try StorageLocation.parse("https://host.example/models/m@v1/x.bin") }
        #expect(throws: Never.self) { try StorageLocation.parse("http://user:p%2Fw@host:80/x") }
    }

    @Test func renewedTokensReplaceTheirPredecessor() {
        let redactor = SecretRedactor()
        redactor.register("token-one-1234", key: "gcs")
        redactor.register("token-two-5678", key: "gcs")
        #expect(redactor.redact("token-one-1234 token-two-5678") == "token-one-1234 <redacted>")
    }
}

/// What a hostile run of the binary found (each failed before its fix).
@Suite struct HostileFindingsTests {
    @Test(arguments: [
        "http://h/a b.bin", "http://h:99999/x", "http://admin:p@ss@host/x", "http://h:0/x", "/tmp/x\u{0}/etc/passwd",
        "s3://b/k\u{1}ey",
    ])
    func urisCurlWouldRefuseAreRefusedFirst(_ uri: String) {
        #expect(throws: UnsupportedStorage.self) { try StorageLocation.parse(uri) }
    }

    @Test func aSecretIsRedactedBeforeAnErrorIsCut() {
        SecretRedactor.shared.register("HEADERSECRET-CUT-123")
        let text = String(repeating: "P", count: 290) + "Bearer HEADERSECRET-CUT-123"
        let bounded = ErrorDocument.bounded(text)
        // Cut after redaction: the placeholder may be cut, never a fragment of the secret.
        #expect(!bounded.contains("HEADERS") && bounded.hasPrefix(String(repeating: "P", count: 290) + "Bearer <"))
    }

    @Test func decodedQueryValuesAreSecretsToo() {
        let secrets = SecretRedactor.secrets(inURI: "https://h/x?X-Amz-Security-Token=TOKENtoken%2Fwith%2Bslash%3D")
        #expect(secrets.contains("TOKENtoken/with+slash="))
    }

    @Test func recoveredSpecsAreLoggedWithoutCredentials() throws {
        let spec = ModelSpec(storageUri: "http://admin:pw@h/m.bin?sig=abcdefgh123", framework: "sklearn")
        #expect(!spec.redactedJSON.contains("pw@") && !spec.redactedJSON.contains("abcdefgh123"))
    }

    @Test func overlongSpecsAreRefusedBeforeTheirMarkerCannotBeRead() throws {
        let framework = String(repeating: "f", count: 70_000)
        let json = #"[{"modelName": "m", "modelSpec": {"storageUri": "s3://b/m", "framework": "\#(framework)"}}]"#
        let file = try ModelsFile.parse(Array(json.utf8))
        #expect(file.entries.isEmpty && file.refusals.first?.name?.rawValue == "m")
    }

    @Test func manyCredentialedURIsRedactInLinearTime() {
        let redactor = SecretRedactor()
        redactor.registerSecrets(inURIs: (0..<3000).map { "https://h/m\($0).bin?X-Amz-Signature=sig\($0)-abcdef" })
        let clean = redactor.redact("failed: https://h/m1234.bin?X-Amz-Signature=sig1234-abcdef and sig7-abcdef")
        #expect(!clean.contains("sig1234-abcdef") && !clean.contains("sig7-abcdef"))
    }

    @Test func aStagingDirHoldingTheModelDirIsRefused() throws {
        let temp = try TemporaryDirectory("staging-parent")
        let store = ModelStore(modelDir: temp.path + "/models", stagingRoot: temp.path + "/models")
        #expect(throws: StoreError.self) { try store.prepare(logger: Logger(label: "t")) }
        let parent = ModelStore(modelDir: temp.path + "/models", stagingRoot: temp.path)
        #expect(throws: StoreError.self) { try parent.prepare(logger: Logger(label: "t")) }
        // Spelled with "..", the same directory is still recognised.
        let dotted = ModelStore(modelDir: temp.path + "/models", stagingRoot: temp.path + "/models/..")
        #expect(throws: StoreError.self) { try dotted.prepare(logger: Logger(label: "t")) }
    }

    @Test func validURLsStayValid() {
        for uri in [
            "http://host:/x.bin", "https://bücher.example/m.bin", "http://my_host:8080/m", "http://[fe80::1%25eth0]/m",
        ] {
            #expect(throws: Never.self) { try StorageLocation.parse(uri) }
        }
    }
}
