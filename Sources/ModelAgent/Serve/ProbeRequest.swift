import NIOCore
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

    struct Answer {
        var status: HTTPResponseStatus
        var text: String
        var extra: [(String, String)] = []
    }

    static func classify(_ headers: HTTPHeaders) -> ProbeRequest? {
        classify { headers[$0] }
    }

    /// `values`: a header's values by lower-case name (HTTP/1.1 and HTTP/2 requests alike).
    static func classify(_ values: (String) -> [String]) -> ProbeRequest? {
        let agent = values("user-agent").first ?? ""
        if agent.hasPrefix("kube-probe/") || agent.hasPrefix("Knative-Activator-Probe")
            || values("k-kubelet-probe").contains(where: { !$0.isEmpty })
        {
            return .health
        }
        guard let probe = values("k-network-probe").first(where: { !$0.isEmpty }) else { return nil }
        if probe == "probe" {
            return .network(hash: values("k-network-hash").first(where: { !$0.isEmpty }))
        }
        return .health
    }

    /// Works out the answer, on `eventLoop`: health checks wait for the user container's
    /// check (shared with the other checks in flight), and everything says 503 while the
    /// port drains.
    func answer(_ shared: ProxyContext, on eventLoop: any EventLoop, _ done: @escaping (Answer) -> Void) {
        let shuttingDown = Answer(status: .serviceUnavailable, text: "shutting down\n")
        switch self {
        case .network(let hash):
            guard !shared.drain.isDraining else { return done(shuttingDown) }
            guard let hash else {
                return done(
                    Answer(
                        status: .badRequest, text: "a probe request must contain a non-empty K-Network-Hash header\n"))
            }
            done(Answer(status: .ok, text: "", extra: [("K-Network-Hash", hash)]))
        case .health:
            guard !shared.drain.isDraining else { return done(shuttingDown) }
            let promise = eventLoop.makePromise(of: Bool.self)
            shared.health.check(promise)
            promise.futureResult.assumeIsolated().whenComplete { result in
                let ready = (try? result.get()) ?? false
                if shared.drain.isDraining {
                    done(shuttingDown)
                } else if ready {
                    done(Answer(status: .ok, text: "queue"))
                } else {
                    done(Answer(status: .serviceUnavailable, text: "not ready\n"))
                }
            }
        }
    }
}
