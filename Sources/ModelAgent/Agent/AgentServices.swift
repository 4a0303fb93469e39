import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

// The agent's long-running parts as services of one ServiceGroup. The group tells them to
// shut down in the reverse of their order in `Agent.run`: signals first, then resync and the
// config watch (no new work), then the reconciler (downloads cancelled, staging removed,
// transfer pools closed), then the proxied port (drained: it has been failing health checks
// since the SIGTERM), and the admin port last, so it answers while the rest winds down.

/// SIGTERM and SIGINT end the agent (this service returns, and the group shuts down in
/// order); SIGHUP re-reads models.json (the conventional "reload your configuration",
/// instead of the default of dying).
struct SignalService: Service {
    let agent: Agent
    let signals: AgentSignals
    /// Begun at once on SIGTERM: health checks fail from the first moment.
    let drain: TrafficDrain
    let logger: Logger

    func run() async {
        let signalled = await cancelWhenGracefulShutdown {
            for await number in signals.stream {
                if number != SIGHUP { return true }
                await agent.reload(reason: "SIGHUP")
            }
            return false
        }
        if signalled {
            drain.begin()
            logger.info("Received TERM signal, attempting to gracefully shutdown servers.")
        } else {
            logger.info("Shutting down")
        }
    }
}

/// Re-reads models.json and re-checks the server every `interval`.
struct ResyncService: Service {
    let interval: Duration
    let loader: ConfigLoader
    let reconciler: Reconciler

    func run() async {
        await cancelWhenGracefulShutdown {
            while true {
                do { try await Task.sleep(for: interval) } catch { return }
                await loader.reload(reason: "resync")
                reconciler.recheckServed()
            }
        }
    }
}

/// The inotify watch of the config dir (started before the first read, so a change made
/// during startup is seen) and the reads it triggers. A file replaced whole (the kubelet's
/// atomic `..data` swap, a rename onto models.json) or closed by its writer is read at
/// once; other events (a write in progress can be seen half-done) wait `debounce`, so a
/// burst becomes one read. Events queued before a read are then skipped (still logged,
/// after the read that covered them).
struct ConfigWatchService: Service {
    let watcher: ConfigWatcher
    let loader: ConfigLoader
    let debounce: Duration
    let logger: Logger

    func run() async {
        await cancelWhenGracefulShutdown {
            var readAfter: UInt64 = 0
            for await change in watcher.changes {
                logger.info("Processing event \(change.event)")
                if change.sequence <= readAfter { continue }
                if !change.complete {
                    do { try await Task.sleep(for: debounce) } catch { return }
                }
                readAfter = watcher.latestSequence
                await loader.reload(reason: "change")
            }
        }
        watcher.stop()
    }
}

/// The proxied port. Health checks run in its lifetime. At shutdown it drains: health checks
/// answer 503 (from the SIGTERM on), requests keep flowing until `quietPeriod` has passed
/// without a new one and those in flight have ended (at most 30 s or `quietPeriod` more);
/// then the port closes.
struct ProxyService: Service {
    let server: ProxyServer
    let drain: TrafficDrain
    let health: HealthChecker
    let quietPeriod: Duration
    let logger: Logger

    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await health.run() }
            try? await gracefulShutdown()
            drain.begin()
            if quietPeriod > .zero {
                logger.info("Sleeping \(quietPeriod) to allow K8s propagation of non-ready state")
                await drain.waitUntilQuiet(quietPeriod)
                let inFlight = drain.inFlight
                if inFlight > 0 {
                    logger.info("Quiet period over; waiting for \(inFlight) requests in flight")
                    // Bounded: the kubelet kills the pod after its grace period anyway.
                    await drain.waitForInFlight(upTo: max(quietPeriod, .seconds(30)))
                }
            }
            health.stop()
            group.cancelAll()
            logger.info("Shutting down server: main")
            await server.stop()
        }
    }
}

/// The admin port, bound before startup returns; closed when the shutdown reaches it.
struct StatusService: Service {
    let server: StatusServer

    func run() async {
        try? await gracefulShutdown()
        await server.stop()
    }
}

/// The per-model workers and the transfer pools they use. Models stay loaded in the server:
/// the pod is going away, and a restarted agent recovers them from their markers.
struct ReconcilerService: Service {
    let reconciler: Reconciler
    let pools: [TransferPool]
    let cache: ModelCache?

    func run() async {
        try? await gracefulShutdown()
        // Awaited here, but not cancelled with this service: if the group is cancelled
        // rather than shut down, the workers still get their time to stop.
        let (reconciler, pools, cache) = (self.reconciler, self.pools, self.cache)
        await Task {
            await reconciler.shutdown(timeout: .seconds(10))
            await cache?.close()
            for pool in pools { await pool.shutdown() }
        }.value
    }
}
