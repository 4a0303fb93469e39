import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Gives memory freed after a burst of model work back to the system. glibc keeps freed
/// heap memory mapped (10,000 models added and removed left ~80 MiB resident, ~45 MiB
/// after a trim), and a sidecar idles for most of its life. Called whenever a model's
/// worker ends; trims once no worker runs and at least `burst` workers that did work
/// (downloads, loads, removals, not the resync's checks of loaded models) have ended
/// since the last trim. The trim runs off the cooperative threads.
final class MemoryTrim: Sendable {
    private let ended = Mutex(0)
    private let burst: Int

    init(burst: Int = 1024) {
        self.burst = burst
    }

    func workerEnded(stillRunning: Int, worked: Bool) {
        let due = ended.withLock { count -> Bool in
            if worked { count += 1 }
            guard stillRunning == 0, count >= burst else { return false }
            count = 0
            return true
        }
        if due { DispatchQueue.global(qos: .background).async { Self.trim() } }
    }

    /// Keeps glibc's mmap threshold at its initial 128 KiB. By default glibc raises it
    /// (up to 32 MiB) each time a mapped block is freed, so that large short-lived buffers
    /// (a 2 MB `/v1/models` answer, a dictionary resized for 10,000 models) move into the
    /// heap, and the small objects allocated among them keep its pages resident once they
    /// are freed: no trim can give those pages back. Mapped blocks go back at free.
    /// Measured with bench/scale.sh: peak 68.5 → 57 MiB, 2 s after removing all 10,000
    /// models 50 → 35 MiB. An operator's own `MALLOC_MMAP_THRESHOLD_` is left alone.
    static func fixMmapThreshold(environment: [String: String]) {
        guard environment["MALLOC_MMAP_THRESHOLD_"] == nil, let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD in malloc.h
        _ = mallopt(mmapThreshold, 128 * 1024)
    }

    /// malloc_trim(0), looked up at run time: Glibc's module does not export it, and a
    /// libc without it (musl) simply skips the trim.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()

    static func trim() {
        _ = mallocTrim?(0)
    }
}
