import Foundation
import Logging
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

    @Test func aKubeletSwapIsCompleteAndAnInPlaceWriteOnlyOnceClosed() async throws {
        let temp = try TemporaryDirectory("watcher")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let kubelet = try temp.subdirectory("kubelet")
        let swapped = try ConfigWatcher(directory: kubelet, logger: Logger(label: "test"))
        try await swapped.start(on: group.next())
        var swaps = swapped.changes.makeAsyncIterator()
        try ConfigDirectory(path: kubelet).write([])
        let swap = await next(containing: "\"" + kubelet + "/..data\"", from: &swaps)
        #expect(swap?.event.hasPrefix("MOVED_TO") == true)
        #expect(swap?.complete == true)
        swapped.stop()

        let plain = try temp.subdirectory("plain")
        try write("[]", to: plain + "/models.json")
        let inPlace = try ConfigWatcher(directory: plain, logger: Logger(label: "test"))
        try await inPlace.start(on: group.next())
        var writes = inPlace.changes.makeAsyncIterator()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: plain + "/models.json"))
        try handle.write(contentsOf: Data("[".utf8))
        let partial = await next(containing: "models.json", from: &writes)
        #expect(partial?.event.hasPrefix("WRITE") == true)
        #expect(partial?.complete == false)
        try handle.write(contentsOf: Data("]".utf8))
        try handle.close()
        let closed = await next(containing: "CLOSE_WRITE", from: &writes)
        #expect(closed?.complete == true)
        inPlace.stop()
        while await writes.next() != nil {}
        try await group.shutdownGracefully()
    }

    @Test func theWatchComesBackWithItsDirectoryAndStopEndsTheStream() async throws {
        let temp = try TemporaryDirectory("watcher")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try temp.subdirectory("config")
        let watcher = try ConfigWatcher(directory: directory, logger: Logger(label: "test"))
        try await watcher.start(on: group.next())
        var changes = watcher.changes.makeAsyncIterator()
        try FileManager.default.removeItem(atPath: directory)
        #expect(await next(containing: "REMOVE_SELF", from: &changes) != nil)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        #expect(await next(containing: "REWATCH", from: &changes) != nil)
        try ConfigDirectory(path: directory).write([])
        #expect(await next(containing: "/..data\"", from: &changes)?.complete == true)
        watcher.stop()
        // Whatever was queued drains, then the stream ends.
        while await changes.next() != nil {}
        try await group.shutdownGracefully()
    }
}
