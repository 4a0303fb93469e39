/// Flags of KServe's agent binary that belong to its payload logger, batcher and probe
/// proxy. This agent only implements the model puller, so it refuses them loudly instead
/// of silently doing less than the pod spec asks.
enum KServeFlags {
    static let unsupported: [String] = [
        "--log-url", "--workers", "--source-uri", "--log-mode", "--log-store-path", "--log-store-format",
        "--log-marshaller-url", "--log-marshaller-port", "--log-batch-size", "--log-batch-interval",
        "--inference-service", "--namespace", "--endpoint", "--component", "--metadata-headers",
        "--metadata-annotations", "--logger-ca-cert-file", "--logger-tls-skip-verify", "--enable-batcher",
        "--max-batchsize", "--max-latency", "--probe-period",
    ]

    static func rejection(for arguments: [String]) -> String? {
        for argument in arguments {
            if argument == "--" { return nil }
            let flag = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            if unsupported.contains(flag) {
                return
                    "\(flag) is a flag of KServe's payload logger / request batcher, which model-agent does not implement; "
                    + "remove it (model-agent runs the model puller only: --enable-puller --config-dir --model-dir --component-port)"
            }
        }
        return nil
    }
}
