import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Watches the config directory with inotify and reports changes that can affect
/// models.json: the kubelet's atomic `..data` symlink swap, in-place writes, and renames
/// onto the file. The watch is on the directory, so a replaced file is still seen; if the
/// directory itself goes away the watch is re-installed when it comes back. The inotify
/// descriptor is read by an event loop the agent already runs (no thread, no timer while
/// the watch is in place). Changes are delivered, numbered, on `changes`, for one consumer
/// (the config-watch service).
final class ConfigWatcher: Sendable {
    static let watchedNames: Set<String> = ["..data", "models.json"]

    /// One observed event. `sequence` grows by one per event, so a consumer that has
    /// just read the file can skip the events that were queued before its read.
    struct Change: Sendable, Equatable {
        let sequence: UInt64
        let event: String
        /// The file was replaced whole by a rename (the kubelet's `..data` swap, `mv` onto
        /// models.json): it can be read at once. Anything else (a write, even a closed one:
        /// `echo > f; echo >> f` closes twice) may be half-done.
        var complete = false
    }

    let changes: AsyncStream<Change>
    private let continuation: AsyncStream<Change>.Continuation
    private let directory: String
    private let logger: Logger
    private let delivered = Atomic<UInt64>(0)
    private let fd: Int32
    private let watch = Mutex<Int32>(-1)
    /// The channel reading `fd` once started (it owns `fd` from then on), and whether
    /// `stop` came first.
    private let reader = Mutex<(channel: (any Channel)?, started: Bool, stopped: Bool)>((nil, false, false))
    /// While the directory is gone (or cannot be watched): the check for its return.
    private let rewatch = Mutex<(task: RepeatedTask?, readerGone: Bool)>((nil, false))
    /// Said once per loss: the directory is there but cannot be watched.
    private let unwatchableReported = Atomic<Bool>(false)

    /// Throws only when inotify itself is unavailable (the user's instance limit, shared by
    /// the node's containers); a directory that cannot be watched yet is retried from
    /// `start` on.
    convenience init(directory: String, logger: Logger) throws {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw SystemError("inotify_init1", path: directory) }
        self.init(directory: directory, logger: logger, descriptor: fd)
    }

    /// A watcher without inotify: it reports nothing, and the periodic resync (and SIGHUP)
    /// apply changes. For when `init(directory:logger:)` threw: an agent that serves its
    /// models with slower config updates beats one in a crash loop.
    static func unavailable(directory: String, logger: Logger) -> ConfigWatcher {
        ConfigWatcher(directory: directory, logger: logger, descriptor: -1)
    }

    private init(directory: String, logger: Logger, descriptor: Int32) {
        self.directory = directory
        self.logger = logger
        // Bounded: a consumer that falls behind needs only the newest events (each one
        // means "read the file again").
        (changes, continuation) = AsyncStream.makeStream(of: Change.self, bufferingPolicy: .bufferingNewest(256))
        fd = descriptor
        guard fd >= 0 else { return }
        do {
            try addWatch()
        } catch {
            reportUnwatchable(error)
        }
    }

    /// The number of the newest event delivered so far.
    var latestSequence: UInt64 { delivered.load(ordering: .acquiring) }

    private func deliver(_ event: String, complete: Bool = false) {
        let sequence = delivered.add(1, ordering: .acquiringAndReleasing).newValue
        continuation.yield(Change(sequence: sequence, event: event, complete: complete))
    }

    /// Whether an event on `name` leaves models.json whole (see `Change.complete`). The
    /// kubelet renames `..data` into place before it creates the `models.json` link of a
    /// first projection: that rename is complete only once the link resolves.
    func isComplete(_ mask: UInt32, name: String) -> Bool {
        guard mask & UInt32(IN_MOVED_TO) != 0 else { return false }
        return name != "..data" || FileSystem.resolvedKind(directory + "/models.json") == .file
    }

    /// `fd` stays ours for adding watches; the reading channel owns a duplicate.
    deinit {
        if fd >= 0 { close(fd) }
    }

    private static let mask = UInt32(
        IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_MODIFY | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF
            | IN_MOVE_SELF)

    private func addWatch() throws {
        let wd = inotify_add_watch(fd, directory, Self.mask)
        guard wd >= 0 else { throw SystemError("inotify_add_watch", path: directory) }
        watch.withLock { $0 = wd }
        unwatchableReported.store(false, ordering: .relaxed)
    }

    /// Starts reading events on `eventLoop`. Call after the initial read has been
    /// scheduled: events are queued by the kernel from `init` on, so nothing is missed in
    /// between.
    func start(on eventLoop: any EventLoop) async throws {
        logger.info("Start to watch model config event")
        let proceed = reader.withLock { r -> Bool in
            guard !r.stopped, !r.started else { return false }
            r.started = true
            return true
        }
        guard proceed, fd >= 0 else { return }
        // NIO closes what it was given, at the channel's end or on a failed start, while
        // `addWatch` keeps using `fd`: it gets a duplicate (the same inotify instance).
        let readable = dup(fd)
        guard readable >= 0 else { throw SystemError("dup", path: directory) }
        let channel: any Channel
        do {
            channel = try await NIOPipeBootstrap(group: eventLoop)
                // inotify returns whole events only, and fails a read too small for the next
                // one (up to 16 + NAME_MAX + 1 bytes): the buffer must not shrink.
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 4096))
                .channelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(InotifyEventHandler(watcher: self))
                    }
                }
                .takingOwnershipOfDescriptor(input: readable).get()
        } catch {
            // Whether NIO closed the duplicate depends on how far it got, and its errors do
            // not say; one descriptor left open at most once beats closing someone else's.
            // `fd` is still open either way.
            throw error
        }
        let stoppedMeanwhile = reader.withLock { r -> Bool in
            r.channel = channel
            return r.stopped
        }
        if stoppedMeanwhile {
            try? await channel.close()
        } else if watch.withLock({ $0 }) < 0 {
            let eventLoop = channel.eventLoop
            eventLoop.execute { [self] in watchForReturn(on: eventLoop) }
        }
    }

    private func reportUnwatchable(_ error: any Error) {
        guard !unwatchableReported.exchange(true, ordering: .relaxed) else { return }
        logger.warning(
            "Cannot watch config dir \(directory) yet; retrying every 0.5 s, and models.json is re-read by the periodic resync meanwhile",
            metadata: ["error": "\(error)"])
    }

    /// Ends the reading and the `changes` stream.
    func stop() {
        let channel = reader.withLock { r -> (any Channel)? in
            r.stopped = true
            defer { r.channel = nil }
            return r.channel
        }
        readerClosed()
        channel?.close(promise: nil)
        continuation.finish()
    }

    /// The events in `bytes` (one read of the descriptor: whole events only), delivered in
    /// order. Called on the reading event loop.
    fileprivate func received(_ bytes: ByteBuffer, on eventLoop: any EventLoop) {
        var events: [(String, Bool)] = []
        var lost = false
        var overflowed = false
        bytes.withUnsafeReadableBytes { raw in
            let count = raw.count
            var offset = 0
            let current = watch.withLock { $0 }
            while offset + 16 <= count {
                let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                let nameEnd = min(count, offset + 16 + length)
                let name = String(decoding: raw[(offset + 16)..<nameEnd].prefix { $0 != 0 }, as: UTF8.self)
                offset = nameEnd
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    // Events were dropped: whatever they were, the file must be read again.
                    events.append(("OVERFLOW \(JSONText.quoted(directory))", false))
                    overflowed = true
                } else if wd == current
                    && (mask & UInt32(IN_IGNORED) != 0 || mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0)
                {
                    // (An IN_IGNORED of an older watch, after a rewatch, says nothing.) A
                    // directory moved away stays watched where it went: that watch goes.
                    if mask & UInt32(IN_MOVE_SELF) != 0 { _ = inotify_rm_watch(fd, wd) }
                    watch.withLock { $0 = -1 }
                    lost = true
                    events.append(("\(Self.describe(mask)) \(JSONText.quoted(directory))", false))
                } else if wd == current && Self.watchedNames.contains(name) {
                    // (Names under an older watch belong to a directory no longer watched.)
                    events.append(
                        (
                            "\(Self.describe(mask)) \(JSONText.quoted(directory + "/" + name))",
                            isComplete(mask, name: name)
                        ))
                }
            }
        }
        for (event, complete) in events { deliver(event, complete: complete) }
        // Dropped events may have included the watch's own end (the directory replaced):
        // adding the watch again says whether it still stands.
        if overflowed && !lost { lost = !confirmWatch() }
        if lost { watchForReturn(on: eventLoop) }
    }

    /// The directory went away (or was moved): look for it every half second until it is
    /// back, then watch it again. The check (a stat and, once back, inotify_add_watch) runs
    /// on the event loop: both are quick on the tmpfs or local disk a config dir lives on.
    private func watchForReturn(on eventLoop: any EventLoop) {
        guard !reader.withLock({ $0.stopped }) else { return }
        rewatch.withLock { r in
            guard r.task == nil, !r.readerGone else { return }
            r.task = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(500), delay: .milliseconds(500)) {
                [self] task in
                if rewatchIfNeeded() {
                    task.cancel()
                    rewatch.withLock { $0.task = nil }
                }
            }
        }
    }

    /// Whether the directory is watched again.
    private func rewatchIfNeeded() -> Bool {
        guard watch.withLock({ $0 }) < 0 else { return true }
        guard FileSystem.resolvedKind(directory) == .directory else { return false }
        do {
            try addWatch()
        } catch {
            reportUnwatchable(error)
            return false
        }
        announceRewatch()
        return true
    }

    private func announceRewatch() {
        logger.info("Watching \(directory) again")
        deliver("REWATCH \(JSONText.quoted(directory))")
    }

    /// After an overflow: true when the watch in place is still this directory's (adding
    /// it again returns the same number); otherwise the old one is forgotten, and a new
    /// one, when it could be added, is announced like a rewatch.
    private func confirmWatch() -> Bool {
        let before = watch.withLock { $0 }
        guard FileSystem.resolvedKind(directory) == .directory, (try? addWatch()) != nil else {
            watch.withLock { $0 = -1 }
            return false
        }
        if watch.withLock({ $0 }) != before {
            // The old watch (a directory moved away) would go on reporting: drop it.
            if before >= 0 { _ = inotify_rm_watch(fd, before) }
            announceRewatch()
        }
        return true
    }

    /// The reading channel closed or is closing (stopped or failed): nothing looks for the
    /// directory any more.
    fileprivate func readerClosed() {
        rewatch.withLock { r in
            r.readerGone = true
            r.task?.cancel()
            r.task = nil
        }
    }

    fileprivate func readFailed(_ error: any Error) {
        logger.error(
            "Config watch failed; models.json is re-read only by the periodic resync", metadata: ["error": "\(error)"])
    }

    static func describe(_ mask: UInt32) -> String {
        let names: [(Int32, String)] = [
            (IN_CREATE, "CREATE"), (IN_MOVED_TO, "MOVED_TO"), (IN_MOVED_FROM, "MOVED_FROM"),
            (IN_CLOSE_WRITE, "CLOSE_WRITE"), (IN_MODIFY, "WRITE"), (IN_DELETE, "REMOVE"), (IN_ATTRIB, "CHMOD"),
            (IN_DELETE_SELF, "REMOVE_SELF"), (IN_MOVE_SELF, "MOVE_SELF"), (IN_IGNORED, "IGNORED"),
            (IN_Q_OVERFLOW, "OVERFLOW"),
        ]
        let set = names.filter { mask & UInt32($0.0) != 0 }.map(\.1)
        return set.isEmpty ? "EVENT" : set.joined(separator: "|")
    }
}

/// Hands each read of the inotify descriptor to its watcher.
private final class InotifyEventHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let watcher: ConfigWatcher

    init(watcher: ConfigWatcher) { self.watcher = watcher }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        watcher.received(unwrapInboundIn(data), on: context.eventLoop)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A read error on an inotify descriptor means a broken watch: say so, and keep the
        // periodic resync as the fallback.
        watcher.readFailed(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watcher.readerClosed()
        context.fireChannelInactive()
    }
}
