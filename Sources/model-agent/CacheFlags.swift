import ArgumentParser
import ModelAgent

/// The memory cache's flags: off unless `--memory-capacity` is given.
struct CacheFlags: ParsableArguments {
    @Option(
        help:
            "Memory the model server may spend on loaded models (a Kubernetes quantity, e.g. 2Gi). Models load while they fit; the rest stand by on disk and load on their first request, evicting the least recently used. Unset: every model is loaded."
    )
    var memoryCapacity: String?

    @Option(help: "Memory counted for a model whose models.json entry gives none (with --memory-capacity).")
    var defaultModelMemory = "1Gi"

    @Option(help: "Requests that may wait for one model's load; more are answered 503 (with --memory-capacity).")
    var maxHeldRequests = 256

    @Option(help: "Seconds a request may wait for its model's load before it is answered 503 (with --memory-capacity).")
    var holdTimeout: Double = 120

    @Option(
        help:
            "Disk the models' files may take (a Kubernetes quantity; with --memory-capacity). Past it, the least recently used Standby models leave the disk and are fetched again on their first request. Unset: every model stays on disk."
    )
    var diskCapacity: String?

    func validate() throws {
        // Ranges first: building the options turns seconds into a Duration, which traps on
        // a value that is not finite or too large.
        try FlagRanges.count(maxHeldRequests, "--max-held-requests", 1...100_000)
        try FlagRanges.seconds(holdTimeout, "--hold-timeout", 0.1...86_400)
        _ = try options
    }

    /// The cache's options; nil without `--memory-capacity`.
    var options: CacheOptions? {
        get throws {
            guard let memoryCapacity else {
                if diskCapacity != nil { throw ValidationError("--disk-capacity needs --memory-capacity") }
                return nil
            }
            let capacity = try Self.bytes(memoryCapacity, "--memory-capacity")
            guard capacity > 0 else { throw ValidationError("--memory-capacity must be more than 0") }
            var options = CacheOptions(capacity: capacity)
            options.defaultModelMemory = try Self.bytes(defaultModelMemory, "--default-model-memory")
            guard options.defaultModelMemory > 0 else {
                throw ValidationError("--default-model-memory must be more than 0")
            }
            options.maxHeldRequests = maxHeldRequests
            options.holdTimeout = .seconds(holdTimeout)
            if let diskCapacity {
                options.diskCapacity = try Self.bytes(diskCapacity, "--disk-capacity")
                guard options.diskCapacity ?? 0 > 0 else {
                    throw ValidationError("--disk-capacity must be more than 0")
                }
            }
            return options
        }
    }

    private static func bytes(_ text: String, _ flag: String) throws -> Int64 {
        do {
            return try MemoryQuantity(parsing: text).bytes
        } catch {
            throw ValidationError("\(flag): \(error)")
        }
    }
}
