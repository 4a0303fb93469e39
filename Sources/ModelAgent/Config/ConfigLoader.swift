import Logging

/// Reads models.json and hands each new desired state to the reconciler. A read that
/// fails or does not parse keeps the last good state.
actor ConfigLoader {
    let path: String
    private let logger: Logger
    private let metrics: AgentMetrics
    private let apply:
        @Sendable (_ desired: [ModelName: ModelSpec], _ keep: Set<ModelName>, _ order: [ModelName]) -> Void
    private let unavailable: @Sendable () -> Void
    private let health: ConfigHealth

    private var lastGood: [ModelName: ModelSpec]?
    private var lastBytes: [UInt8]?

    /// `unavailable` is called when the first read finds no usable file: the agent then
    /// keeps serving what is on disk.
    init(
        configDir: String, logger: Logger, metrics: AgentMetrics, health: ConfigHealth,
        apply:
            @escaping @Sendable (_ desired: [ModelName: ModelSpec], _ keep: Set<ModelName>, _ order: [ModelName]) ->
            Void,
        unavailable: @escaping @Sendable () -> Void
    ) {
        self.health = health
        path = configDir + "/models.json"
        self.logger = logger
        self.metrics = metrics
        self.apply = apply
        self.unavailable = unavailable
    }

    /// Reads the file now. Returns whether a desired state is known afterwards.
    @discardableResult
    func reload(reason: String) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: 16 << 20)
        } catch {
            health.report("models.json cannot be read: \(error)")
            if lastGood == nil {
                logger.warning(
                    "Failed to sync model config file \(path): \(error); serving the models on disk until it can be read"
                )
                unavailable()
            } else {
                logger.error("Failed to sync model config file \(path): \(error); keeping the last good state")
            }
            return lastGood != nil
        }
        if bytes == lastBytes {
            // Back to the last good content (a typo reverted): usable again.
            health.report(nil)
            return true
        }
        let file: ModelsFile
        do {
            file = try ModelsFile.parse(bytes)
        } catch {
            metrics.configRead(applied: false)
            health.report("\(error)")
            let consequence = lastGood == nil ? "serving the models on disk" : "keeping the last good state"
            logger.error("Failed to sync model config file: \(error); \(consequence)", metadata: ["path": "\(path)"])
            if lastGood == nil { unavailable() }
            return lastGood != nil
        }
        metrics.configRead(applied: true)
        health.report(nil)
        lastBytes = bytes
        SecretRedactor.shared.registerSecrets(inURIs: file.entries.map(\.spec.storageUri))
        var desired: [ModelName: ModelSpec] = [:]
        for entry in file.entries { desired[entry.name] = entry.spec }
        // A refused entry with a valid name keeps what the agent has for that model: its
        // previous spec, or at startup its verified marker. Only a valid entry (or its
        // absence) changes a model.
        var keep: Set<ModelName> = []
        for refusal in file.refusals {
            if let name = refusal.name, desired[name] == nil {
                if let previous = lastGood?[name] { desired[name] = previous } else { keep.insert(name) }
                logger.error(
                    "Refusing models.json \(refusal); keeping what the agent has for \(name)",
                    metadata: ["model": "\(name)"])
            } else {
                logger.error("Refusing models.json \(refusal)")
            }
        }
        if desired == lastGood && keep.isEmpty { return true }
        logger.info(
            "Applying models.json (\(reason))",
            metadata: ["models": .stringConvertible(desired.count), "refused": .stringConvertible(file.refusals.count)])
        lastGood = desired
        apply(desired, keep, file.entries.map(\.name))
        return true
    }
}
