import Foundation
import Logging
import TestSupport
import Testing

@testable import ModelAgent

@Suite struct RelativePathTests {
    @Test func normalizes() throws {
        #expect(try RelativePath.normalize("a/b/c.bin") == "a/b/c.bin")
        #expect(try RelativePath.normalize("./a//b/./c") == "a/b/c")
        #expect(try RelativePath.normalize("a/") == "a")
    }

    @Test(arguments: ["", ".", "/etc/passwd", "../x", "a/../../x", "a/..", "./", "//x", "a\u{0}b"])
    func refuses(_ path: String) {
        #expect(throws: UnsafePath.self) { try RelativePath.normalize(path) }
    }
}

@Suite struct ModelStoreTests {
    let logger = Logger(label: "test")

    /// The store and the temporary directory it lives in (kept alive with it).
    final class Fixture {
        let temp: TemporaryDirectory
        let store: ModelStore

        init(logger: Logger) throws {
            temp = try TemporaryDirectory("store")
            store = ModelStore(modelDir: temp.path + "/models")
            try store.prepare(logger: logger)
        }
    }

    func stage(_ store: ModelStore, _ name: ModelName, _ files: [String: String]) throws -> StagingDirectory {
        let staging = try store.makeStaging(for: name)
        for (path, content) in files {
            let file = try staging.createFile(path)
            try Array(content.utf8).withUnsafeBytes { try file.write($0, at: 0) }
        }
        return staging
    }

    @Test func commitRenamesIntoPlaceAndWritesTheMarkerLast() throws {
        let fixture = try Fixture(logger: logger)
        let store = fixture.store
        defer { withExtendedLifetime(fixture) {} }
        let name = try ModelName(validating: "m")
        let spec = ModelSpec(storageUri: "s3://b/m", framework: "sklearn")
        let marker = try store.commit(try stage(store, name, ["a.bin": "A", "sub/b.bin": "B"]), as: name, spec: spec)
        #expect(marker == store.modelDir + "/m/" + MarkerFile.name(for: spec))
        #expect(contents(of: store.modelDir + "/m") == [MarkerFile.name(for: spec), "a.bin", "sub"].sorted())
        #expect(try String(contentsOfFile: marker, encoding: .utf8) == spec.markerJSON)
        #expect(contents(of: store.stagingRoot).isEmpty)
        #expect(try store.recover(logger: logger) == [name: .complete(spec)])
    }

    @Test func commitReplacesAnOlderVersionCompletely() throws {
        let fixture = try Fixture(logger: logger)
        let store = fixture.store
        defer { withExtendedLifetime(fixture) {} }
        let name = try ModelName(validating: "m")
        let v1 = ModelSpec(storageUri: "s3://b/v1", framework: "sklearn")
        let v2 = ModelSpec(storageUri: "s3://b/v2", framework: "sklearn")
        try store.commit(try stage(store, name, ["old.bin": "1"]), as: name, spec: v1)
        try store.commit(try stage(store, name, ["new.bin": "2"]), as: name, spec: v2)
        #expect(contents(of: store.modelDir + "/m") == [MarkerFile.name(for: v2), "new.bin"].sorted())
        #expect(contents(of: store.stagingRoot).isEmpty)
    }

    @Test func removeDeletesFilesAndMarkerTogether() throws {
        let fixture = try Fixture(logger: logger)
        let store = fixture.store
        defer { withExtendedLifetime(fixture) {} }
        let name = try ModelName(validating: "m")
        try store.commit(
            try stage(store, name, ["a": "A"]), as: name, spec: ModelSpec(storageUri: "x:/", framework: ""))
        try store.remove(name)
        #expect(!exists(store.modelDir + "/m"))
        try store.remove(name)
    }

    @Test func recoverClassifiesMarkers() throws {
        let fixture = try Fixture(logger: logger)
        let store = fixture.store
        defer { withExtendedLifetime(fixture) {} }
        let good = ModelSpec(storageUri: "s3://b/good", framework: "sklearn")
        try write(good.markerJSON, to: store.modelDir + "/good/" + MarkerFile.name(for: good))
        // A marker whose name is not the hash of its content (e.g. written by KServe's agent).
        try write(good.markerJSON, to: store.modelDir + "/foreign/SUCCESS." + String(repeating: "ab", count: 32))
        try write("{", to: store.modelDir + "/broken/" + MarkerFile.name(for: good))
        try write("weights", to: store.modelDir + "/unmarked/w.bin")
        try write("payload", to: store.modelDir + "/payload/SUCCESS.txt")
        try write("x", to: store.modelDir + "/settings.json")
        try write("x", to: store.modelDir + "/bad name/a")
        let found = try store.recover(logger: logger)
        #expect(found[try ModelName(validating: "good")] == .complete(good))
        #expect(found[try ModelName(validating: "foreign")] == .invalidMarker)
        #expect(found[try ModelName(validating: "broken")] == .invalidMarker)
        #expect(found[try ModelName(validating: "unmarked")] == .unmarked)
        #expect(found[try ModelName(validating: "payload")] == .unmarked)
        #expect(found.count == 5)
    }

    @Test func prepareRemovesOnlyLeftoverStagingEntries() throws {
        let temp = try TemporaryDirectory("store")
        let staging = temp.path + "/models/.staging"
        try write("x", to: staging + "/m.0123456789abcdef.staging/part")
        try write("x", to: staging + "/m.0123456789abcdef.trash/old")
        try write("x", to: staging + "/m.0123456789abcdef.marker")
        try write("x", to: staging + "/someone-elses-file")
        let store = ModelStore(modelDir: temp.path + "/models")
        try store.prepare(logger: logger)
        #expect(contents(of: staging) == ["someone-elses-file"])
    }

    @Test func stagingRefusesEscapingPathsAndMarkerNames() throws {
        let fixture = try Fixture(logger: logger)
        let store = fixture.store
        defer { withExtendedLifetime(fixture) {} }
        let staging = try store.makeStaging(for: try ModelName(validating: "m"))
        #expect(throws: UnsafePath.self) { try staging.createFile("../escape") }
        #expect(throws: UnsafePath.self) { try staging.createFile("/etc/x") }
        #expect(throws: UnsafePath.self) { try staging.createFile("SUCCESS." + String(repeating: "0", count: 64)) }
        _ = try staging.createFile("sub/SUCCESS." + String(repeating: "0", count: 64))
        staging.discard()
        #expect(contents(of: store.stagingRoot).isEmpty)
    }

    @Test func prepareRefusesAStagingDirOnAnotherFilesystem() throws {
        let temp = try TemporaryDirectory("store")
        let store = ModelStore(modelDir: temp.path + "/models", stagingRoot: "/dev/shm/model-agent-test-staging")
        defer { try? FileManager.default.removeItem(atPath: "/dev/shm/model-agent-test-staging") }
        #expect(throws: StoreError.self) { try store.prepare(logger: logger) }
    }
}
