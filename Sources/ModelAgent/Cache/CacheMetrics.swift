import Prometheus
import Synchronization

/// The cache's Prometheus metrics: capacity and memory in use, and per model hits
/// (requests sent on at once), misses (requests that waited for a load), cold loads,
/// evictions and cold-load latency. Only models in models.json get series.
final class CacheMetrics: Sendable {
    private struct Series {
        let hits: Counter
        let misses: Counter
        let coldLoads: Counter
        let evictions: Counter
    }

    private let diskEvictionSeries = Mutex<[ModelName: Counter]>([:])

    private let registry: PrometheusCollectorRegistry
    private let capacity: Gauge
    private let used: Gauge
    private let coldLoadDuration: DurationHistogram
    private let diskUsed: Gauge?
    private let series = Mutex<[ModelName: Series]>([:])

    init(registry: PrometheusCollectorRegistry, capacity: Int64, diskCapacity: Int64? = nil) {
        self.registry = registry
        self.capacity = registry.makeGauge(
            descriptor: Self.name("cache_capacity", "bytes", "Memory the model server may spend on loaded models"))
        used = registry.makeGauge(
            descriptor: Self.name(
                "cache_used", "bytes", "Memory of the models loaded or being loaded (as models.json declares it)"))
        coldLoadDuration = registry.makeDurationHistogram(
            descriptor: Self.name(
                "cache_cold_load_duration", "seconds",
                "From the first request for a model on standby to its load (evictions included)"),
            buckets: [
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
            ])
        self.capacity.set(Double(capacity))
        if let diskCapacity {
            registry.makeGauge(
                descriptor: Self.name(
                    "cache_disk_capacity", "bytes", "Disk the models' files may take before Standby ones leave it")
            ).set(Double(diskCapacity))
            diskUsed = registry.makeGauge(
                descriptor: Self.name(
                    "cache_disk_used", "bytes", "Disk taken or reserved by the models' files (as last measured)"))
        } else {
            diskUsed = nil
        }
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "model_agent", metricName: metric, unitName: unit, helpText: help)
    }

    func setUsed(_ bytes: Int64) { used.set(Double(bytes)) }
    func setDiskUsed(_ bytes: Int64) { diskUsed?.set(Double(bytes)) }

    func leftDisk(_ model: ModelName) {
        diskEvictionSeries.withLock { all in
            if let existing = all[model] { return existing }
            let made = registry.makeCounter(
                descriptor: Self.name(
                    "cache_disk_evictions", "total", "Standby models removed from disk to stay within the disk capacity"
                ),
                labels: [("model", model.rawValue)])
            all[model] = made
            return made
        }.increment()
    }
    func hit(_ model: ModelName) { of(model).hits.increment() }
    func miss(_ model: ModelName) { of(model).misses.increment() }
    func evicted(_ model: ModelName) { of(model).evictions.increment() }

    func coldLoaded(_ model: ModelName, after duration: Duration) {
        of(model).coldLoads.increment()
        coldLoadDuration.record(duration)
    }

    private func of(_ model: ModelName) -> Series {
        series.withLock { all in
            if let existing = all[model] { return existing }
            let labels = [("model", model.rawValue)]
            func counter(_ metric: String, _ help: String) -> Counter {
                registry.makeCounter(descriptor: Self.name(metric, "total", help), labels: labels)
            }
            let made = Series(
                hits: counter("cache_hits", "Requests for a loaded model, sent on at once"),
                misses: counter("cache_misses", "Requests that waited for their model's load"),
                coldLoads: counter("cache_cold_loads", "Loads started by a waiting request"),
                evictions: counter("cache_evictions", "Unloads to make room for another model"))
            all[model] = made
            return made
        }
    }
}
