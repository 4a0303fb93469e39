#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The `SUCCESS.<sha256 of the canonical spec>` file written last into a model's
/// directory. Its name proves which spec the directory holds; its content is the spec.
enum MarkerFile {
    static let prefix = "SUCCESS."

    static func name(for spec: ModelSpec) -> String { prefix + spec.hash }

    static func isMarkerName(_ name: String) -> Bool {
        guard name.hasPrefix(prefix) else { return false }
        let digest = name.utf8.dropFirst(prefix.utf8.count)
        return digest.count == 64 && digest.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The spec a marker holds, if its content decodes and hashes to its own name.
    static func read(_ path: String) throws(InvalidMarker) -> ModelSpec {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: 64 << 10)
        } catch {
            throw InvalidMarker(path: path, reason: "\(error)")
        }
        return try parse(bytes, name: FileSystem.lastComponent(path), path: path)
    }

    /// The spec in a marker's content, checked against the marker's file name.
    static func parse(_ bytes: [UInt8], name: String, path: String) throws(InvalidMarker) -> ModelSpec {
        let content: Content
        do {
            content = try JSONDecoder().decode(Content.self, from: Data(bytes))
        } catch {
            throw InvalidMarker(path: path, reason: "content is not a model spec")
        }
        let memory: MemoryQuantity
        do {
            memory = try MemoryQuantity(parsing: content.memory ?? "0")
        } catch {
            throw InvalidMarker(path: path, reason: error.description)
        }
        let spec = ModelSpec(storageUri: content.storageUri, framework: content.framework ?? "", memory: memory)
        guard self.name(for: spec) == name else {
            throw InvalidMarker(path: path, reason: "its name does not match the hash of its content")
        }
        return spec
    }

    private struct Content: Decodable {
        var storageUri: String
        var framework: String?
        var memory: String?
    }
}

struct InvalidMarker: Error, CustomStringConvertible, Sendable {
    let path: String
    let reason: String
    var description: String { "ignoring marker \(path): \(reason)" }
}
