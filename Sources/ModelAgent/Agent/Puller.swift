import Logging

/// One verified download outside the sidecar, as KServe's storage-initializer does in
/// an init container: fetch `uri` into `destination` completely, or leave it untouched.
package struct Puller: Sendable {
    let router: StorageRouter

    package init(router: StorageRouter) {
        self.router = router
    }

    package func pull(_ uri: String, into destination: String, logger: Logger) async throws -> FetchReport {
        let location = try StorageLocation.parse(uri)
        let target = FileSystem.absolute(destination)
        let created = !FileSystem.exists(target)
        try FileSystem.makeDirectories(target)
        // Staging inside the destination keeps it on the same filesystem (the destination
        // is often a mount point, so it cannot itself be renamed into place).
        let base = target + "/.model-agent-pull." + randomID()
        let staging = StagingDirectory(root: base + ".staging", scratch: base + ".scratch")
        try FileSystem.makeDirectory(staging.root)
        do {
            logger.info("Downloading model from \(location)", metadata: ["uri": "\(location)", "dest": "\(target)"])
            let report = try await router.fetch(location, into: staging, logger: logger)
            for name in try FileSystem.listDirectory(staging.root) {
                let destinationPath = target + "/" + name
                if FileSystem.kind(destinationPath) == .directory { try FileSystem.removeTree(destinationPath) }
                try FileSystem.rename(staging.root + "/" + name, to: destinationPath)
            }
            staging.discard()
            return report
        } catch {
            staging.discard()
            if created { try? FileSystem.removeTree(target) }
            throw error
        }
    }
}
