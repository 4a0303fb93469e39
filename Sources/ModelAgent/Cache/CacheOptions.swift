/// How the memory cache is set up (`--memory-capacity` and friends). Without a capacity
/// there is no cache: every desired model is loaded, as before.
package struct CacheOptions: Sendable {
    /// The memory the server may spend on loaded models, in bytes.
    package var capacity: Int64
    /// The size of a model whose models.json entry gives no `memory`.
    package var defaultModelMemory: Int64 = CacheOptions.standardModelMemory
    /// Requests that may wait for one model's load; more are answered 503.
    package var maxHeldRequests = 256
    /// How long a request waits for its model's load before it is answered 503.
    package var holdTimeout: Duration = .seconds(120)
    /// The disk tier (`--disk-capacity`): past this many bytes of model files, the least
    /// recently used Standby models leave the disk. Nil: every model stays on disk.
    package var diskCapacity: Int64?

    /// 1 GiB: rather too much than too little, so that guessing never overcommits a server
    /// by much for models that do not say what they need.
    package static let standardModelMemory: Int64 = 1 << 30

    package init(capacity: Int64) {
        self.capacity = capacity
    }

    /// What `spec` costs in the cache.
    func size(of spec: ModelSpec) -> Int64 {
        let declared = spec.memory.bytes
        return declared > 0 ? declared : defaultModelMemory
    }
}
