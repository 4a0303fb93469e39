import ArgumentParser
import Logging
import ModelAgent

extension LogFormat: ExpressibleByArgument {}

enum LoggingSetup {
    static func bootstrap(format: LogFormat, level: Logger.Level) -> Logger {
        let output = LogOutput(fd: 1)
        LoggingSystem.bootstrap { label in
            AgentLogHandler(label: label, format: format, level: level, output: output)
        }
        return Logger(label: "model-agent")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
