#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The decoded content of models.json: the entries that passed validation, in file
/// order, and the ones refused, each with its reason.
struct ModelsFile: Sendable {
    struct Entry: Sendable, Equatable {
        let name: ModelName
        let spec: ModelSpec
    }

    struct Refusal: Sendable, CustomStringConvertible {
        /// Position in the array, from 0.
        let index: Int
        /// The entry's name when it had a valid one; its previous spec is then kept.
        let name: ModelName?
        let reason: String
        var description: String { "entry \(index): \(reason)" }
    }

    var entries: [Entry]
    var refusals: [Refusal]

    init(entries: [Entry] = [], refusals: [Refusal] = []) {
        self.entries = entries
        self.refusals = refusals
    }

    /// Decodes models.json. The whole file is refused (thrown) only when it is not a JSON
    /// array or `null`; a bad entry is refused on its own.
    static func parse(_ bytes: [UInt8]) throws(MalformedModelsFile) -> ModelsFile {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            throw MalformedModelsFile(reason: "the file is empty")
        }
        let raw: [RawEntry]?
        do {
            raw = try JSONDecoder().decode([RawEntry]?.self, from: Data(bytes))
        } catch {
            throw MalformedModelsFile(reason: describe(error))
        }
        var file = ModelsFile()
        var seen: Set<ModelName> = []
        for (index, item) in (raw ?? []).enumerated() {
            switch item.result {
            case .failure(let refusal):
                file.refusals.append(Refusal(index: index, name: refusal.name, reason: refusal.reason))
            case .success(let entry):
                if seen.contains(entry.name) {
                    file.refusals.append(
                        Refusal(
                            index: index, name: nil,
                            reason:
                                "duplicate modelName \(JSONText.quoted(entry.name.rawValue)); the first entry is used"))
                    continue
                }
                seen.insert(entry.name)
                file.entries.append(entry)
            }
        }
        return file
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            return "not valid JSON (\(context.debugDescription))"
        case DecodingError.typeMismatch(_, let context):
            return context.codingPath.isEmpty
                ? "expected a JSON array of models or null"
                : "unexpected type at \(context.codingPath.map(\.stringValue))"
        default:
            return "not valid JSON (\(error))"
        }
    }
}

struct MalformedModelsFile: Error, CustomStringConvertible, Sendable {
    let reason: String
    var description: String { "malformed models.json: \(reason)" }
}

/// One array element; decoding never throws so that one bad entry does not sink the file.
private struct RawEntry: Decodable {
    struct Refused: Error {
        var name: ModelName?
        var reason: String
    }

    let result: Result<ModelsFile.Entry, Refused>

    static let maximumURILength = 8192
    static let maximumFrameworkLength = 256

    private enum Keys: String, CodingKey {
        case modelName, modelSpec
    }

    private enum SpecKeys: String, CodingKey {
        case storageUri, framework, memory
    }

    init(from decoder: any Decoder) {
        var name: ModelName?
        do {
            let entry = try decoder.container(keyedBy: Keys.self)
            guard let rawName = try entry.decodeIfPresent(String.self, forKey: .modelName) else {
                throw Refused(reason: "modelName is missing")
            }
            do {
                name = try ModelName(validating: rawName)
            } catch {
                throw Refused(reason: error.description)
            }
            guard entry.contains(.modelSpec) else { throw Refused(name: name, reason: "modelSpec is missing") }
            let spec = try entry.nestedContainer(keyedBy: SpecKeys.self, forKey: .modelSpec)
            guard let uri = try spec.decodeIfPresent(String.self, forKey: .storageUri), !uri.isEmpty else {
                throw Refused(name: name, reason: "modelSpec.storageUri is missing or empty")
            }
            let framework = try spec.decodeIfPresent(String.self, forKey: .framework) ?? ""
            // The spec is written into the marker, which is read back with a size limit.
            guard uri.utf8.count <= Self.maximumURILength, framework.utf8.count <= Self.maximumFrameworkLength else {
                throw Refused(
                    name: name,
                    reason:
                        "storageUri longer than \(Self.maximumURILength) bytes or framework longer than \(Self.maximumFrameworkLength)"
                )
            }
            let memory = try Self.decodeMemory(spec)
            result = .success(
                .init(name: name!, spec: ModelSpec(storageUri: uri, framework: framework, memory: memory)))
        } catch let refused as Refused {
            result = .failure(Refused(name: refused.name ?? name, reason: refused.reason))
        } catch {
            let where_ = name.map { " in model \($0)" } ?? ""
            result = .failure(Refused(name: name, reason: "wrong field type\(where_): \(Self.summary(error))"))
        }
    }

    /// `memory` may be a quantity string or a JSON number; absent means "0".
    private static func decodeMemory(_ spec: KeyedDecodingContainer<SpecKeys>) throws -> MemoryQuantity {
        guard spec.contains(.memory), try !spec.decodeNil(forKey: .memory) else { return .zero }
        let text: String
        if let s = try? spec.decode(String.self, forKey: .memory) {
            text = s
        } else if let i = try? spec.decode(Int64.self, forKey: .memory) {
            text = String(i)
        } else {
            text = String(try spec.decode(Double.self, forKey: .memory))
        }
        do {
            return try MemoryQuantity(parsing: text)
        } catch {
            throw Refused(reason: error.description)
        }
    }

    private static func summary(_ error: any Error) -> String {
        if case DecodingError.typeMismatch(let type, let context) = error {
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")) must be \(type)"
        }
        if case DecodingError.keyNotFound(let key, _) = error { return "\(key.stringValue) is missing" }
        return "\(error)"
    }
}
