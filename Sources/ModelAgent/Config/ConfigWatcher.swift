import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Watches the config directory with inotify and reports changes that can affect
/// models.json: the kubelet's atomic `..data` symlink swap, in-place writes, and renames
/// onto the file. The watch is on the directory, so a replaced file is still seen; if the
/// directory itself goes away the watch is re-installed when it comes back. Changes are
/// delivered, numbered, on `changes`, for one consumer (the config-watch service).
final class ConfigWatcher: Sendable {
    static let watchedNames: Set<String> = ["..data", "models.json"]

    /// One observed event. `sequence` grows by one per event, so a consumer that has
    /// just read the file can skip the events that were queued before its read.
    struct Change: Sendable, Equatable {
        let sequence: UInt64
        let event: String
    }

    let changes: AsyncStream<Change>
    private let continuation: AsyncStream<Change>.Continuation
    private let directory: String
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)
    private let delivered = Atomic<UInt64>(0)
    private let fd: Int32
    private let watch = Mutex<Int32>(-1)

    init(directory: String, logger: Logger) throws {
        self.directory = directory
        self.logger = logger
        // Bounded: a consumer that falls behind needs only the newest events (each one
        // means "read the file again").
        (changes, continuation) = AsyncStream.makeStream(of: Change.self, bufferingPolicy: .bufferingNewest(256))
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw SystemError("inotify_init1", path: directory) }
        try addWatch()
    }

    /// The number of the newest event delivered so far.
    var latestSequence: UInt64 { delivered.load(ordering: .acquiring) }

    private func deliver(_ event: String) {
        let sequence = delivered.add(1, ordering: .acquiringAndReleasing).newValue
        continuation.yield(Change(sequence: sequence, event: event))
    }

    deinit { close(fd) }

    private static let mask = UInt32(
        IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_MODIFY | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF
            | IN_MOVE_SELF)

    private func addWatch() throws {
        let wd = inotify_add_watch(fd, directory, Self.mask)
        guard wd >= 0 else { throw SystemError("inotify_add_watch", path: directory) }
        watch.withLock { $0 = wd }
    }

    /// Starts the reading thread. Call after the initial read has been scheduled:
    /// events are queued by the kernel from `init` on, so nothing is missed in between.
    func start() {
        logger.info("Start to watch model config event")
        startDetachedThread { [self] in self.loop() }
    }

    /// Ends the reading thread (within its poll interval) and the `changes` stream.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        continuation.finish()
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while !stopped.load(ordering: .relaxed) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 500)
            if stopped.load(ordering: .relaxed) { return }
            if ready <= 0 {
                rewatchIfNeeded()
                continue
            }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            var events: [String] = []
            var offset = 0
            buffer.withUnsafeBytes { raw in
                while offset + 16 <= count {
                    let mask = raw.load(fromByteOffset: offset + 4, as: UInt32.self)
                    let length = Int(raw.load(fromByteOffset: offset + 12, as: UInt32.self))
                    let nameBytes = raw[(offset + 16)..<min(count, offset + 16 + length)].prefix { $0 != 0 }
                    let name = String(decoding: nameBytes, as: UTF8.self)
                    offset += 16 + length
                    if mask & UInt32(IN_IGNORED) != 0 || mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
                        watch.withLock { $0 = -1 }
                        events.append("\(Self.describe(mask)) \(JSONText.quoted(directory))")
                    } else if Self.watchedNames.contains(name) {
                        events.append("\(Self.describe(mask)) \(JSONText.quoted(directory + "/" + name))")
                    }
                }
            }
            for event in events { deliver(event) }
        }
    }

    private func rewatchIfNeeded() {
        guard watch.withLock({ $0 }) < 0, FileSystem.resolvedKind(directory) == .directory else { return }
        if (try? addWatch()) != nil {
            logger.info("Watching \(directory) again")
            deliver("REWATCH \(JSONText.quoted(directory))")
        }
    }

    static func describe(_ mask: UInt32) -> String {
        let names: [(Int32, String)] = [
            (IN_CREATE, "CREATE"), (IN_MOVED_TO, "MOVED_TO"), (IN_MOVED_FROM, "MOVED_FROM"),
            (IN_CLOSE_WRITE, "CLOSE_WRITE"), (IN_MODIFY, "WRITE"), (IN_DELETE, "REMOVE"), (IN_ATTRIB, "CHMOD"),
            (IN_DELETE_SELF, "REMOVE_SELF"), (IN_MOVE_SELF, "MOVE_SELF"), (IN_IGNORED, "IGNORED"),
        ]
        let set = names.filter { mask & UInt32($0.0) != 0 }.map(\.1)
        return set.isEmpty ? "EVENT" : set.joined(separator: "|")
    }
}
