import Foundation

/// A process started by a test, its stdout and stderr captured in one log file, in its
/// own process group (so its descendants are stopped with it). It is killed on deinit
/// if the test did not stop it.
///
/// Spawned with posix_spawn and an explicitly cleared signal mask: Foundation's Process
/// passes on the mask of the calling thread, and Dispatch's threads block SIGTERM,
/// which would leave children deaf to a graceful stop.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let logPath: String
    public let name: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    public init(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil,
        logPath: String
    ) throws {
        self.name = name
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Descriptors the test process has open (pipes of other helpers, sockets) must not
        // leak into the child, or a reader waiting for EOF on such a pipe never gets it.
        for fd in Self.inheritableDescriptors() { posix_spawn_file_actions_addclose(&actions, fd) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = [executable] + arguments
        var child = pid_t()
        let rc = withCStrings(argv) { argvPointers in
            withCStrings(env) { envPointers in
                posix_spawn(&child, executable, &actions, &attributes, argvPointers, envPointers)
            }
        }
        guard rc == 0 else { throw TestSetupError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    private static func inheritableDescriptors() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap(Int32.init)
            .filter { fd in
                guard fd > 2 else { return false }
                let flags = fcntl(fd, F_GETFD)
                return flags >= 0 && flags & FD_CLOEXEC == 0
            }
    }

    public var isRunning: Bool { status() == nil }

    /// Blocks the calling thread until the process ends; for synchronous helpers only.
    public func waitBlocking() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        exitStatus = code
        return code
    }

    /// The exit status once the process has ended (reaping it), nil while it runs.
    private func status() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        guard result == pid else { return nil }
        let code = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        exitStatus = code
        return code
    }

    public var output: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Waits for a line containing `text`; returns that line.
    @discardableResult
    public func waitForLine(containing text: String, timeout: Duration = .seconds(120)) async throws -> String {
        var found: String?
        try await eventually("\(name) to print \(text)", timeout: timeout, interval: .milliseconds(50)) {
            if let line = output.split(separator: "\n").first(where: { $0.contains(text) }) {
                found = String(line)
                return true
            }
            if let code = status() {
                throw TestSetupError("\(name) exited with status \(code):\n\(output.suffix(4000))")
            }
            return false
        }
        return found!
    }

    /// The port a test fixture announces with its "PORT <n>" line once it listens.
    /// Generous: a python start on a loaded 2-core machine has been seen to take over 30 s.
    public func waitForPort() async throws -> Int {
        let line = try await waitForLine(containing: "PORT ", timeout: .seconds(120))
        guard let port = line.split(separator: " ").last.flatMap({ Int($0) }) else {
            throw TestSetupError("\(name) printed \(line)")
        }
        return port
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`. Returns the exit status.
    @discardableResult
    public func stop(grace: Duration = .seconds(15)) async -> Int32 {
        if status() == nil {
            kill(-pid, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while status() == nil && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        if status() == nil {
            kill(-pid, SIGKILL)
            while status() == nil { try? await Task.sleep(for: .milliseconds(10)) }
        }
        kill(-pid, SIGKILL)  // descendants that outlived their parent
        return status()!
    }

    /// The exit status once the process has exited; nil while it runs.
    public var exitCode: Int32? { status() }

    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        try await eventually("\(name) to exit", timeout: timeout, interval: .milliseconds(20)) { status() != nil }
        return status()!
    }

    /// Threads of the process right now, from /proc.
    public var threadCount: Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).count
    }

    deinit {
        if status() == nil {
            kill(-pid, SIGKILL)
            var raw: Int32 = 0
            waitpid(pid, &raw, 0)
        }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
