#if canImport(Glibc)
    import Glibc
#endif

private final class ThreadBody {
    let name: String
    let run: @Sendable () -> Void
    init(_ name: String, _ run: @escaping @Sendable () -> Void) {
        self.name = name
        self.run = run
    }

    /// Names the calling thread (Glibc's module does not export pthread_setname_np, and
    /// the kernel's own interface is this file).
    func nameThread() {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
}

/// Starts `body` on a new detached POSIX thread named `name` (at most 15 bytes are kept; a
/// thread otherwise inherits its creator's name, which says nothing in `top -H`). Used for
/// work that blocks by design (libcurl transfers) so it never occupies Swift's
/// cooperative pool. Returns pthread_create's error (EAGAIN under a pids limit), 0 when
/// started: threads are started under load, where a refusal must not end the agent.
@discardableResult
func startDetachedThread(name: String, _ body: @escaping @Sendable () -> Void) -> Int32 {
    let context = Unmanaged.passRetained(ThreadBody(name, body))
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, nil,
        { raw in
            let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            body.nameThread()
            body.run()
            return nil
        }, context.toOpaque())
    guard rc == 0 else {
        context.release()
        return rc
    }
    pthread_detach(thread)
    return 0
}
