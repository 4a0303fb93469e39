/// The requests that make the memory cache load a model on standby: inference calls. Other
/// model paths (readiness, metadata) go to the server as they are and answer for what it
/// holds now, so that a monitor polling every model does not load and evict them in turn.
enum InferenceRoute {
    /// V2 `/v2/models/<name>[/versions/<v>]/infer` (and the generate extension), V1
    /// `/v1/models/<name>:predict` or `:explain`.
    static func isInference(path uri: String) -> Bool {
        let path = uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(uri[..<$0]) } ?? uri
        if path.hasPrefix("/v2/models/") {
            let last = path.split(separator: "/", omittingEmptySubsequences: true).last ?? ""
            return last == "infer" || last == "generate" || last == "generate_stream"
        }
        if path.hasPrefix("/v1/models/") { return path.hasSuffix(":predict") || path.hasSuffix(":explain") }
        return false
    }

    /// The gRPC calls that infer (their model is read from the request message).
    static let grpcPaths: Set<String> = ["/inference.GRPCInferenceService/ModelInfer"]

    /// Calls that load or unload models in the server (V2's repository extension, over HTTP
    /// or gRPC). With the memory cache the agent alone decides what the server holds: a
    /// client loading models through the proxied port would overcommit it unseen.
    static func changesRepository(path uri: String) -> Bool {
        let path = uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(uri[..<$0]) } ?? uri
        return path.hasPrefix("/v2/repository/models/")
            || path == "/inference.GRPCInferenceService/RepositoryModelLoad"
            || path == "/inference.GRPCInferenceService/RepositoryModelUnload"
    }

    static let repositoryRefusal =
        "{\"error\":\"the model-agent manages which models the server holds; loading and unloading through it is refused\"}\n"
}
