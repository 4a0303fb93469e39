/// A model's name: its identity in models.json, its directory under the model dir and
/// its path segment in the V2 API, so it must be safe in all three.
struct ModelName: Hashable, Comparable, Sendable, CustomStringConvertible {
    let rawValue: String

    /// Room left for the staging suffixes appended to the name on disk.
    static let maximumLength = 200

    init(validating raw: String) throws(InvalidModelName) {
        if raw.isEmpty { throw InvalidModelName(name: raw, reason: "it is empty") }
        if raw == "." || raw == ".." { throw InvalidModelName(name: raw, reason: "it is a path component") }
        if raw.hasPrefix(".") {
            throw InvalidModelName(name: raw, reason: "it starts with '.', which model servers treat as hidden")
        }
        if raw.utf8.count > Self.maximumLength {
            throw InvalidModelName(name: raw, reason: "it is longer than \(Self.maximumLength) bytes")
        }
        for byte in raw.utf8 {
            let ok =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x5f || byte == 0x2e || byte == 0x2d
            if !ok {
                throw InvalidModelName(name: raw, reason: "only letters, digits, '_', '.' and '-' are allowed")
            }
        }
        rawValue = raw
    }

    var description: String { rawValue }

    static func < (a: ModelName, b: ModelName) -> Bool { a.rawValue < b.rawValue }
}

struct InvalidModelName: Error, CustomStringConvertible, Sendable {
    let name: String
    let reason: String
    var description: String { "invalid model name \(JSONText.quoted(name)): \(reason)" }
}
