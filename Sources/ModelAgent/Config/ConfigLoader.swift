import Logging

/// Reads models.json and hands each new desired state to the reconciler. A read that
/// fails or does not parse keeps the last good state. Bursts of change events (the
/// kubelet's swap produces several) collapse into one read after a short delay.
public actor ConfigLoader {
    public let path: String
    private let debounce: Duration
    private let logger: Logger
    private let metrics: AgentMetrics
    private let apply: @Sendable ([ModelName: ModelSpec]) -> Void
    private let unavailable: @Sendable () -> Void

    private var lastGood: [ModelName: ModelSpec]?
    private var lastBytes: [UInt8]?
    private var scheduled = false

    public init(
        configDir: String, debounce: Duration, logger: Logger, metrics: AgentMetrics,
        apply: @escaping @Sendable ([ModelName: ModelSpec]) -> Void, unavailable: @escaping @Sendable () -> Void
    ) {
        path = configDir + "/models.json"
        self.debounce = debounce
        self.logger = logger
        self.metrics = metrics
        self.apply = apply
        self.unavailable = unavailable
    }

    /// A change was observed: re-read soon.
    public func changed(_ event: String) {
        logger.info("Processing event \(event)")
        guard !scheduled else { return }
        scheduled = true
        Task {
            try? await Task.sleep(for: debounce)
            self.fire()
        }
    }

    private func fire() {
        scheduled = false
        reload(reason: "change")
    }

    /// Reads the file now. Returns whether a desired state is known afterwards.
    @discardableResult
    public func reload(reason: String) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: 16 << 20)
        } catch {
            if lastGood == nil {
                logger.warning("Failed to sync model config file \(path): \(error); waiting for it to appear")
                unavailable()
            } else {
                logger.error("Failed to sync model config file \(path): \(error); keeping the last good state")
            }
            return lastGood != nil
        }
        if bytes == lastBytes { return true }
        let file: ModelsFile
        do {
            file = try ModelsFile.parse(bytes)
        } catch {
            metrics.configRead(applied: false)
            logger.error("\(error)Failed to sync model config file", metadata: ["path": "\(path)"])
            if lastGood == nil { unavailable() }
            return lastGood != nil
        }
        metrics.configRead(applied: true)
        lastBytes = bytes
        var desired: [ModelName: ModelSpec] = [:]
        for entry in file.entries { desired[entry.name] = entry.spec }
        for refusal in file.refusals {
            if let name = refusal.name, desired[name] == nil, let previous = lastGood?[name] {
                desired[name] = previous
                logger.error(
                    "Refusing models.json \(refusal); keeping the previous spec of \(name)",
                    metadata: ["model": "\(name)"])
            } else {
                logger.error("Refusing models.json \(refusal)")
            }
        }
        if desired == lastGood { return true }
        logger.info(
            "Applying models.json (\(reason))",
            metadata: ["models": .stringConvertible(desired.count), "refused": .stringConvertible(file.refusals.count)])
        lastGood = desired
        apply(desired)
        return true
    }
}
