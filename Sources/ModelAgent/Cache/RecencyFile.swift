import Dispatch
import Logging
import Synchronization

/// The cache's recency order, remembered across restarts of the agent in the model dir
/// (`.model-agent-recency`: one model name per line, most recently used first; model
/// servers skip dot-files). Written after loads and evictions and at shutdown, off the
/// caller's thread, latest snapshot only; a crash loses at most the uses since.
final class RecencyFile: Sendable {
    static let fileName = ".model-agent-recency"
    /// More names than any models.json holds: a corrupt file cannot make startup slow.
    static let maximumBytes = 4 << 20

    let path: String
    private let logger: Logger
    private let queue = DispatchQueue(label: "model-agent.cache.recency")
    private let pending = Mutex<[ModelName]?>(nil)
    /// Whether the last write failed: one warning per run of failures, not one per write.
    private let failing = Mutex(false)

    init(modelDir: String, logger: Logger) {
        path = modelDir + "/" + Self.fileName
        self.logger = logger
    }

    /// The remembered order; empty when there is none (or it cannot be read). Lines that
    /// are not valid model names are skipped.
    func read() -> [ModelName] {
        guard FileSystem.exists(path) else { return [] }
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: Self.maximumBytes)
        } catch {
            logger.warning("Cannot read the cache's recency order; starting from models.json order: \(error)")
            return []
        }
        return Self.parse(bytes)
    }

    static func parse(_ bytes: [UInt8]) -> [ModelName] {
        var seen = Set<ModelName>()
        var names: [ModelName] = []
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            guard let text = String(validating: line, as: UTF8.self),
                let name = try? ModelName(validating: text), seen.insert(name).inserted
            else { continue }
            names.append(name)
        }
        return names
    }

    /// Writes `order` soon; a later call before the write replaces it.
    func save(_ order: [ModelName]) {
        let first = pending.withLock { waiting -> Bool in
            defer { waiting = order }
            return waiting == nil
        }
        if first { queue.async { self.writePending() } }
    }

    /// Writes what is pending now and returns when it is on disk.
    func flush() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            queue.async {
                self.writePending()
                done.resume()
            }
        }
    }

    private func writePending() {
        guard
            let order = pending.withLock({ waiting -> [ModelName]? in
                defer { waiting = nil }
                return waiting
            })
        else { return }
        let text = order.map { $0.rawValue + "\n" }.joined()
        do {
            try FileSystem.writeFileAtomically(path, Array(text.utf8), temporary: path + ".tmp")
            failing.withLock { $0 = false }
        } catch {
            let first = failing.withLock { was in
                defer { was = true }
                return !was
            }
            if first {
                logger.warning("Cannot save the cache's recency order (said once until it works again): \(error)")
            }
        }
    }
}
