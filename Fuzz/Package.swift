// swift-tools-version:6.0
import PackageDescription

/// The fuzz targets (README "Fuzzing"), kept out of the main package so that its `swift build`
/// and `swift test` never see sanitizer flags. `Sources/RelayCore` is a symlink to the main
/// package's sources: the main package exports no library product, and compiling RelayCore here
/// lets `scripts/fuzz` instrument it for coverage along with the harnesses.
let package = Package(
    name: "pubsub-relay-fuzz",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibFuzzer"),
        .target(
            name: "RelayCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "fuzz-request-parser",
            dependencies: ["CLibFuzzer", "RelayCore", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(name: "fuzz-inline-splitter", dependencies: ["CLibFuzzer", "RelayCore"]),
        .executableTarget(name: "fuzz-glob", dependencies: ["CLibFuzzer", "RelayCore"]),
    ],
    swiftLanguageModes: [.v6]
)
