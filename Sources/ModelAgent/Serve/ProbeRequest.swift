import NIOHTTP1

/// Requests on the proxied port that the agent answers itself, on any path, with knative's
/// rules (`knative.dev/pkg/network/handlers/drain.go`), so they never reach the model server.
enum ProbeRequest: Equatable {
    /// A kubelet probe (`User-Agent: kube-probe/…` or a `K-Kubelet-Probe` header), the
    /// activator's, or any other `K-Network-Probe` (KServe's injected readiness probe sends
    /// `K-Network-Probe: queue`): answered with the pod's readiness.
    case health
    /// knative's network probe (`K-Network-Probe: probe`): 200 echoing `K-Network-Hash`, or
    /// 400 when the hash is missing.
    case network(hash: String?)

    static func classify(_ headers: HTTPHeaders) -> ProbeRequest? {
        let agent = headers["user-agent"].first ?? ""
        if agent.hasPrefix("kube-probe/") || agent.hasPrefix("Knative-Activator-Probe")
            || headers["k-kubelet-probe"].contains(where: { !$0.isEmpty })
        {
            return .health
        }
        guard let probe = headers["k-network-probe"].first(where: { !$0.isEmpty }) else { return nil }
        if probe == "probe" {
            return .network(hash: headers["k-network-hash"].first(where: { !$0.isEmpty }))
        }
        return .health
    }
}
