import Foundation
import TestSupport
import Testing

/// What users read and apply: the Kubernetes examples validate, and the README documents
/// exactly the flags the binary has.
@Suite struct ExamplesTests {
    static let examples = TestPaths.repositoryRoot + "/examples/kubernetes"

    static func validate(_ directory: String) async throws -> (status: Int32, output: String) {
        try await runProcess(
            try TestPaths.venvTool("image", "python"), [TestPaths.fixtures + "/validate_manifests.py", directory])
    }

    @Test(
        "every manifest under examples/kubernetes validates: core kinds strictly, KServe kinds by the fields the agent relies on"
    )
    func manifestsValidate() async throws {
        let result = try await Self.validate(Self.examples)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("core objects valid for Kubernetes"), "\(result.output)")
    }

    @Test(
        "the validator refuses misspelt fields, bad names, excess memory, a wrong initializer, a whole ConfigMap, dangling references"
    )
    func validatorRefusesBrokenManifests() async throws {
        let temp = try TemporaryDirectory("model-agent-manifests")
        func copy(_ relative: String, _ edits: [(String, String)]) throws {
            var text = try String(contentsOfFile: Self.examples + "/" + relative, encoding: .utf8)
            for (old, new) in edits {
                try #require(text.contains(old), "\(relative) no longer contains \(old)")
                text = text.replacingOccurrences(of: old, with: new)
            }
            try write(text, to: temp.path + "/" + relative)
        }
        try copy(
            "standalone/mlserver-with-model-agent.yaml",
            [("terminationGracePeriodSeconds", "terminationGracePeriod")])
        try copy(
            "kserve/mlserver-multi-model.yaml",
            [("serviceAccountName: model-store-s3", "serviceAccountName: nobody"), ("runtime:", "runtme:")])
        try copy("kserve/triton-multi-model.yaml", [("- --model-control-mode=explicit", "- --log-verbose=1")])
        try copy(
            "kserve/trained-models-s3.yaml",
            [("memory: 256Mi", "memory: 1536Mi"), ("name: iris-v2", "name: Iris_V2")])
        try copy(
            "kserve/storage-initializer.yaml",
            [
                (#"command: ["model-agent", "pull"]"#, #"args: ["pull"]"#),
                ("- prefix: gs://", #"- regex: "https?://.+"\#n    - prefix: https://"#),
            ])
        try copy("kserve/patches/agent-image.yaml", [("data:\n", "kind: ConfigMap\ndata:\n")])
        let result = try await Self.validate(temp.path)
        #expect(result.status == 1, "\(result.output)")
        for finding in [
            "'terminationGracePeriod' was unexpected",
            "serviceAccountName 'nobody' is defined by no example",
            "Triton needs --model-control-mode=explicit",
            "the TrainedModels of sklearn-mms need more memory than its limit",
            "command must be [model-agent, pull]",
            "regex 'https?://.+' claims https://acct.blob.core.windows.net/c/m",
            "prefix 'https://' claims https://acct.blob.core.windows.net/c/m",
            "unknown field 'spec.predictor.model.runtme'",
            "metadata.name 'Iris_V2' is not a valid Kubernetes name",
            "holds `data.agent` only",
        ] {
            #expect(result.output.contains(finding), "missing \(finding) in:\n\(result.output)")
        }
    }

    /// The `--flag` tokens of a text, without `--help`.
    static func flags(in text: String) -> Set<String> {
        var found = Set<String>()
        for match in text.matches(of: /--[a-z][a-z0-9-]*[a-z0-9]/) where match.output != "--help" {
            found.insert(String(match.output))
        }
        return found
    }

    @Test(
        "every flag of model-agent --help (run and pull) is in the README's command-line section, and every flag there exists"
    )
    func readmeListsEveryFlag() throws {
        let agent = try TestPaths.agentBinary()
        var binaryFlags = Set<String>()
        for arguments in [["--help"], ["help", "run"], ["help", "pull"]] {
            binaryFlags.formUnion(Self.flags(in: try run(agent, arguments)))
        }
        #expect(binaryFlags.count > 30, "\(binaryFlags)")
        let readme = try String(contentsOfFile: TestPaths.repositoryRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.firstRange(of: "\n## Command line\n"))
        let rest = readme[start.upperBound...]
        let section = rest[..<(rest.firstRange(of: "\n## ")?.lowerBound ?? rest.endIndex)]
        // The section's table rows: their first cell names the flags.
        var documented = Set<String>()
        for line in section.split(separator: "\n") where line.hasPrefix("| `--") {
            documented.formUnion(Self.flags(in: String(line.split(separator: "|").first ?? "")))
        }
        #expect(
            binaryFlags.subtracting(documented).isEmpty,
            "in --help but not the README: \(binaryFlags.subtracting(documented).sorted())")
        #expect(
            documented.subtracting(binaryFlags).isEmpty,
            "in the README but not --help: \(documented.subtracting(binaryFlags).sorted())")
    }
}
