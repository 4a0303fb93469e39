import Foundation
import TestSupport
import Testing

@testable import ModelAgent

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
        #expect(try q("1n").normalized == "0.000000001")
    }

    @Test(arguments: ["", "abc", "1.2.3", "Mi", "1Qi", "1e", "1e99", "--1", "1 Gi", "-1Ki"])
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

@Suite struct ServerFlavorTests {
    @Test func detectsFromTheServerName() {
        #expect(ServerFlavor.detect(serverName: "triton") == .triton)
        #expect(ServerFlavor.detect(serverName: "mlserver") == .mlserver)
        #expect(ServerFlavor.detect(serverName: "kserve") == .kserve)
        #expect(ServerFlavor.detect(serverName: "fake") == .generic)
        #expect(ServerFlavor.triton.readinessPath == "/v2/health/live")
        #expect(ServerFlavor.mlserver.readinessPath == "/v2/health/ready")
    }
}

@Suite struct ArtifactLayoutTests {
    @Test func protoTextFindsTopLevelFieldsOnly() {
        let text = """
            # name: "in a comment"
            platform: "x"
            input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
            name: "add_one"  # trailing
            parameters { key: "k" value: { string_value: "name: \\"not\\"" } }
            max_batch_size: 8
            """
        let fields = ProtoText.topLevelFields(text)
        #expect(fields.map(\.key) == ["platform", "name", "max_batch_size"])
        #expect(fields.first { $0.key == "name" }?.value == "add_one")
        let (renamed, changed) = ProtoText.settingName("served", in: text)
        #expect(changed && renamed.contains(#"name: "served"  # trailing"#) && renamed.contains(#"name: "INPUT0""#))
        #expect(ProtoText.settingName("add_one", in: text).changed == false)
        let (added, _) = ProtoText.settingName("m", in: "backend: \"python\"\n")
        #expect(added == "name: \"m\"\nbackend: \"python\"\n")
    }

    @Test func mlserverSettingsAreGeneratedOnlyWhenUnambiguous() throws {
        let temp = try TemporaryDirectory("layout")
        let name = try ModelName(validating: "m")
        try write("x", to: temp.path + "/a/model.json")
        try MLServerLayout.prepare(temp.path + "/a", name: name, framework: "XGBoost")
        let settings = try String(contentsOfFile: temp.path + "/a/model-settings.json", encoding: .utf8)
        #expect(settings.contains("mlserver_xgboost.XGBoostModel") && settings.contains("./model.json"))

        try write("x", to: temp.path + "/b/one.pkl")
        try write("x", to: temp.path + "/b/sub/two.joblib")
        #expect(throws: LayoutError.self) {
            try MLServerLayout.prepare(temp.path + "/b", name: name, framework: "sklearn")
        }
        try write("x", to: temp.path + "/c/readme.txt")
        #expect(throws: LayoutError.self) {
            try MLServerLayout.prepare(temp.path + "/c", name: name, framework: "sklearn")
        }
        try write("[1]", to: temp.path + "/d/model-settings.json")
        #expect(throws: LayoutError.self) {
            try MLServerLayout.prepare(temp.path + "/d", name: name, framework: "sklearn")
        }
        try write("x", to: temp.path + "/e/MLmodel")
        try MLServerLayout.prepare(temp.path + "/e", name: name, framework: "mlflow")
        #expect(
            try String(contentsOfFile: temp.path + "/e/model-settings.json", encoding: .utf8).contains(#""uri" : "./""#)
        )
    }

    @Test func tritonLayoutRules() throws {
        let temp = try TemporaryDirectory("layout")
        let name = try ModelName(validating: "served")
        try write(
            "name: \"other\"\nbackend: \"python\"\ndefault_model_filename: \"main.py\"\n",
            to: temp.path + "/ok/config.pbtxt")
        try write("x", to: temp.path + "/ok/1/main.py")
        try write("x", to: temp.path + "/ok/2/main.py")
        try TritonLayout.prepare(temp.path + "/ok", name: name)
        #expect(
            try String(contentsOfFile: temp.path + "/ok/config.pbtxt", encoding: .utf8).hasPrefix(#"name: "served""#))
        try write("x", to: temp.path + "/ok/3/model.py")
        #expect(throws: LayoutError.self) { try TritonLayout.prepare(temp.path + "/ok", name: name) }
        // Other backends need no model.py; a model without config.pbtxt is left to Triton.
        try write("backend: \"onnxruntime\"\n", to: temp.path + "/onnx/config.pbtxt")
        try write("x", to: temp.path + "/onnx/1/model.onnx")
        try TritonLayout.prepare(temp.path + "/onnx", name: name)
        try write("x", to: temp.path + "/plain/1/model.plan")
        try TritonLayout.prepare(temp.path + "/plain", name: name)
    }
}
