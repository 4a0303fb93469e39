import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM, SIGINT and SIGHUP, caught from creation on and queued until the agent's signal
/// service reads them: created before startup, so that a signal during startup is neither
/// the default death nor lost.
package final class AgentSignals: Sendable {
    package let stream: AsyncStream<Int32>
    /// Kept (and cancelled on deinit); never touched between, the lock only makes that sendable.
    private let sources: Mutex<[any DispatchSourceSignal]>

    package init() {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        self.sources = Mutex(sources)
    }

    deinit {
        sources.withLock { for source in $0 { source.cancel() } }
    }
}
