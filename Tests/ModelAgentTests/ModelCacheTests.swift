import Logging
import Prometheus
import TestSupport
import Testing

@testable import ModelAgent

/// `ModelCache`, the locked shell around `CacheBook`: which events lead to a new decision.
@Suite struct ModelCacheTests {
    static func spec(_ memory: String) throws -> ModelSpec {
        ModelSpec(storageUri: "s3://bucket/model", framework: "sklearn", memory: try MemoryQuantity(parsing: memory))
    }

    @Test func aRequestThatGivesUpWaitingForMemoryLetsTheFillGoOn() throws {
        let temp = try TemporaryDirectory("model-cache")
        let logger = Logger(label: "model-cache-test")
        let cache = ModelCache(
            options: CacheOptions(capacity: 3), recency: RecencyFile(modelDir: temp.path, logger: logger),
            metrics: CacheMetrics(registry: PrometheusCollectorRegistry(), capacity: 3), logger: logger)
        let (a, x, c) = try (ModelName(validating: "a"), ModelName(validating: "x"), ModelName(validating: "c"))
        var desired = [a: try Self.spec("2"), x: try Self.spec("3")]
        cache.declare(desired, order: [a, x]).carryOut()
        // a is loaded and in use; x is Standby.
        for name in [a, x] { cache.sync(name, filesReady: true, served: false, onDisk: true, diskBytes: nil) }
        #expect(cache.wantsLoaded(a) && cache.beginLoad(a))
        cache.loadEnded(a, succeeded: true)
        guard case .admitted(let inUse) = cache.admit(a, whenHeldEnds: { _ in }) else {
            Issue.record("a is loaded")
            return
        }
        // x needs all the memory: it waits for a's request, and the fill waits with it: c,
        // added now, would fit in what is free but is not loaded.
        guard case .held(let waiting) = cache.admit(x, whenHeldEnds: { _ in }) else {
            Issue.record("x waits")
            return
        }
        desired[c] = try Self.spec("1")
        cache.declare(desired, order: [a, x, c]).carryOut()
        #expect(!cache.wantsLoaded(c))
        // x's client gives up: c takes the free memory at once.
        cache.finished(waiting)
        #expect(cache.wantsLoaded(c))
        #expect(!cache.wantsLoaded(x))
        cache.finished(inUse)
    }
}
