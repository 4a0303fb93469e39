import Foundation

/// A config dir written the way Kubernetes updates a mounted ConfigMap: the data lives
/// in a timestamped directory, `..data` is a symlink swapped atomically by rename, and
/// `models.json` links through `..data`. `plain` writes the file in place instead.
public final class ConfigDirectory: @unchecked Sendable {
    public enum Style: Sendable { case kubelet, plain }

    public let path: String
    private let style: Style
    private var generation = 0

    public init(path: String, style: Style = .kubelet) throws {
        self.path = path
        self.style = style
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public struct Entry: Sendable {
        public var name: String
        public var uri: String
        public var framework: String
        public var memory: String

        public init(_ name: String, _ uri: String, framework: String = "sklearn", memory: String = "256Mi") {
            self.name = name
            self.uri = uri
            self.framework = framework
            self.memory = memory
        }

        var json: String {
            """
            {"modelName":\(quoted(name)),"modelSpec":{"storageUri":\(quoted(uri)),"framework":\(quoted(framework)),"memory":\(quoted(memory))}}
            """
        }
    }

    public func write(_ entries: [Entry]) throws {
        try write(raw: "[" + entries.map(\.json).joined(separator: ",") + "]")
    }

    public func write(raw text: String) throws {
        switch style {
        case .plain:
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: ensurePlainFile()))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(text.utf8))
            try handle.close()
        case .kubelet:
            generation += 1
            let fm = FileManager.default
            let stamp = "..2026_11_22_00_00_00.\(generation)"
            let dataDir = path + "/" + stamp
            try fm.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: dataDir + "/models.json"))
            let previous = try? fm.destinationOfSymbolicLink(atPath: path + "/..data")
            try? fm.removeItem(atPath: path + "/..data_tmp")
            try fm.createSymbolicLink(atPath: path + "/..data_tmp", withDestinationPath: stamp)
            guard rename(path + "/..data_tmp", path + "/..data") == 0 else {
                throw TestSetupError("rename ..data failed")
            }
            if (try? fm.destinationOfSymbolicLink(atPath: path + "/models.json")) == nil {
                try fm.createSymbolicLink(atPath: path + "/models.json", withDestinationPath: "..data/models.json")
            }
            if let previous, previous != stamp { try? fm.removeItem(atPath: path + "/" + previous) }
        }
    }

    private func ensurePlainFile() -> String {
        let file = path + "/models.json"
        if !FileManager.default.fileExists(atPath: file) {
            _ = FileManager.default.createFile(atPath: file, contents: nil)
        }
        return file
    }
}

func quoted(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
    let text = String(decoding: data, as: UTF8.self)
    return String(text.dropFirst().dropLast())
}
