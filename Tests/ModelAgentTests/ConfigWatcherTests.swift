import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import ModelAgent

/// The inotify watch, read by an event loop: which events say the file is whole (read at
/// once) and which may be half-done (debounced), and the watch coming back with its directory.
@Suite(.timeLimit(.minutes(1)))
struct ConfigWatcherTests {
    /// The next change whose event names `fragment`; earlier ones are skipped.
    private func next(
        containing fragment: String, from changes: inout AsyncStream<ConfigWatcher.Change>.Iterator
    ) async -> ConfigWatcher.Change? {
        while let change = await changes.next() {
            if change.event.contains(fragment) { return change }
        }
        return nil
    }

    /// A watcher of `directory` reading on `loop`, and its changes.
    private func watching(_ directory: String, on loop: any EventLoop) async throws -> (
        ConfigWatcher, AsyncStream<ConfigWatcher.Change>.Iterator
    ) {
        let watcher = try ConfigWatcher(directory: directory, logger: Logger(label: "test"))
        try await watcher.start(on: loop)
        return (watcher, watcher.changes.makeAsyncIterator())
    }

    @Test func renamesAreCompleteAndWritesAreNot() async throws {
        let temp = try TemporaryDirectory("watcher")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let kubelet = try temp.subdirectory("kubelet")
        var (swapped, swaps) = try await watching(kubelet, on: group.next())
        let dataLink = "\"" + kubelet + "/..data\""
        // A first projection: the kubelet creates the models.json link after the ..data
        // rename; until it resolves, the rename is not a whole file.
        try FileManager.default.createDirectory(atPath: kubelet + "/..first", withIntermediateDirectories: false)
        try write("[]", to: kubelet + "/..first/models.json")
        try FileManager.default.createSymbolicLink(atPath: kubelet + "/..data_tmp", withDestinationPath: "..first")
        #expect(rename(kubelet + "/..data_tmp", kubelet + "/..data") == 0)
        let first = await next(containing: dataLink, from: &swaps)
        #expect(first?.event.hasPrefix("MOVED_TO") == true)
        #expect(first?.complete == false)
        try FileManager.default.createSymbolicLink(
            atPath: kubelet + "/models.json", withDestinationPath: "..data/models.json")
        #expect(await next(containing: "/models.json\"", from: &swaps)?.complete == false)
        // Later swaps, the link in place: complete.
        try ConfigDirectory(path: kubelet).write([])
        #expect(await next(containing: dataLink, from: &swaps)?.complete == true)
        swapped.stop()

        let plain = try temp.subdirectory("plain")
        try write("[]", to: plain + "/models.json")
        var (inPlace, writes) = try await watching(plain, on: group.next())
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: plain + "/models.json"))
        try handle.write(contentsOf: Data("[]".utf8))
        let partial = await next(containing: "models.json", from: &writes)
        #expect(partial?.event.hasPrefix("WRITE") == true)
        #expect(partial?.complete == false)
        try handle.close()
        // A closed write is not proof of a whole file (`echo > f; echo >> f` closes twice).
        #expect(await next(containing: "CLOSE_WRITE", from: &writes)?.complete == false)
        try write("[]", to: plain + "/next.json")
        #expect(rename(plain + "/next.json", plain + "/models.json") == 0)
        #expect(await next(containing: "MOVED_TO", from: &writes)?.complete == true)
        inPlace.stop()
        while await writes.next() != nil {}
        try await group.shutdownGracefully()
    }

    @Test func theWatchComesBackWithItsDirectoryAndStopEndsTheStream() async throws {
        let temp = try TemporaryDirectory("watcher")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try temp.subdirectory("config")
        var (watcher, changes) = try await watching(directory, on: group.next())
        try FileManager.default.removeItem(atPath: directory)
        #expect(await next(containing: "REMOVE_SELF", from: &changes) != nil)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        #expect(await next(containing: "REWATCH", from: &changes) != nil)
        let projection = try ConfigDirectory(path: directory)
        try projection.write([])
        #expect(await next(containing: "/..data\"", from: &changes) != nil)
        try projection.write([])
        #expect(await next(containing: "/..data\"", from: &changes)?.complete == true)
        watcher.stop()
        // Whatever was queued drains, then the stream ends.
        while await changes.next() != nil {}
        try await group.shutdownGracefully()
    }

    /// fs.inotify.max_queued_events (16,384 by default; some nodes raise it a lot).
    static let queuedEventLimit =
        Int(
            (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16384

    @Test(
        "an overflow that hid the directory's replacement still ends in a rewatch",
        .enabled(if: queuedEventLimit <= 65536, "overflowing a raised inotify queue takes too many files"))
    func anOverflowThatHidTheDirectorysReplacementStillEndsInARewatch() async throws {
        let temp = try TemporaryDirectory("watcher")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try temp.subdirectory("config")
        let loop = group.next()
        var (watcher, changes) = try await watching(directory, on: loop)
        // The reader stalls while more events than the kernel queues (fs.inotify.
        // max_queued_events) happen, then the directory is replaced: its end is dropped.
        let queued = Self.queuedEventLimit
        let stalled = DispatchSemaphore(value: 0)
        let resume = DispatchSemaphore(value: 0)
        loop.execute {
            stalled.signal()
            resume.wait()
        }
        stalled.wait()
        for index in 0..<(queued / 2 + 64) {
            let path = directory + "/junk-\(index)"
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            try FileManager.default.removeItem(atPath: path)
        }
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        resume.signal()
        #expect(await next(containing: "OVERFLOW", from: &changes) != nil)
        #expect(await next(containing: "REWATCH", from: &changes) != nil)
        // And the new directory's changes are seen.
        let projection = try ConfigDirectory(path: directory)
        try projection.write([])
        #expect(await next(containing: "/..data\"", from: &changes) != nil)
        watcher.stop()
        while await changes.next() != nil {}
        try await group.shutdownGracefully()
    }
}
