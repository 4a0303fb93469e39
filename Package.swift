// swift-tools-version:6.0
import Foundation
import PackageDescription

// The commit `model-agent --version` reports, from the environment (scripts/image sets
// it). Only characters of a commit id or a `-dirty` suffix pass, since it becomes a C
// string literal.
let gitCommit = ProcessInfo.processInfo.environment["MODEL_AGENT_GIT_COMMIT"].flatMap { value in
    value.isEmpty || value.count > 64 || !value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
        ? nil : value
}

// How the release binary is linked on Linux, for a smaller mapped footprint (measured in
// bench/RESULTS.md, "Idle footprint"): lld instead of gold; none of its own symbols
// exported (the static Swift runtime's link arguments export every one, ~1 MiB of tables
// the loader reads at start; this flag wins because it comes after them, which
// scripts/image checks; nothing here looks its own symbols up with dlsym); relative
// relocations packed (DT_RELR, so glibc 2.36 or later, as bookworm has), 1.5 MiB of them
// otherwise read at every start.
let releaseLinkerFlags = [
    "-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
]

let package = Package(
    name: "model-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "model-agent", targets: ["model-agent"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CISAL",
            pkgConfig: "libisal",
            providers: [.apt(["libisal-dev"])]
        ),
        .target(
            name: "CBuildInfo",
            cSettings: gitCommit.map { [.define("MODEL_AGENT_GIT_COMMIT", to: "\"\($0)\"")] } ?? []
        ),
        .target(
            name: "ModelAgent",
            dependencies: [
                "CCurl",
                "COpenSSL",
                "CZlib",
                "CISAL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "model-agent",
            dependencies: [
                "ModelAgent",
                "CBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: [.unsafeFlags(releaseLinkerFlags, .when(platforms: [.linux], configuration: .release))]
        ),
        // Fuzz targets (scripts/fuzz): libFuzzer's driver and the harness that runs
        // ModelAgent's FuzzEntryPoints; a plain build compiles the harness as a stub.
        .target(name: "CFuzzShim", path: "Fuzz/CFuzzShim"),
        .executableTarget(
            name: "model-agent-fuzz",
            dependencies: ["ModelAgent", "CFuzzShim", .product(name: "Logging", package: "swift-log")],
            path: "Fuzz/Harness"
        ),
        .target(
            name: "TestSupport",
            dependencies: ["ModelAgent"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "ModelAgentTests",
            dependencies: [
                "ModelAgent", "TestSupport", .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ModelAgent", "TestSupport", "model-agent"],
            resources: []
        ),
    ]
)
