import Prometheus
import Synchronization

/// Per-model traffic through the proxy: requests, errors (5xx answers and failures to
/// reach the server) and latency as Prometheus metrics, plus each model's in-flight count
/// and last request time for /v1/models. Only models the agent manages get their own
/// series; every other path counts under `model=""`, so clients cannot grow the metrics
/// without bound by inventing names.
final class ModelTraffic: Sendable {
    struct Figures: Sendable, Equatable {
        var inFlight = 0
        /// Wall-clock seconds of the last request's start.
        var lastRequest: Double?
    }

    private struct Series {
        let requests: Counter
        let errors: Counter
        let duration: DurationHistogram
    }

    private struct State {
        var figures: [ModelName: Figures] = [:]
        var series: [String: Series] = [:]
    }

    private let registry: PrometheusCollectorRegistry
    private let isKnown: @Sendable (ModelName) -> Bool
    private let state = Mutex(State())
    /// The series of requests that name no managed model, made at start (so it is exported,
    /// at zero, before any request): those requests are counted without taking the lock.
    private let unlabeled: Series

    init(registry: PrometheusCollectorRegistry, isKnown: @escaping @Sendable (ModelName) -> Bool) {
        self.registry = registry
        self.isKnown = isKnown
        unlabeled = Self.makeSeries("", in: registry)
    }

    /// The model a request path names: `/v2/models/<name>[/versions/<v>][/…]` or
    /// `/v1/models/<name>[:verb]` (KServe's V1 protocol). Names are matched as the agent
    /// spells them (no percent-decoding: valid names need none).
    static func modelName(inPath uri: String) -> ModelName? {
        let path = uri.utf8.firstIndex(where: { $0 == UInt8(ascii: "?") }).map { String(uri[..<$0]) } ?? uri
        let segment: Substring
        if path.hasPrefix("/v2/models/") {
            let rest = path.dropFirst("/v2/models/".count)
            segment = rest.prefix { $0 != "/" }
        } else if path.hasPrefix("/v1/models/") {
            let rest = path.dropFirst("/v1/models/".count)
            segment = rest.prefix { $0 != "/" && $0 != ":" }
        } else {
            return nil
        }
        return try? ModelName(validating: String(segment))
    }

    /// Called when a request starts; returns the label it is counted under.
    func started(_ model: ModelName?) -> ModelName? {
        guard let model, isKnown(model) else { return nil }
        let now = wallClockSeconds()
        state.withLock { s in
            s.figures[model, default: Figures()].inFlight += 1
            s.figures[model]?.lastRequest = now
        }
        return model
    }

    func finished(_ model: ModelName?, failed: Bool, duration: Duration) {
        let series =
            model.map { model in
                state.withLock { s -> Series in
                    s.figures[model]?.inFlight -= 1
                    if let existing = s.series[model.rawValue] { return existing }
                    let made = Self.makeSeries(model.rawValue, in: registry)
                    s.series[model.rawValue] = made
                    return made
                }
            } ?? unlabeled
        series.requests.increment()
        if failed { series.errors.increment() }
        series.duration.record(duration)
    }

    func figures(_ model: ModelName) -> Figures? {
        state.withLock { $0.figures[model] }
    }

    private static func makeSeries(_ label: String, in registry: PrometheusCollectorRegistry) -> Series {
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "model_agent", metricName: metric, unitName: unit, helpText: help)
        }
        let labels = [("model", label)]
        return Series(
            requests: registry.makeCounter(
                descriptor: name("proxy_requests", "total", "Requests proxied to the model server, by model"),
                labels: labels),
            errors: registry.makeCounter(
                descriptor: name(
                    "proxy_errors", "total", "Proxied requests answered 5xx or failed to reach the server, by model"),
                labels: labels),
            duration: registry.makeDurationHistogram(
                descriptor: name("proxy_request_duration", "seconds", "Proxied request duration, by model"),
                labels: labels,
                buckets: [
                    .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
                    .seconds(5), .seconds(10), .seconds(30), .seconds(60),
                ]))
    }
}
