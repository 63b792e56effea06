import CHiredis
import CLibpq

/// Versions of the C libraries the upstream links are built on, reported in INFO.
enum LinkedLibraries {
    static var hiredisVersion: String { "\(HIREDIS_MAJOR).\(HIREDIS_MINOR).\(HIREDIS_PATCH)" }
    static var libpqVersion: String { "\(PQlibVersion())" }
}
