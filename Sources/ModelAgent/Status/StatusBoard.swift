import Synchronization

/// The shared, locked view of every model's status: written by the model actors, read
/// by the HTTP endpoints and the metrics.
final class StatusBoard: Sendable {
    private let models = Mutex<[ModelName: ModelStatus]>([:])

    init() {}

    func update(_ name: ModelName, uri: String, _ change: (inout ModelStatus) -> Void) {
        models.withLock { all in
            var status = all[name] ?? ModelStatus(name: name, state: .pending, storageUri: uri)
            let before = status.state
            status.storageUri = uri
            change(&status)
            if status.state != before { status.since = wallClockSeconds() }
            all[name] = status
        }
    }

    func remove(_ name: ModelName) {
        models.withLock { all in
            all.removeValue(forKey: name)
            all.releaseSpareCapacity()
        }
    }

    func snapshot() -> [ModelStatus] {
        models.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }

    /// Every model's name, sorted.
    func names() -> [ModelName] {
        models.withLock { Array($0.keys) }.sorted()
    }

    /// The statuses of `names` that are still known, in their order.
    func statuses(of names: ArraySlice<ModelName>) -> [ModelStatus] {
        models.withLock { all in names.compactMap { all[$0] } }
    }

    func status(of name: ModelName) -> ModelStatus? {
        models.withLock { $0[name] }
    }
}
