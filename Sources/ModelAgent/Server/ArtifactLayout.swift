#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The artifact cannot be served as it is, and the agent cannot fix it.
struct LayoutError: Error, RetryClassifying, CustomStringConvertible {
    let description: String
    var isTransient: Bool { false }
    init(_ description: String) { self.description = description }
}

/// Triton finds a model by its directory and its `config.pbtxt`; KServe's agent leaves
/// the two to agree by luck (seed 001's warning). Before the staged copy is renamed into
/// place: the config's `name` is set to the model name, an artifact without a version
/// directory is refused, and a python-backend version without its model file is refused
/// rather than sent to a Triton that would hang loading it.
enum TritonLayout {
    static func prepare(_ root: String, name: ModelName) throws {
        let entries = try FileSystem.listDirectory(root)
        let versions = entries.filter { entry in
            !entry.isEmpty && entry.allSatisfy(\.isNumber) && FileSystem.resolvedKind(root + "/" + entry) == .directory
        }.sorted()
        guard !versions.isEmpty else {
            throw LayoutError(
                "Triton model \(name) has no version directory (1/, 2/, …) in its artifact; Triton loads nothing without one"
            )
        }
        let configPath = root + "/config.pbtxt"
        guard FileSystem.resolvedKind(configPath) == .file else { return }
        let text = String(decoding: try FileSystem.readFile(configPath, limit: 16 << 20), as: UTF8.self)
        let fields = ProtoText.topLevelFields(text)
        if fields.first(where: { $0.key == "backend" })?.value == "python" {
            let file = fields.first { $0.key == "default_model_filename" }?.value ?? "model.py"
            for version in versions where FileSystem.resolvedKind(root + "/" + version + "/" + file) != .file {
                throw LayoutError(
                    "Triton model \(name): version \(version)/ has no \(file); the python backend would hang loading it "
                        + "(triton-inference-server/server#8766)")
            }
        }
        let (updated, changed) = ProtoText.settingName(name.rawValue, in: text)
        if changed {
            // A new file, not an edit in place: the staged file may be a hard link to the source.
            try FileSystem.writeFileAtomically(configPath, Array(updated.utf8), temporary: configPath + ".agent-tmp")
        }
    }
}

/// MLServer finds a model by its `model-settings.json`. A `name` in it that differs from
/// the model name is rewritten; a missing file is generated from `framework`.
enum MLServerLayout {
    /// framework → (MLServer runtime, artifact file extensions; empty: the directory itself).
    static let runtimes: [String: (implementation: String, extensions: [String])] = [
        "sklearn": ("mlserver_sklearn.SKLearnModel", ["joblib", "pkl", "pickle"]),
        "xgboost": ("mlserver_xgboost.XGBoostModel", ["json", "ubj", "bst", "model"]),
        "lightgbm": ("mlserver_lightgbm.LightGBMModel", ["bst", "txt", "model"]),
        "catboost": ("mlserver_catboost.CatboostModel", ["cbm"]),
        "mlflow": ("mlserver_mlflow.MLflowRuntime", []),
    ]

    static func prepare(_ root: String, name: ModelName, framework: String) throws {
        let settingsPath = root + "/model-settings.json"
        if FileSystem.resolvedKind(settingsPath) == .file {
            var settings: JSONValue
            do {
                settings = try JSONDecoder().decode(
                    JSONValue.self, from: Data(try FileSystem.readFile(settingsPath, limit: 16 << 20)))
            } catch {
                throw LayoutError("model-settings.json of model \(name) is not valid JSON")
            }
            guard case .object = settings else {
                throw LayoutError("model-settings.json of model \(name) is not an object")
            }
            if let current = settings["name"], current != .string(name.rawValue) {
                settings["name"] = .string(name.rawValue)
                try write(settings, to: settingsPath)
            }
            return
        }
        let key = framework.lowercased()
        guard let runtime = runtimes[key] else {
            throw LayoutError(
                "model \(name) has no model-settings.json, and framework \(JSONText.quoted(framework)) has no MLServer "
                    + "runtime the agent knows (\(runtimes.keys.sorted().joined(separator: ", "))); add a model-settings.json"
            )
        }
        let uri: String
        if runtime.extensions.isEmpty {
            uri = "./"
        } else {
            let candidates = try files(under: root).filter { path in
                runtime.extensions.contains { path.lowercased().hasSuffix("." + $0) }
            }
            guard candidates.count == 1 else {
                throw LayoutError(
                    candidates.isEmpty
                        ? "model \(name): no \(runtime.extensions.map { "." + $0 }.joined(separator: "/")) file for \(key) in the artifact"
                        : "model \(name): several \(key) artifacts (\(candidates.joined(separator: ", "))); add a model-settings.json"
                )
            }
            uri = "./" + candidates[0]
        }
        let settings = JSONValue.object([
            "name": .string(name.rawValue), "implementation": .string(runtime.implementation),
            "parameters": .object(["uri": .string(uri)]),
        ])
        try write(settings, to: settingsPath)
    }

    private static func write(_ settings: JSONValue, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try FileSystem.writeFileAtomically(path, Array(try encoder.encode(settings)), temporary: path + ".agent-tmp")
    }

    /// Regular files under `root`, relative, sorted.
    private static func files(under root: String, prefix: String = "") throws -> [String] {
        var result: [String] = []
        for entry in try FileSystem.listDirectory(root + (prefix.isEmpty ? "" : "/" + prefix)).sorted() {
            let relative = prefix.isEmpty ? entry : prefix + "/" + entry
            switch FileSystem.resolvedKind(root + "/" + relative) {
            case .directory: result += try files(under: root, prefix: relative)
            case .file: result.append(relative)
            default: break
            }
        }
        return result
    }
}
