/// What one entry of models.json asks for. Two specs are equal when a re-download would
/// fetch the same thing: same URI, same framework, same memory value.
struct ModelSpec: Hashable, Sendable {
    var storageUri: String
    var framework: String
    var memory: MemoryQuantity

    init(storageUri: String, framework: String, memory: MemoryQuantity = .zero) {
        self.storageUri = storageUri
        self.framework = framework
        self.memory = memory
    }

    /// Sorted keys, no whitespace, memory as a plain number: the same spec written in
    /// any order or unit gives the same text, and so the same marker name.
    var canonicalJSON: String {
        JSONText.object([
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.normalized)),
            ("storageUri", JSONText.quoted(storageUri)),
        ])
    }

    /// The hex SHA-256 of `canonicalJSON`; the suffix of the SUCCESS marker.
    var hash: String { Digest.sha256Hex(canonicalJSON) }

    /// The marker's content with the URI as logs may show it.
    var redactedJSON: String {
        JSONText.object([
            ("storageUri", JSONText.quoted(Redaction.uri(storageUri))),
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.original)),
        ])
    }

    /// The marker's content: the spec in the field order KServe's agent writes.
    var markerJSON: String {
        JSONText.object([
            ("storageUri", JSONText.quoted(storageUri)),
            ("framework", JSONText.quoted(framework)),
            ("memory", JSONText.quoted(memory.original)),
        ])
    }
}
