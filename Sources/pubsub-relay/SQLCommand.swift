import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import RelayCore

/// Exit status for options that cannot make working SQL (sysexits EX_USAGE, as ArgumentParser's
/// own validation errors).
let exitUsage: Int32 = 64

/// `pubsub-relay sql …`: SQL to apply to PostgreSQL, printed on stdout.
struct SQL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sql",
        abstract: "Print SQL to apply to PostgreSQL.",
        subcommands: [Trigger.self]
    )
}

extension SQL {
    /// `pubsub-relay sql trigger`: prints a `TriggerSQL`.
    struct Trigger: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a trigger that NOTIFYs a table's row changes as JSON.",
            discussion: """
            Apply the output with psql, e.g.
              pubsub-relay sql trigger --table public.orders --channel orders | psql "$DATABASE_URL"
            Each row change sends {"op","schema","table","row"} (and "old" on UPDATE with \
            --include-old) to pg_notify. A document of 8000 bytes or more, which NOTIFY refuses, \
            is replaced by {"op","schema","table","key":{primary key},"truncated":true}, so the \
            writer's transaction never fails because of it. Applying the output again replaces \
            the function and the trigger.
            """
        )

        @Option(help: ArgumentHelp(
            "The table, SCHEMA.TABLE or TABLE (schema public).",
            discussion: "Names follow SQL: plain ones fold to lower case, double-quoted ones are exact, e.g. '\"My Schema\".\"odd.table\"'.",
            valueName: "schema.table"))
        var table: String

        @Option(help: ArgumentHelp("The channel to NOTIFY, exactly (case kept); under 64 bytes.", valueName: "channel"))
        var channel: String

        @Option(help: ArgumentHelp("The row changes that notify: a comma-separated list of insert, update, delete.", valueName: "events"))
        var events: String = "insert,update,delete"

        @Option(help: ArgumentHelp("Send only these columns in \"row\" (and \"old\"), comma-separated; default: the whole row.", valueName: "a,b"))
        var columns: String?

        @Flag(help: "Add \"old\", the row before the change, to UPDATE documents.")
        var includeOld = false

        func run() throws {
            let trigger: TriggerSQL
            do {
                trigger = try TriggerSQL.parse(table: table, channel: channel, events: events,
                                               columns: columns, includeOld: includeOld)
            } catch {
                printError("pubsub-relay sql trigger: \(error.description)")
                Glibc.exit(exitUsage)
            }
            print(trigger.render(), terminator: "")
        }
    }
}
