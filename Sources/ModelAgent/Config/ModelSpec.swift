/// What one entry of models.json asks for. Two specs are equal when a re-download would
/// fetch the same thing: same URI, same framework, same memory value.
public struct ModelSpec: Hashable, Sendable {
    public var storageUri: String
    public var framework: String
    public var memory: MemoryQuantity

    public init(storageUri: String, framework: String, memory: MemoryQuantity = .zero) {
        self.storageUri = storageUri
        self.framework = framework
        self.memory = memory
    }

    /// Sorted keys, no whitespace, memory as a plain number: the same spec written in
    /// any order or unit gives the same text, and so the same marker name.
    public var canonicalJSON: String {
        JSONText.object([
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.normalized)),
            ("storageUri", JSONText.quoted(storageUri)),
        ])
    }

    /// The hex SHA-256 of `canonicalJSON`; the suffix of the SUCCESS marker.
    public var hash: String { Digest.sha256Hex(canonicalJSON) }

    /// The marker's content with the URI as logs may show it.
    public var redactedJSON: String {
        JSONText.object([
            ("storageUri", JSONText.quoted(Redaction.uri(storageUri))),
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.original)),
        ])
    }

    /// The marker's content: the spec in the field order KServe's agent writes.
    public var markerJSON: String {
        JSONText.object([
            ("storageUri", JSONText.quoted(storageUri)),
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.original)),
        ])
    }
}
