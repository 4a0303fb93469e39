import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

/// Archives are produced by Python's tarfile, zipfile and zlib — an independent
/// implementation — and extracted by ours; every byte is compared.
@Suite struct ArchiveTests {
    final class Workspace {
        let temp: TemporaryDirectory
        let store: ModelStore

        init() throws {
            temp = try TemporaryDirectory("archive")
            store = ModelStore(modelDir: temp.path + "/models")
            try store.prepare(logger: Logger(label: "test"))
        }

        /// Runs a Python snippet with `out` bound to the workspace path.
        func python(_ script: String) throws {
            try run(
                try TestPaths.venvTool("tools", "python3"), ["-c", "out = " + quotedPython(temp.path) + "\n" + script])
        }

        func extract(_ format: ArchiveFormat, _ file: String) throws -> (StagingDirectory, FetchReport) {
            let staging = try store.makeStaging(for: try ModelName(validating: "m"))
            return (staging, try ArchiveFormat.extract(format, archive: temp.path + "/" + file, into: staging))
        }
    }

    static let makeTree = """
        import os, random
        random.seed(7)
        src = out + "/src"
        os.makedirs(src + "/sub/deeper", exist_ok=True)
        files = {"empty.bin": b"", "one.bin": b"x", "block.bin": os.urandom(512), "block1.bin": os.urandom(513),
                 "sub/text.txt": b"hello model agent\\n" * 5000, "sub/deeper/random.bin": os.urandom(1048583),
                 "sub/mixed.bin": bytes(random.choice(b"abcdefgh") for _ in range(300000)) + os.urandom(70000)}
        for name, data in files.items():
            with open(os.path.join(src, name), "wb") as f:
                f.write(data)
        os.chmod(src + "/one.bin", 0o755)
        """

    func assertSameTree(_ staging: StagingDirectory, _ source: String) throws {
        let expected = try FileManager.default.subpathsOfDirectory(atPath: source).filter {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: source + "/" + $0, isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }
        #expect(!expected.isEmpty)
        for path in expected {
            let got = FileManager.default.contents(atPath: staging.root + "/" + path)
            #expect(got == FileManager.default.contents(atPath: source + "/" + path), "\(path) differs")
        }
        let extracted = try FileManager.default.subpathsOfDirectory(atPath: staging.root).filter {
            FileSystem.kind(staging.root + "/" + $0) == .file
        }
        #expect(extracted.count == expected.count)
    }

    @Test(arguments: [("t.tar", "w", ArchiveFormat.tar), ("t.tar.gz", "w:gz", .tarGzip)])
    func tarRoundTrip(file: String, mode: String, format: ArchiveFormat) throws {
        let w = try Workspace()
        try w.python(
            Self.makeTree
                + "\nimport tarfile\nwith tarfile.open(out + '/\(file)', '\(mode)') as t: t.add(src, arcname='.')")
        let (staging, report) = try w.extract(format, file)
        try assertSameTree(staging, w.temp.path + "/src")
        #expect(report.files == 7)
        #expect(FileManager.default.isExecutableFile(atPath: staging.root + "/one.bin"))
    }

    @Test(arguments: ["PAX_FORMAT", "GNU_FORMAT"])
    func tarLongNames(format: String) throws {
        let w = try Workspace()
        let longName =
            (0..<12).map { "directory-number-\($0)" }.joined(separator: "/") + "/" + String(repeating: "f", count: 120)
        try w.python(
            """
            import tarfile, io
            with tarfile.open(out + "/long.tar.gz", "w:gz", format=tarfile.\(format)) as t:
                info = tarfile.TarInfo("\(longName)"); data = b"long name content"; info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            """)
        let (staging, _) = try w.extract(.tarGzip, "long.tar.gz")
        #expect(FileManager.default.contents(atPath: staging.root + "/" + longName) == Data("long name content".utf8))
    }

    @Test(arguments: [
        ("../evil.txt", "'..' components"), ("/etc/evil.txt", "absolute"), ("a/../../evil.txt", "'..' components"),
    ])
    func tarRefusesEscapingEntries(entry: String, reason: String) throws {
        let w = try Workspace()
        try w.python(
            """
            import tarfile, io
            with tarfile.open(out + "/evil.tar", "w") as t:
                for name in ("fine.txt", "\(entry)"):
                    info = tarfile.TarInfo(name); info.size = 4; t.addfile(info, io.BytesIO(b"evil"))
            """)
        let error = #expect(throws: UnsafePath.self) { try w.extract(.tar, "evil.tar") }
        #expect(error?.description.contains(reason) == true)
        #expect(!exists(w.temp.path + "/evil.txt") && !exists(w.temp.path + "/models/evil.txt"))
    }

    @Test(arguments: ["SYMTYPE", "LNKTYPE"])
    func tarRefusesLinks(type: String) throws {
        let w = try Workspace()
        try w.python(
            """
            import tarfile
            with tarfile.open(out + "/link.tgz", "w:gz") as t:
                info = tarfile.TarInfo("link"); info.type = tarfile.\(type); info.linkname = "/etc/passwd"; t.addfile(info)
            """)
        #expect(throws: ArchiveError.self) { try w.extract(.tarGzip, "link.tgz") }
    }

    @Test func corruptOrTruncatedTarGzIsAnError() throws {
        let w = try Workspace()
        try w.python(
            Self.makeTree + "\n" + """
                import tarfile
                with tarfile.open(out + "/ok.tgz", "w:gz") as t: t.add(src, arcname=".")
                data = bytearray(open(out + "/ok.tgz", "rb").read())
                open(out + "/short.tgz", "wb").write(data[: len(data) // 2])
                data[len(data) // 2] ^= 0x55
                open(out + "/flipped.tgz", "wb").write(data)
                """)
        #expect(throws: ArchiveError.self) { try w.extract(.tarGzip, "short.tgz") }
        #expect(throws: ArchiveError.self) { try w.extract(.tarGzip, "flipped.tgz") }
    }

    @Test func zipRoundTripWithStoredDeflatedAndZip64Entries() throws {
        let w = try Workspace()
        try w.python(
            Self.makeTree + "\n" + """
                import zipfile, os
                with zipfile.ZipFile(out + "/t.zip", "w") as z:
                    for root, dirs, names in os.walk(src):
                        for n in sorted(names):
                            p = os.path.join(root, n); rel = os.path.relpath(p, src)
                            method = zipfile.ZIP_STORED if n.startswith("block") else zipfile.ZIP_DEFLATED
                            info = zipfile.ZipInfo.from_file(p, rel); info.compress_type = method
                            with open(p, "rb") as f, z.open(info, "w", force_zip64=(n == "random.bin")) as e:
                                e.write(f.read())
                    z.writestr("emptydir/", b"")
                """)
        let (staging, report) = try w.extract(.zip, "t.zip")
        try assertSameTree(staging, w.temp.path + "/src")
        #expect(report.files == 7)
        #expect(FileSystem.kind(staging.root + "/emptydir") == .directory)
    }

    @Test("a cancelled download stops extracting (SIGTERM, a newer spec) instead of writing the archive out")
    func cancelledExtractionStops() throws {
        let w = try Workspace()
        try w.python(
            Self.makeTree + """

                import tarfile, zipfile, os
                with tarfile.open(out + "/t.tar.gz", "w:gz") as t: t.add(src, arcname=".")
                with zipfile.ZipFile(out + "/t.zip", "w") as z:
                    for root, dirs, names in os.walk(src):
                        for n in names: z.write(os.path.join(root, n), os.path.relpath(os.path.join(root, n), src))
                """)
        for (format, file) in [(ArchiveFormat.tarGzip, "t.tar.gz"), (.zip, "t.zip")] {
            let staging = try w.store.makeStaging(for: try ModelName(validating: "m-\(file.count)"))
            let cancel = CancelFlag()
            cancel.set()
            #expect(throws: CancellationError.self) {
                try ArchiveFormat.extract(format, archive: w.temp.path + "/" + file, into: staging, cancel: cancel)
            }
            let written = try FileManager.default.subpathsOfDirectory(atPath: staging.root).filter {
                FileSystem.kind(staging.root + "/" + $0) == .file
            }
            #expect(written.isEmpty, "\(file): \(written)")
            // The same archive without a cancellation extracts whole.
            let again = try w.store.makeStaging(for: try ModelName(validating: "n-\(file.count)"))
            _ = try ArchiveFormat.extract(format, archive: w.temp.path + "/" + file, into: again, cancel: CancelFlag())
            try assertSameTree(again, w.temp.path + "/src")
        }
    }

    @Test func zipRefusesEscapingEntriesLinksAndCorruption() throws {
        let w = try Workspace()
        try w.python(
            """
            import zipfile
            with zipfile.ZipFile(out + "/evil.zip", "w") as z: z.writestr("../evil.txt", b"evil")
            with zipfile.ZipFile(out + "/abs.zip", "w") as z: z.writestr("/abs.txt", b"evil")
            with zipfile.ZipFile(out + "/link.zip", "w") as z:
                info = zipfile.ZipInfo("link"); info.external_attr = (0o120777 << 16); z.writestr(info, "/etc/passwd")
            with zipfile.ZipFile(out + "/ok.zip", "w", zipfile.ZIP_DEFLATED) as z: z.writestr("a.txt", b"abc" * 1000)
            data = bytearray(open(out + "/ok.zip", "rb").read())
            data[40] ^= 0xFF
            open(out + "/corrupt.zip", "wb").write(data)
            open(out + "/short.zip", "wb").write(data[:30])
            """)
        #expect(throws: UnsafePath.self) { try w.extract(.zip, "evil.zip") }
        #expect(throws: UnsafePath.self) { try w.extract(.zip, "abs.zip") }
        #expect(throws: ArchiveError.self) { try w.extract(.zip, "link.zip") }
        #expect(throws: ArchiveError.self) { try w.extract(.zip, "corrupt.zip") }
        #expect(throws: ArchiveError.self) { try w.extract(.zip, "short.zip") }
    }

    @Test(arguments: [0, 1, 6, 9])
    func inflateMatchesZlib(level: Int) throws {
        let w = try Workspace()
        try w.python(
            """
            import zlib, os, random
            random.seed(\(level))
            parts = [b"", b"a", os.urandom(100000), b"abcabcabd" * 40000, bytes(random.choice(b"ab") for _ in range(200000)),
                     os.urandom(40000) * 3]
            data = b"".join(parts)
            c = zlib.compressobj(\(level), zlib.DEFLATED, -15)
            open(out + "/raw.deflate", "wb").write(c.compress(data) + c.flush())
            open(out + "/plain.bin", "wb").write(data)
            """)
        let file = try OpenFile(reading: w.temp.path + "/raw.deflate")
        let inflater = try ZlibInflater(FileSpanSource(file: file), wrapper: .raw)
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 7919)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try inflater.read(into: $0) }
            if n == 0 { break }
            output.append(contentsOf: buffer[..<n])
        }
        #expect(Data(output) == FileManager.default.contents(atPath: w.temp.path + "/plain.bin"))
    }

    @Test func gzipWithSeveralMembersAndHeaderFields() throws {
        let w = try Workspace()
        try w.python(
            """
            import gzip, io
            a = gzip.compress(b"first member ", mtime=0)
            buf = io.BytesIO()
            with gzip.GzipFile(filename="named.txt", mode="wb", fileobj=buf, mtime=1) as g: g.write(b"second member")
            open(out + "/multi.gz", "wb").write(a + buf.getvalue() + bytes(1024))
            """)
        let source = try ZlibInflater(
            FileSpanSource(file: try OpenFile(reading: w.temp.path + "/multi.gz")), wrapper: .gzip)
        var buffer = [UInt8](repeating: 0, count: 100)
        var output = [UInt8]()
        while true {
            let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
            if n == 0 { break }
            output.append(contentsOf: buffer[..<n])
        }
        #expect(String(decoding: output, as: UTF8.self) == "first member second member")
    }

    @Test func detectsFormatsByNameThenContentType() {
        #expect(ArchiveFormat.detect(fileName: "m.tar.gz", contentType: "text/plain") == .tarGzip)
        #expect(ArchiveFormat.detect(fileName: "m.TGZ", contentType: nil) == .tarGzip)
        #expect(ArchiveFormat.detect(fileName: "m.zip", contentType: nil) == .zip)
        #expect(ArchiveFormat.detect(fileName: "m.tar", contentType: nil) == .tar)
        #expect(ArchiveFormat.detect(fileName: "download", contentType: "application/zip") == .zip)
        #expect(ArchiveFormat.detect(fileName: "download", contentType: "application/x-gzip") == .tarGzip)
        #expect(ArchiveFormat.detect(fileName: "download", contentType: "application/x-tar") == .tar)
        #expect(ArchiveFormat.detect(fileName: "model.joblib", contentType: "application/octet-stream") == nil)
    }
}

func quotedPython(_ s: String) -> String {
    "'" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
}

extension ArchiveTests {
    @Test func aTarGzLabelledAsPlainTarIsStillUnpacked() throws {
        let w = try Workspace()
        try w.python(
            Self.makeTree + "\nimport tarfile\nwith tarfile.open(out + '/t.tgz', 'w:gz') as t: t.add(src, arcname='.')")
        let (staging, _) = try w.extract(.tar, "t.tgz")
        try assertSameTree(staging, w.temp.path + "/src")
    }
}
