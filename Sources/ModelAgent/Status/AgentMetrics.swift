import Prometheus

/// Prometheus metrics for /metrics. Per-state model counts are read from the status
/// board at scrape time, so they can never drift from what /v1/models says.
final class AgentMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let downloadsSucceeded: Counter
    private let downloadsFailed: Counter
    private let downloadBytes: Counter
    private let downloadDuration: DurationHistogram
    private let loadsSucceeded: Counter
    private let loadsFailed: Counter
    private let unloadsSucceeded: Counter
    private let unloadsFailed: Counter
    private let configApplied: Counter
    private let configRejected: Counter
    private let modelsByState: [ModelState: Gauge]
    private let ready: Gauge
    private let configValid: Gauge

    init() {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "model_agent", metricName: metric, unitName: unit, helpText: help)
        }
        let downloads = name("downloads", "total", "Model downloads by result")
        downloadsSucceeded = registry.makeCounter(descriptor: downloads, labels: [("result", "success")])
        downloadsFailed = registry.makeCounter(descriptor: downloads, labels: [("result", "failure")])
        downloadBytes = registry.makeCounter(
            descriptor: name("download_bytes", "total", "Bytes of completed model downloads"))
        downloadDuration = registry.makeDurationHistogram(
            descriptor: name("download_duration", "seconds", "Duration of completed model downloads"),
            buckets: [
                .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(15), .seconds(60),
                .seconds(300), .seconds(900),
            ])
        let loads = name("loads", "total", "Model server load calls by result")
        loadsSucceeded = registry.makeCounter(descriptor: loads, labels: [("result", "success")])
        loadsFailed = registry.makeCounter(descriptor: loads, labels: [("result", "failure")])
        let unloads = name("unloads", "total", "Model server unload calls by result")
        unloadsSucceeded = registry.makeCounter(descriptor: unloads, labels: [("result", "success")])
        unloadsFailed = registry.makeCounter(descriptor: unloads, labels: [("result", "failure")])
        let reloads = name("config_reloads", "total", "models.json reads that changed or failed to parse")
        configApplied = registry.makeCounter(descriptor: reloads, labels: [("result", "applied")])
        configRejected = registry.makeCounter(descriptor: reloads, labels: [("result", "malformed")])
        let models = name("models", "", "Models by state")
        var gauges: [ModelState: Gauge] = [:]
        for state in ModelState.allCases {
            gauges[state] = registry.makeGauge(descriptor: models, labels: [("state", state.rawValue)])
        }
        modelsByState = gauges
        ready = registry.makeGauge(descriptor: name("ready", "", "1 once the initial reconcile has completed"))
        configValid = registry.makeGauge(
            descriptor: name("config_valid", "", "1 when the last read of models.json could be used"))
    }

    func downloaded(bytes: Int64, duration: Duration) {
        downloadsSucceeded.increment()
        downloadBytes.increment(by: bytes)
        downloadDuration.record(duration)
    }

    func downloadFailed() { downloadsFailed.increment() }
    func loaded(_ ok: Bool) { ok ? loadsSucceeded.increment() : loadsFailed.increment() }
    func unloaded(_ ok: Bool) { ok ? unloadsSucceeded.increment() : unloadsFailed.increment() }
    func configRead(applied: Bool) { applied ? configApplied.increment() : configRejected.increment() }

    /// The Prometheus text exposition, with gauges refreshed from `board`.
    func render(board: StatusBoard, isReady: Bool, configValid valid: Bool = true) -> [UInt8] {
        configValid.set(to: valid ? 1 : 0)
        var counts: [ModelState: Int] = [:]
        for status in board.snapshot() { counts[status.state, default: 0] += 1 }
        for (state, gauge) in modelsByState { gauge.set(to: Double(counts[state] ?? 0)) }
        ready.set(to: isReady ? 1 : 0)
        return registry.emitToBuffer()
    }
}
