import ModelAgent
import Testing

@Suite struct ModelNameTests {
    @Test(arguments: ["iris", "model1-sklearn", "A.b_c-9", "x"])
    func accepts(_ name: String) throws {
        #expect(try ModelName(validating: name).rawValue == name)
    }

    @Test(arguments: [
        "", ".", "..", "../x", "/abs", "a/b", ".hidden", "sp ace", "ü", "a\u{0}b", String(repeating: "a", count: 201),
    ])
    func refuses(_ name: String) {
        #expect(throws: InvalidModelName.self) { try ModelName(validating: name) }
    }
}

@Suite struct MemoryQuantityTests {
    func q(_ text: String) throws -> MemoryQuantity { try MemoryQuantity(parsing: text) }

    @Test func equalValuesCompareEqual() throws {
        #expect(try q("1Gi") == q("1024Mi"))
        #expect(try q("0.5Gi") == q("512Mi"))
        #expect(try q("1G") == q("1000M"))
        #expect(try q("1e9") == q("1G"))
        #expect(try q("1E3") == q("1k"))
        #expect(try q("1G") != q("1Gi"))
        #expect(try q("0") == MemoryQuantity.zero)
    }

    @Test func normalizesToPlainBytes() throws {
        #expect(try q("256Mi").normalized == "268435456")
        #expect(try q("1G").normalized == "1000000000")
        #expect(try q("100m").normalized == "0.1")
        #expect(try q("1.5").normalized == "1.5")
        #expect(try q("0").normalized == "0")
        #expect(try q("-1Ki").normalized == "-1024")
        #expect(try q("1n").normalized == "0.000000001")
    }

    @Test(arguments: ["", "abc", "1.2.3", "Mi", "1Qi", "1e", "1e99", "--1", "1 Gi"])
    func refuses(_ text: String) {
        #expect(throws: InvalidQuantity.self) { try MemoryQuantity(parsing: text) }
    }

    @Test func keepsTheOriginalText() throws {
        #expect(try q("256Mi").original == "256Mi")
    }
}

@Suite struct ModelSpecTests {
    @Test func canonicalJSONSortsKeysAndNormalizesMemory() throws {
        let spec = ModelSpec(
            storageUri: "s3://b/m1", framework: "sklearn", memory: try MemoryQuantity(parsing: "1Gi"))
        #expect(spec.canonicalJSON == #"{"framework":"sklearn","memory":"1073741824","storageUri":"s3://b/m1"}"#)
        #expect(spec.markerJSON == #"{"storageUri":"s3://b/m1","framework":"sklearn","memory":"1Gi"}"#)
    }

    @Test func hashIgnoresHowMemoryIsWritten() throws {
        let a = ModelSpec(storageUri: "gs://b/x", framework: "xgboost", memory: try MemoryQuantity(parsing: "1Gi"))
        let b = ModelSpec(storageUri: "gs://b/x", framework: "xgboost", memory: try MemoryQuantity(parsing: "1024Mi"))
        let c = ModelSpec(storageUri: "gs://b/y", framework: "xgboost", memory: try MemoryQuantity(parsing: "1Gi"))
        #expect(a == b && a.hash == b.hash)
        #expect(a != c && a.hash != c.hash)
        #expect(a.hash.count == 64)
        // Stable across runs and platforms: sha256 of the canonical text, computed with sha256sum.
        #expect(
            ModelSpec(storageUri: "s3://b/m", framework: "sklearn").hash
                == "ca32729c4f2eec4b03e0cbed67addebf48b96a77d61a03a0dcfa55e8b4f09a17")
    }

    @Test func escapesControlCharactersAndQuotes() {
        let spec = ModelSpec(storageUri: "http://h/a\"b\\c\n", framework: "")
        #expect(spec.canonicalJSON.contains(#""storageUri":"http://h/a\"b\\c\n""#))
    }
}

@Suite struct ModelsFileTests {
    func parse(_ text: String) throws -> ModelsFile { try ModelsFile.parse(Array(text.utf8)) }

    @Test func nullAndEmptyArrayMeanNoModels() throws {
        #expect(try parse("null").entries.isEmpty)
        #expect(try parse(" [ ] \n").entries.isEmpty)
    }

    @Test(arguments: ["", "  \n", "[", "{\"modelName\":\"a\"}", "\"text\"", "[1,", "42"])
    func refusesTheWholeFileWhenItIsNotAnArray(_ text: String) {
        #expect(throws: MalformedModelsFile.self) { try ModelsFile.parse(Array(text.utf8)) }
    }

    @Test func decodesEntriesWithStringOrNumberMemory() throws {
        let file = try parse(
            """
            [{"modelName":"a","modelSpec":{"storageUri":"s3://b/a","framework":"sklearn","memory":"256Mi"},"extra":1},
             {"modelName":"b","modelSpec":{"storageUri":"gs://b/b","framework":"xgboost","memory":1073741824}},
             {"modelName":"c","modelSpec":{"storageUri":"https://h/c.tgz"}}]
            """)
        #expect(file.refusals.isEmpty)
        #expect(file.entries.map(\.name.rawValue) == ["a", "b", "c"])
        #expect(file.entries[1].spec.memory == (try MemoryQuantity(parsing: "1Gi")))
        #expect(file.entries[2].spec.framework == "" && file.entries[2].spec.memory == .zero)
    }

    @Test func refusesBadEntriesOneByOne() throws {
        let file = try parse(
            """
            [{"modelName":"ok","modelSpec":{"storageUri":"s3://b/ok"}},
             {"modelName":"../x","modelSpec":{"storageUri":"s3://b/x"}},
             {"modelSpec":{"storageUri":"s3://b/x"}},
             {"modelName":"nospec"},
             {"modelName":"nouri","modelSpec":{"framework":"sklearn"}},
             {"modelName":"badtype","modelSpec":{"storageUri":7}},
             {"modelName":"badmem","modelSpec":{"storageUri":"s3://b/m","memory":"lots"}},
             {"modelName":"ok","modelSpec":{"storageUri":"s3://b/other"}},
             5, null]
            """)
        #expect(file.entries.map(\.name.rawValue) == ["ok"])
        #expect(file.entries[0].spec.storageUri == "s3://b/ok")
        #expect(file.refusals.map(\.index) == [1, 2, 3, 4, 5, 6, 7, 8, 9])
        // Refusals with a valid name carry it, so the loader can keep that model's last spec.
        #expect(file.refusals.compactMap(\.name?.rawValue) == ["nospec", "nouri", "badtype", "badmem"])
        #expect(file.refusals[0].reason.contains("invalid model name"))
        #expect(file.refusals[6].reason.contains("duplicate"))
    }
}
