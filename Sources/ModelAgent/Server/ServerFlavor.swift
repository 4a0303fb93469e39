/// Which model server the agent talks to. Everything that differs between servers is
/// decided here: which health endpoint gates the first load, and how a staged artifact
/// is adapted before it becomes visible.
package enum ServerFlavor: String, Sendable, CaseIterable {
    case triton
    case mlserver
    case kserve
    case generic

    /// From the `name` of `GET /v2`.
    static func detect(serverName: String) -> ServerFlavor {
        let lower = serverName.lowercased()
        if lower.contains("triton") { return .triton }
        if lower.contains("mlserver") { return .mlserver }
        if lower.contains("kserve") { return .kserve }
        return .generic
    }

    /// Triton's ready endpoint stays 400 after any failed model load (strict readiness),
    /// which would hold every other model back; its live endpoint does not.
    var readinessPath: String {
        self == .triton ? "/v2/health/live" : "/v2/health/ready"
    }

    /// Makes the staged artifact loadable by this server under `name`.
    func prepare(_ staging: StagingDirectory, name: ModelName, spec: ModelSpec) throws {
        switch self {
        case .triton: try TritonLayout.prepare(staging.root, name: name)
        case .mlserver: try MLServerLayout.prepare(staging.root, name: name, framework: spec.framework)
        case .kserve, .generic: break
        }
    }
}
