/// The SQL that makes PostgreSQL NOTIFY a table's row changes as JSON on a channel: a trigger
/// function and a row trigger, in one transaction that can be applied again. It is what
/// `pubsub-relay sql trigger` prints.
///
/// The document is `{"op","schema","table","row"[,"old"]}`; when it would reach NOTIFY's payload
/// limit the trigger sends `{"op","schema","table","key","truncated":true}` instead, so a large
/// row never fails the writer's transaction.
public struct TriggerSQL: Equatable, Sendable {
    /// A row change the trigger fires on.
    public enum Event: String, CaseIterable, Sendable {
        case insert, update, delete

        var keyword: String {
            switch self {
            case .insert: "INSERT"
            case .update: "UPDATE"
            case .delete: "DELETE"
            }
        }
    }

    /// NOTIFY refuses a payload of this many bytes or more (`NOTIFY_PAYLOAD_MAX_LENGTH`,
    /// BLCKSZ - NAMEDATALEN - 128 with the default 8 KiB pages).
    public static let payloadLimit = 8000

    public let schema: String
    public let table: String
    /// Sent as a string to `pg_notify`, so its case and spaces are kept exactly.
    public let channel: String
    /// Unique, in the order insert, update, delete.
    public let events: [Event]
    /// The columns sent in `row` (and `old`), in this order; nil sends the whole row.
    public let columns: [String]?
    /// Adds `old` (the row before the change) to UPDATE documents.
    public let includeOld: Bool

    /// Takes names as they are in the catalog (already unquoted); rejects what would not make
    /// a working trigger.
    public init(schema: String, table: String, channel: String, events: some Sequence<Event> = Event.allCases,
                columns: [String]? = nil, includeOld: Bool = false) throws(TriggerSQLError) {
        for (option, name) in [("--table", schema), ("--table", table)] {
            if name.isEmpty { throw TriggerSQLError(option, "a schema or table name is empty") }
            if name.utf8.count > SQLQuoting.maxNameBytes {
                throw TriggerSQLError(option, "name '\(name)' is \(name.utf8.count) bytes; PostgreSQL names are at most \(SQLQuoting.maxNameBytes) bytes")
            }
        }
        try Self.validateChannel(channel)
        let chosen = Set(events)
        let events = Event.allCases.filter(chosen.contains)
        if events.isEmpty {
            throw TriggerSQLError("--events", "is empty; expected a comma-separated list of insert, update, delete")
        }
        if let columns {
            if columns.isEmpty {
                throw TriggerSQLError("--columns", "is empty; list the columns to send, or leave --columns out to send the whole row")
            }
            var seen: Set<String> = []
            for column in columns {
                if column.isEmpty { throw TriggerSQLError("--columns", "a column name is empty") }
                if column.utf8.count > SQLQuoting.maxNameBytes {
                    throw TriggerSQLError("--columns", "name '\(column)' is \(column.utf8.count) bytes; PostgreSQL names are at most \(SQLQuoting.maxNameBytes) bytes")
                }
                if !seen.insert(column).inserted {
                    throw TriggerSQLError("--columns", "column '\(column)' is listed twice")
                }
            }
        }
        if includeOld && !events.contains(.update) {
            throw TriggerSQLError("--include-old", "adds the old row to UPDATE documents, but --events has no update; add update or leave --include-old out")
        }
        self.schema = schema
        self.table = table
        self.channel = channel
        self.events = events
        self.columns = columns
        self.includeOld = includeOld
    }

    /// From the command line's text: `--table` as `SCHEMA.TABLE` or `TABLE` (schema `public`),
    /// `--events` and `--columns` comma-separated. Names follow SQL's rules: plain ones fold to
    /// lower case, double-quoted ones are exact.
    public static func parse(table: String, channel: String, events: String = "insert,update,delete",
                             columns: String? = nil, includeOld: Bool = false) throws(TriggerSQLError) -> TriggerSQL {
        let (schema, name) = try PostgresName.parseQualified(table, option: "--table")
        var columnNames: [String]? = nil
        if let columns {
            columnNames = try PostgresName.parseList(columns, option: "--columns")
        }
        return try TriggerSQL(schema: schema, table: name, channel: channel, events: try parseEvents(events),
                              columns: columnNames, includeOld: includeOld)
    }

    static func parseEvents(_ text: String) throws(TriggerSQLError) -> [Event] {
        let expected = "expected a comma-separated list of insert, update, delete"
        if text.trimmingCharacters().isEmpty {
            throw TriggerSQLError("--events", "is empty; \(expected)")
        }
        var events: [Event] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let word = item.trimmingCharacters()
            guard let event = Event(rawValue: String(PostgresName.foldedToLowerCase(word))) else {
                throw TriggerSQLError("--events", word.isEmpty ? "'\(text)' has an empty item; \(expected)" : "'\(word)' is not an event; \(expected)")
            }
            events.append(event)
        }
        return events
    }

    /// `pg_notify` refuses an empty channel or one of 64 bytes or more; the relay's
    /// `RELAY_PG_CHANNELS` is comma-separated and trims spaces, so it could not name a channel
    /// with a comma or with spaces at its ends.
    static func validateChannel(_ channel: String) throws(TriggerSQLError) {
        if channel.isEmpty {
            throw TriggerSQLError("--channel", "is empty; give the PostgreSQL channel the relay listens on (one of RELAY_PG_CHANNELS)")
        }
        if channel.utf8.count > SQLQuoting.maxNameBytes {
            throw TriggerSQLError("--channel", "'\(channel)' is \(channel.utf8.count) bytes; PostgreSQL channel names must be under 64 bytes")
        }
        if channel.unicodeScalars.contains(",") {
            throw TriggerSQLError("--channel", "'\(channel)' contains a comma; RELAY_PG_CHANNELS is comma-separated and could not name it")
        }
        if let first = channel.unicodeScalars.first, let last = channel.unicodeScalars.last,
           first == " " || first == "\t" || last == " " || last == "\t" {
            throw TriggerSQLError("--channel", "'\(channel)' starts or ends with a space; RELAY_PG_CHANNELS trims spaces and could not name it")
        }
    }

    // MARK: Names

    /// The trigger function, in the table's schema: `pubsub_relay_<table>_<channel>_<hash>`.
    /// The hash of table and channel keeps two pairs apart that would read the same
    /// (`a_b` + `c` and `a` + `b_c`), and the name is cut to fit in 63 bytes.
    public var functionName: String {
        let hash = SQLQuoting.fnv1aHex(Array(table.utf8) + [0] + Array(channel.utf8))
        let base = SQLQuoting.prefix("pubsub_relay_\(table)_\(channel)", maxBytes: SQLQuoting.maxNameBytes - 9)
        return "\(base)_\(hash)"
    }

    /// The trigger: `pubsub_relay_<channel>`, one per table and channel (trigger names are per
    /// table); a name over 63 bytes is cut and ends with a hash of the channel.
    public var triggerName: String {
        let name = "pubsub_relay_\(channel)"
        if name.utf8.count <= SQLQuoting.maxNameBytes { return name }
        return SQLQuoting.prefix(name, maxBytes: SQLQuoting.maxNameBytes - 9) + "_" + SQLQuoting.fnv1aHex(channel.utf8)
    }

    /// `INSERT OR UPDATE OR DELETE`.
    public var eventsClause: String {
        events.map(\.keyword).joined(separator: " OR ")
    }

    // MARK: SQL

    /// The whole script: `BEGIN;` … `COMMIT;`.
    public func render() -> String {
        let target = SQLQuoting.qualified(schema, table)
        let function = SQLQuoting.qualified(schema, functionName)
        let trigger = SQLQuoting.identifier(triggerName)
        var sql = """
        -- Generated by pubsub-relay sql trigger: NOTIFY this table's row changes as JSON.
        -- Applying it again replaces the function and the trigger.
        BEGIN;


        """
        if let columns {
            sql += columnCheck(columns, target: target) + "\n"
        }
        sql += """
        CREATE OR REPLACE FUNCTION \(function)()
        RETURNS trigger
        LANGUAGE plpgsql
        AS \(SQLQuoting.dollarQuoted(functionBody));

        DROP TRIGGER IF EXISTS \(trigger) ON \(target);
        CREATE TRIGGER \(trigger)
          AFTER \(eventsClause) ON \(target)
          FOR EACH ROW EXECUTE FUNCTION \(function)();

        COMMIT;

        """
        return sql
    }

    /// A column the trigger names but the table lacks would fail every write at run time; this
    /// block fails the script instead, before anything is changed.
    private func columnCheck(_ columns: [String], target: String) -> String {
        let names = columns.map(SQLQuoting.literal).joined(separator: ", ")
        let body = """

        DECLARE
          missing text;
        BEGIN
          SELECT pg_catalog.string_agg(pg_catalog.quote_ident(wanted.col), ', ' ORDER BY wanted.ord) INTO missing
          FROM pg_catalog.unnest(ARRAY[\(names)]::text[]) WITH ORDINALITY AS wanted(col, ord)
          WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                            WHERE a.attrelid = \(SQLQuoting.literal(target))::pg_catalog.regclass
                              AND a.attname = wanted.col AND a.attnum > 0 AND NOT a.attisdropped);
          IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'pubsub-relay sql trigger: table % has no column %', \(SQLQuoting.literal(target)), missing
              USING HINT = 'Check --columns: plain names are folded to lower case, double-quoted ones are exact.';
          END IF;
        END

        """
        return "-- Fails here, not in the writers' transactions, if a column in --columns does not exist.\nDO \(SQLQuoting.dollarQuoted(body));\n"
    }

    /// The row as JSON: the whole record, or the chosen columns in their order (through a
    /// subquery, which keeps their names and types and has no argument limit).
    private func rowJSON(_ record: String) -> String {
        guard let columns else { return "pg_catalog.to_json(\(record))" }
        let fields = columns.map { "\(record).\(SQLQuoting.identifier($0)) AS \(SQLQuoting.identifier($0))" }
        return "(SELECT pg_catalog.to_json(picked.*) FROM (SELECT \(fields.joined(separator: ", "))) AS picked)"
    }

    private func document(row: String, old: String? = nil) -> String {
        var fields = "'op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,\n      'row', \(row)"
        if let old { fields += ",\n      'old', \(old)" }
        return "pg_catalog.json_build_object(\(fields))::text"
    }

    private var functionBody: String {
        var branches = """
          IF TG_OP = 'DELETE' THEN
            doc := \(document(row: rowJSON("OLD")));

        """
        if includeOld {
            branches += """
              ELSIF TG_OP = 'UPDATE' THEN
                doc := \(document(row: rowJSON("NEW"), old: rowJSON("OLD")));

            """
        }
        branches += """
          ELSE
            doc := \(document(row: rowJSON("NEW")));
          END IF;
        """
        return """

        DECLARE
          doc text;
          full_row jsonb;
        BEGIN
        \(branches)
          -- NOTIFY refuses a payload of \(Self.payloadLimit) bytes or more, which would fail the writer's
          -- transaction: send the row's primary key instead, flagged "truncated".
          IF pg_catalog.octet_length(doc) >= \(Self.payloadLimit) THEN
            IF TG_OP = 'DELETE' THEN
              full_row := pg_catalog.to_jsonb(OLD);
            ELSE
              full_row := pg_catalog.to_jsonb(NEW);
            END IF;
            doc := pg_catalog.json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
              'key', (SELECT COALESCE(pg_catalog.json_object_agg(a.attname, full_row -> a.attname::text ORDER BY k.ord), '{}'::json)
                      FROM pg_catalog.pg_index AS i
                      CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                      WHERE i.indrelid = TG_RELID AND i.indisprimary),
              'truncated', true)::text;
            -- A key too long to send (a huge text key) is sent as null, still flagged.
            IF pg_catalog.octet_length(doc) >= \(Self.payloadLimit) THEN
              doc := pg_catalog.json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                'key', NULL, 'truncated', true)::text;
            END IF;
          END IF;
          PERFORM pg_catalog.pg_notify(\(SQLQuoting.literal(channel)), doc);
          RETURN NULL;
        END

        """
    }
}
