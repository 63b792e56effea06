// swift-tools-version:6.0
import PackageDescription

/// Release builds of the hot-path modules: whole-module specialization across the module boundary
/// (the hub is generic over the connection type) and no dynamic exclusivity checks, which cost
/// ~8% of fan-out CPU in profiles. Debug builds and tests keep every check.
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "pubsub-relay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pubsub-relay", targets: ["pubsub-relay"]),
        .executable(name: "relay-bench", targets: ["relay-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // C libraries, wrapped as Debian ships them: hiredis for the Redis backplane, libpq for
        // the Postgres bridge. CLibpq does not link libpq: the relay dlopens it only when
        // DATABASE_URL is set (its dependency tree costs ~5 MB of RSS); the bench and the tests
        // link it.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CLibpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // glibc's <malloc.h> (mallopt, malloc_trim), which the Glibc module does not export.
        .systemLibrary(name: "CGlibcMalloc"),
        // Pure logic, no I/O: RESP codec, glob matcher, subscription registry, commands, config.
        .target(
            name: "RelayCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: hotPathSettings
        ),
        // The I/O edge: the NIO server on the Unix socket, fan-out, lifecycle.
        .target(
            name: "Relay",
            dependencies: [
                "RelayCore",
                "CHiredis",
                "CLibpq",
                "CGlibcMalloc",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: hotPathSettings
        ),
        .executableTarget(
            name: "pubsub-relay",
            dependencies: [
                "Relay",
                "RelayCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "relay-bench",
            dependencies: [
                "CLibpq",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: [.linkedLibrary("pq")]
        ),
        .testTarget(
            name: "RelayCoreTests",
            dependencies: [
                "RelayCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "RelayTests",
            dependencies: [
                "CHiredis",
                "CLibpq",
            ],
            linkerSettings: [.linkedLibrary("pq")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
