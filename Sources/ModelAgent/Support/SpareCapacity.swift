import NIOCore

extension Dictionary {
    /// Gives back the storage of a dictionary that has shrunk to a small part of its
    /// capacity. Swift never shrinks one on removal, so a map once sized for 10,000 models
    /// would keep that storage for the life of the process. Rebuilding only below an
    /// eighth keeps the cost amortised: each rebuild follows many removals.
    mutating func releaseSpareCapacity() {
        guard capacity > 256, count < capacity / 8 else { return }
        var compact = Self(minimumCapacity: count)
        for (key, value) in self { compact[key] = value }
        self = compact
    }
}

extension CircularBuffer {
    /// As `Dictionary.releaseSpareCapacity`, for a line that drained.
    mutating func releaseSpareCapacity() {
        guard capacity > 256, count < capacity / 8 else { return }
        var compact = Self(initialCapacity: Swift.max(count, 16))
        compact.append(contentsOf: self)
        self = compact
    }
}
