import Synchronization

/// Set from a cancellation handler, polled from libcurl's progress callback.
final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    init() {}
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
