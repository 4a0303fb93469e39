import Foundation
import Synchronization

/// A pod run the way the kubelet runs one, without a cluster: a network namespace of its
/// own (its containers share one loopback, on the manifest's ports), the volumes as host
/// directories (emptyDir world-writable as the kubelet makes them, a ConfigMap projected
/// with the kubelet's `..data` symlink layout), and each container started by
/// Fixtures/pod_container.sh with its mounts, user, capabilities and environment. Needs
/// root (`ip netns`, `unshare --mount`). Call `tearDown()` before the test ends.
public final class SimulatedPod: @unchecked Sendable {
    public let manifest: PodManifest
    public let namespace: String
    private let temp: TemporaryDirectory
    /// Volume name → host directory.
    public private(set) var volumeDirectories: [String: String] = [:]
    /// ConfigMap name → its projection, for edits.
    public private(set) var configMaps: [String: ConfigDirectory] = [:]
    private let processes = Mutex<[ChildProcess]>([])

    /// `reachable`: files the containers run (binaries, the MLServer venv) that the pod's
    /// uid must be able to reach, as any user can reach an image's files.
    public init(manifest: PodManifest, reachable: [String]) throws {
        for path in reachable { try Self.requireReachableByOthers(path) }
        guard !TestPaths.repositoryRoot.hasPrefix("/mnt/") else {
            throw TestSetupError("the simulated pod mounts a fresh /mnt; check the repository out elsewhere")
        }
        self.manifest = manifest
        temp = try TemporaryDirectory("model-agent-pod")
        namespace = "model-agent-pod-\(UUID().uuidString.prefix(8).lowercased())"
        chmod(temp.path, 0o755)
        for (name, volume) in manifest.volumes {
            let directory = try temp.subdirectory("volumes/\(name)")
            switch volume {
            case .emptyDir:
                // As the kubelet makes an emptyDir for a pod with an fsGroup.
                chown(directory, 0, gid_t(manifest.fsGroup))
                chmod(directory, 0o2777)
            case .configMap(let map):
                guard let data = manifest.configMaps[map], data.keys.sorted() == ["models.json"] else {
                    throw TestSetupError("ConfigMap \(map): the simulation projects one models.json key")
                }
                let projection = try ConfigDirectory(path: directory)
                try projection.write(raw: data["models.json"]!)
                configMaps[map] = projection
            }
            volumeDirectories[name] = directory
        }
        chmod(temp.path + "/volumes", 0o755)
        // Last, so that nothing above can fail and leave the namespace behind.
        try run("/usr/sbin/ip", ["netns", "add", namespace])
        do {
            try run("/usr/sbin/ip", ["-n", namespace, "link", "set", "lo", "up"])
        } catch {
            _ = try? run("/usr/sbin/ip", ["netns", "del", namespace])
            throw error
        }
    }

    /// Every directory above `path` must be searchable by others, or the pod's uid cannot
    /// run what lives there: say so plainly instead of failing deep inside a container.
    private static func requireReachableByOthers(_ path: String) throws {
        var directory = (path as NSString).deletingLastPathComponent
        while directory.count > 1 {
            var info = stat()
            guard stat(directory, &info) == 0 else { throw TestSetupError("cannot stat \(directory)") }
            if info.st_mode & S_IXOTH == 0 {
                throw TestSetupError(
                    "\(directory) is not searchable by other users (mode \(String(info.st_mode & 0o777, radix: 8))), "
                        + "so the simulated pod's uid cannot reach \(path); check the repository out where "
                        + "others may traverse, or chmod o+x \(directory)")
            }
            directory = (directory as NSString).deletingLastPathComponent
        }
    }

    /// Starts a container. `entrypoint` is the image's ENTRYPOINT (used when the manifest
    /// gives no `command`), `path` the image's PATH, `secrets` the values the user filled
    /// into the manifest's Secrets (every key the manifest declares must have one).
    @discardableResult
    public func start(
        _ name: String, entrypoint: [String] = [], path: String, secrets: [String: [String: String]] = [:]
    ) throws -> ChildProcess {
        let container = try manifest.container(name)
        var environment = ["PATH": path, "HOME": "/", "HOSTNAME": "simulated-pod"]
        for secret in container.envFromSecrets {
            guard let keys = manifest.secretKeys[secret], let values = secrets[secret],
                keys == values.keys.sorted()
            else { throw TestSetupError("container \(name): give values for Secret \(secret)'s keys") }
            environment.merge(values) { _, new in new }
        }
        for (key, value) in container.env { environment[key] = value }
        let mounts = try container.mounts.map { mount in
            guard let directory = volumeDirectories[mount.volume] else {
                throw TestSetupError("container \(name) mounts unknown volume \(mount.volume)")
            }
            // The kubelet mounts ConfigMap volumes read-only whatever the mount says.
            var readOnly = mount.readOnly
            if case .configMap = manifest.volumes[mount.volume] { readOnly = true }
            return "\(directory):\(mount.path)\(readOnly ? ":ro" : "")"
        }
        guard container.dropsAllCapabilities, !container.allowPrivilegeEscalation else {
            throw TestSetupError("container \(name): the simulation drops all capabilities and sets no_new_privs")
        }
        let argv = (container.command ?? entrypoint) + container.args
        let process = try ChildProcess(
            name: name, executable: TestPaths.fixtures + "/pod_container.sh",
            arguments: [
                namespace, String(manifest.runAsUser), String(manifest.runAsGroup), String(manifest.fsGroup),
                String(container.readOnlyRootFilesystem), mounts.joined(separator: " "),
                // The checkout is the containers' "image": binaries, venvs, fixtures.
                TestPaths.repositoryRoot, "--",
            ] + argv,
            environment: environment, logPath: temp.path + "/\(name).log")
        processes.withLock { $0.append(process) }
        return process
    }

    /// A process outside the pod's containers but on its loopback (a storage server), as root.
    public func startPeer(_ name: String, _ executable: String, _ arguments: [String], environment: [String: String])
        throws -> ChildProcess
    {
        let process = try ChildProcess(
            name: name, executable: "/usr/sbin/ip", arguments: ["netns", "exec", namespace, executable] + arguments,
            environment: environment, logPath: temp.path + "/\(name).log")
        processes.withLock { $0.append(process) }
        return process
    }

    public struct Answer: Sendable {
        /// 0 when nothing answered.
        public let status: Int
        public let body: String
    }

    /// An HTTP request on the pod's loopback (curl inside the network namespace), as the
    /// kubelet's probes and a client in the pod reach the containers.
    public func http(_ port: Int, _ path: String, json body: String? = nil, asProbe: Bool = false) async -> Answer {
        var arguments = ["netns", "exec", namespace, "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"]
        // The kubelet's probes say who they are; the agent's port answers such requests itself.
        if asProbe { arguments += ["-A", "kube-probe/1.37"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        arguments.append("http://127.0.0.1:\(port)\(path)")
        guard let (exit, output) = try? await runProcess("/usr/sbin/ip", arguments, timeout: .seconds(30)) else {
            return Answer(status: 0, body: "curl did not finish")
        }
        // Nothing answered (curl's own error is the body).
        if exit != 0 { return Answer(status: 0, body: output) }
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return Answer(status: status, body: lines.dropLast().joined(separator: "\n"))
    }

    public func probe(_ probe: PodManifest.Probe) async -> Int {
        await http(probe.port, probe.path, asProbe: true).status
    }

    public func tearDown() async {
        for process in processes.withLock({ $0 }).reversed() where process.exitCode == nil {
            await process.stop(grace: .seconds(5))
        }
        _ = try? run("/usr/sbin/ip", ["netns", "del", namespace])
    }
}
