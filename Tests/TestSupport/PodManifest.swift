import Foundation

/// The parts of a Kubernetes manifest (a Deployment with its ConfigMap and Secret) that a
/// kubelet acts on, read from the YAML itself so a test runs what users apply. The YAML is
/// turned into JSON by PyYAML in the `image` venv (scripts/setup-env).
public struct PodManifest: Sendable {
    public struct Probe: Sendable {
        public let path: String
        public let port: Int
    }

    public struct Mount: Sendable {
        public let volume: String
        public let path: String
        public let readOnly: Bool
    }

    public struct Container: Sendable {
        public let name: String
        /// `command` (nil: the image's entrypoint) and `args`.
        public let command: [String]?
        public let args: [String]
        /// `env` entries with a literal `value`, in order.
        public let env: [(String, String)]
        /// Secrets whose keys become variables (`envFrom.secretRef`).
        public let envFromSecrets: [String]
        /// `ports`: name → containerPort.
        public let ports: [String: Int]
        public let readiness: Probe?
        public let liveness: Probe?
        public let mounts: [Mount]
        public let readOnlyRootFilesystem: Bool
        public let dropsAllCapabilities: Bool
        public let allowPrivilegeEscalation: Bool
    }

    public enum Volume: Sendable {
        case emptyDir
        case configMap(String)
    }

    public let containers: [Container]
    public let volumes: [String: Volume]
    public let runAsUser: Int
    public let runAsGroup: Int
    public let fsGroup: Int
    public let terminationGracePeriod: Int
    /// ConfigMap name → its data.
    public let configMaps: [String: [String: String]]
    /// Secret name → its keys (the values are the user's to fill in).
    public let secretKeys: [String: [String]]

    public func container(_ name: String) throws -> Container {
        guard let found = containers.first(where: { $0.name == name }) else {
            throw TestSetupError("the manifest has no container \(name)")
        }
        return found
    }

    public init(yamlFile: String) throws {
        let json = try run(
            try TestPaths.venvTool("image", "python"),
            [
                "-c",
                "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
                yamlFile,
            ])
        guard let documents = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else {
            throw TestSetupError("\(yamlFile) holds no list of objects")
        }
        var configMaps: [String: [String: String]] = [:]
        var secretKeys: [String: [String]] = [:]
        var deployment: [String: Any]?
        for document in documents {
            let name = (document["metadata"] as? [String: Any])?["name"] as? String ?? ""
            switch document["kind"] as? String {
            case "ConfigMap": configMaps[name] = document["data"] as? [String: String] ?? [:]
            case "Secret":
                let data = (document["stringData"] as? [String: Any] ?? [:]).merging(
                    document["data"] as? [String: Any] ?? [:]
                ) { first, _ in first }
                secretKeys[name] = data.keys.sorted()
            case "Deployment": deployment = document
            default: break
            }
        }
        guard let deployment,
            let pod = Self.dig(deployment, "spec", "template", "spec") as? [String: Any],
            let containerList = pod["containers"] as? [[String: Any]]
        else { throw TestSetupError("\(yamlFile) has no Deployment with a pod template") }
        let security = pod["securityContext"] as? [String: Any] ?? [:]
        // The image's USER is not known here: the manifest must say whom the pod runs as.
        guard let user = security["runAsUser"] as? Int, let group = security["runAsGroup"] as? Int,
            let fsGroup = security["fsGroup"] as? Int
        else { throw TestSetupError("\(yamlFile): the pod's securityContext names no runAsUser/runAsGroup/fsGroup") }
        runAsUser = user
        runAsGroup = group
        self.fsGroup = fsGroup
        terminationGracePeriod = pod["terminationGracePeriodSeconds"] as? Int ?? 30
        var volumes: [String: Volume] = [:]
        for volume in pod["volumes"] as? [[String: Any]] ?? [] {
            guard let name = volume["name"] as? String else { continue }
            if volume["emptyDir"] != nil {
                volumes[name] = .emptyDir
            } else if let map = Self.dig(volume, "configMap", "name") as? String {
                volumes[name] = .configMap(map)
            } else {
                throw TestSetupError("volume \(name): only emptyDir and configMap are simulated")
            }
        }
        self.volumes = volumes
        self.configMaps = configMaps
        self.secretKeys = secretKeys
        containers = try containerList.map { try Self.container($0) }
    }

    private static func container(_ raw: [String: Any]) throws -> Container {
        func probe(_ key: String) -> Probe? {
            guard let get = dig(raw, key, "httpGet") as? [String: Any], let path = get["path"] as? String,
                let port = get["port"] as? Int
            else { return nil }
            return Probe(path: path, port: port)
        }
        var env: [(String, String)] = []
        for entry in raw["env"] as? [[String: Any]] ?? [] {
            guard let name = entry["name"] as? String, let value = entry["value"] as? String else {
                throw TestSetupError("env \(entry): only literal values are simulated")
            }
            env.append((name, value))
        }
        let security = raw["securityContext"] as? [String: Any] ?? [:]
        let dropped = dig(security, "capabilities", "drop") as? [String] ?? []
        return Container(
            name: raw["name"] as? String ?? "",
            command: raw["command"] as? [String],
            args: raw["args"] as? [String] ?? [],
            env: env,
            envFromSecrets: (raw["envFrom"] as? [[String: Any]] ?? []).compactMap {
                dig($0, "secretRef", "name") as? String
            },
            ports: Dictionary(
                (raw["ports"] as? [[String: Any]] ?? []).compactMap { port in
                    (port["name"] as? String).flatMap { name in (port["containerPort"] as? Int).map { (name, $0) } }
                }, uniquingKeysWith: { first, _ in first }),
            readiness: probe("readinessProbe"),
            liveness: probe("livenessProbe"),
            mounts: (raw["volumeMounts"] as? [[String: Any]] ?? []).compactMap { mount in
                guard let volume = mount["name"] as? String, let path = mount["mountPath"] as? String else {
                    return nil
                }
                return Mount(volume: volume, path: path, readOnly: mount["readOnly"] as? Bool ?? false)
            },
            readOnlyRootFilesystem: security["readOnlyRootFilesystem"] as? Bool ?? false,
            dropsAllCapabilities: dropped.contains("ALL"),
            allowPrivilegeEscalation: security["allowPrivilegeEscalation"] as? Bool ?? true)
    }

    private static func dig(_ object: Any, _ keys: String...) -> Any? {
        var current: Any? = object
        for key in keys { current = (current as? [String: Any])?[key] }
        return current
    }
}
