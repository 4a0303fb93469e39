import ArgumentParser
import CBuildInfo
import ModelAgent

#if canImport(Glibc)
    import Glibc
#endif

@main
struct ModelAgentMain {
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let message = KServeFlags.rejection(for: arguments) {
            writeStandardError("model-agent: \(message)\n")
            exit(ExitStatus.usage)
        }
        await ModelAgentCommand.main(arguments)
    }
}

struct ModelAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-agent",
        abstract: "Keeps a KServe V2 model server holding exactly the models listed in models.json.",
        discussion: """
            Exit status: 0 after a clean shutdown (SIGTERM/SIGINT) or a successful pull; \
            1 when a pull or the agent fails at runtime; 2 when the agent cannot start \
            (directories, port); 64 for unusable arguments.
            """,
        version: versionDescription,
        subcommands: [RunCommand.self, PullCommand.self],
        defaultSubcommand: RunCommand.self)
}

/// What `--version` prints: the release and the commit it was built from
/// (`0.1.0 (commit 1a2b3c4d5e6f)`), so an image's binary can be traced to its source.
let versionDescription = "\(agentVersion) (commit \(String(cString: model_agent_git_commit())))"

enum ExitStatus {
    static let failure: Int32 = 1
    static let startup: Int32 = 2
    static let usage: Int32 = 64
}

func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
