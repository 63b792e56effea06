import Testing
@testable import RelayCore

private func triggerError(table: String = "orders", channel: String = "orders", events: String = "insert,update,delete",
                          columns: String? = nil, includeOld: Bool = false) -> TriggerSQLError? {
    do {
        _ = try TriggerSQL.parse(table: table, channel: channel, events: events, columns: columns, includeOld: includeOld)
        return nil
    } catch {
        return error
    }
}

/// The offset of `needle` in `text` in UTF-8 bytes, or nil.
private func offset(of needle: String, in text: String) -> Int? {
    let h = Array(text.utf8), n = Array(needle.utf8)
    guard n.count <= h.count else { return nil }
    for i in 0...(h.count - n.count) where h[i..<i + n.count].elementsEqual(n) { return i }
    return nil
}

private func occurrences(of needle: String, in text: String) -> Int {
    var count = 0
    var rest = Substring(text)
    while let r = rest.firstRange(of: needle) {
        count += 1
        rest = rest[r.upperBound...]
    }
    return count
}

@Suite struct TriggerSQLTests {
    // MARK: Options

    @Test func defaults() throws {
        let t = try TriggerSQL.parse(table: "orders", channel: "orders")
        #expect(t.schema == "public")
        #expect(t.table == "orders")
        #expect(t.channel == "orders")
        #expect(t.events == [.insert, .update, .delete])
        #expect(t.columns == nil)
        #expect(t.includeOld == false)
        #expect(t.eventsClause == "INSERT OR UPDATE OR DELETE")
    }

    /// Any order and case, spaces allowed; the clause is always in insert, update, delete order.
    @Test func eventsBecomeTheAfterClause() throws {
        #expect(try TriggerSQL.parse(table: "t", channel: "c", events: "Update, insert").eventsClause == "INSERT OR UPDATE")
        #expect(try TriggerSQL.parse(table: "t", channel: "c", events: "delete").eventsClause == "DELETE")
        #expect(try TriggerSQL.parse(table: "t", channel: "c", events: "DELETE,insert").eventsClause == "INSERT OR DELETE")
        #expect(try TriggerSQL.parse(table: "t", channel: "c", events: "insert,insert").events == [.insert])
    }

    @Test func badEventsAreRejected() {
        #expect(triggerError(events: "insert,truncate")?.description
            == "--events: 'truncate' is not an event; expected a comma-separated list of insert, update, delete")
        #expect(triggerError(events: "")?.description == "--events: is empty; expected a comma-separated list of insert, update, delete")
        #expect(triggerError(events: "insert,,update")?.message.hasPrefix("'insert,,update' has an empty item") == true)
        #expect(triggerError(events: "inserts")?.message.hasPrefix("'inserts' is not an event") == true)
    }

    @Test func theChannelIsKeptExactly() throws {
        let t = try TriggerSQL.parse(table: "t", channel: "Orders \"EU\" it's")
        #expect(t.channel == "Orders \"EU\" it's")
        #expect(t.render().contains("PERFORM pg_catalog.pg_notify('Orders \"EU\" it''s', doc);"))
    }

    /// pg_notify refuses 64 bytes or more (NAMEDATALEN); counted in bytes, not characters.
    @Test func channelsOf64BytesOrMoreAreRejected() throws {
        _ = try TriggerSQL.parse(table: "t", channel: String(repeating: "c", count: 63))
        _ = try TriggerSQL.parse(table: "t", channel: String(repeating: "ж", count: 31))     // 62 bytes
        #expect(triggerError(channel: String(repeating: "c", count: 64))?.description
            == "--channel: '\(String(repeating: "c", count: 64))' is 64 bytes; PostgreSQL channel names must be under 64 bytes")
        #expect(triggerError(channel: String(repeating: "ж", count: 32))?.message.contains("is 64 bytes") == true)
    }

    @Test func channelsTheRelayCouldNotListenOnAreRejected() {
        #expect(triggerError(channel: "")?.description.hasPrefix("--channel: is empty") == true)
        #expect(triggerError(channel: "a,b")?.message == "'a,b' contains a comma; RELAY_PG_CHANNELS is comma-separated and could not name it")
        #expect(triggerError(channel: " a")?.message.contains("starts or ends with a space") == true)
        #expect(triggerError(channel: "a\t")?.message.contains("starts or ends with a space") == true)
    }

    @Test func columnsAreParsedAndChecked() throws {
        let t = try TriggerSQL.parse(table: "t", channel: "c", columns: "id, Title,\"Body Text\"")
        #expect(t.columns == ["id", "title", "Body Text"])
        #expect(triggerError(columns: "")?.description.hasPrefix("--columns: is empty") == true)
        #expect(triggerError(columns: "a,,b")?.message.hasPrefix("'a,,b' has an empty name") == true)
        #expect(triggerError(columns: "id,ID")?.message == "column 'id' is listed twice")
        #expect(triggerError(columns: "a-b")?.option == "--columns")
    }

    @Test func includeOldNeedsUpdate() {
        #expect(triggerError(events: "insert,delete", includeOld: true)?.description
            == "--include-old: adds the old row to UPDATE documents, but --events has no update; add update or leave --include-old out")
        #expect(triggerError(events: "update", includeOld: true) == nil)
    }

    @Test func theInitializerValidatesCatalogNames() {
        #expect(throws: TriggerSQLError.self) { try TriggerSQL(schema: "", table: "t", channel: "c") }
        #expect(throws: TriggerSQLError.self) { try TriggerSQL(schema: "s", table: String(repeating: "t", count: 64), channel: "c") }
        #expect(throws: TriggerSQLError.self) { try TriggerSQL(schema: "s", table: "t", channel: "c", events: []) }
        #expect(throws: TriggerSQLError.self) { try TriggerSQL(schema: "s", table: "t", channel: "c", columns: []) }
        #expect(throws: TriggerSQLError.self) { try TriggerSQL(schema: "s", table: "t", channel: "c", columns: [""]) }
    }

    // MARK: Names

    @Test func functionNameIsTableChannelAndAStableHash() throws {
        let t = try TriggerSQL.parse(table: "orders", channel: "orders")
        let hash = SQLQuoting.fnv1aHex(Array("orders".utf8) + [0] + Array("orders".utf8))
        #expect(t.functionName == "pubsub_relay_orders_orders_\(hash)")
        #expect(try TriggerSQL.parse(table: "orders", channel: "orders").functionName == t.functionName)
        #expect(t.triggerName == "pubsub_relay_orders")
    }

    /// Without the hash, `a_b` + `c` and `a` + `b_c` would share one function in one schema and
    /// the second script would silently redirect the first trigger.
    @Test func functionNamesOfDifferentPairsDiffer() throws {
        let one = try TriggerSQL.parse(table: "a_b", channel: "c")
        let two = try TriggerSQL.parse(table: "a", channel: "b_c")
        #expect(one.functionName != two.functionName)
        #expect(one.functionName.hasPrefix("pubsub_relay_a_b_c_"))
        #expect(two.functionName.hasPrefix("pubsub_relay_a_b_c_"))
    }

    @Test func longNamesAreCutTo63BytesWithAHash() throws {
        let table = String(repeating: "t", count: 63)
        let channel = String(repeating: "c", count: 63)
        let t = try TriggerSQL.parse(table: table, channel: channel)
        #expect(t.functionName.utf8.count == 63)
        #expect(t.functionName.hasPrefix("pubsub_relay_ttttt"))
        #expect(t.functionName.hasSuffix("_" + SQLQuoting.fnv1aHex(Array(table.utf8) + [0] + Array(channel.utf8))))
        #expect(t.triggerName.utf8.count == 63)
        #expect(t.triggerName == SQLQuoting.prefix("pubsub_relay_" + channel, maxBytes: 54) + "_" + SQLQuoting.fnv1aHex(channel.utf8))

        // Channels that differ only past the cut still get different triggers.
        let other = try TriggerSQL.parse(table: table, channel: String(repeating: "c", count: 62) + "d")
        #expect(other.triggerName != t.triggerName)
        #expect(other.functionName != t.functionName)
    }

    /// A cut never splits a multibyte character (PostgreSQL would reject invalid UTF-8).
    @Test func cuttingKeepsWholeCharacters() throws {
        let t = try TriggerSQL.parse(table: "\"" + String(repeating: "ж", count: 31) + "\"", channel: String(repeating: "ж", count: 31))
        #expect(t.functionName.utf8.count <= 63)
        #expect(t.triggerName.utf8.count <= 63)
        #expect(t.functionName.hasPrefix("pubsub_relay_жжж"))
        #expect(t.functionName.unicodeScalars.allSatisfy { $0 == "ж" || $0.isASCII })
        #expect(try TriggerSQL.parse(table: "t", channel: String(repeating: "ж", count: 25)).triggerName.utf8.count == 63)
    }

    // MARK: SQL

    @Test func theScriptIsOneTransaction() throws {
        let sql = try TriggerSQL.parse(table: "orders", channel: "orders").render()
        let statements = sql.split(separator: "\n").filter { !$0.hasPrefix("--") }
        #expect(statements.first == "BEGIN;")
        #expect(statements.last == "COMMIT;")
        #expect(sql.hasSuffix("COMMIT;\n"))
        #expect(occurrences(of: "BEGIN;", in: sql) == 1)
    }

    @Test func theScriptReplacesFunctionAndTrigger() throws {
        let t = try TriggerSQL.parse(table: "Shop.Orders", channel: "orders", events: "insert,update")
        let sql = t.render()
        let function = "\"shop\".\"\(t.functionName)\""
        #expect(sql.contains("CREATE OR REPLACE FUNCTION \(function)()\nRETURNS trigger\nLANGUAGE plpgsql\nAS $pubsub_relay$\n"))
        #expect(sql.contains("DROP TRIGGER IF EXISTS \"pubsub_relay_orders\" ON \"shop\".\"orders\";\n"))
        #expect(sql.contains("""
        CREATE TRIGGER "pubsub_relay_orders"
          AFTER INSERT OR UPDATE ON "shop"."orders"
          FOR EACH ROW EXECUTE FUNCTION \(function)();
        """))
        #expect(sql.contains("  RETURN NULL;\nEND\n$pubsub_relay$;\n"))
        // Function, then drop, then create: a rerun replaces in place.
        let create = try #require(offset(of: "CREATE OR REPLACE FUNCTION", in: sql))
        let drop = try #require(offset(of: "DROP TRIGGER IF EXISTS", in: sql))
        let trigger = try #require(offset(of: "CREATE TRIGGER", in: sql))
        #expect(create < drop && drop < trigger)
    }

    @Test func theDocumentHasOpSchemaTableAndRow() throws {
        let sql = try TriggerSQL.parse(table: "orders", channel: "orders").render()
        #expect(sql.contains("'op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,\n      'row', pg_catalog.to_json(NEW))::text;"))
        #expect(sql.contains("'row', pg_catalog.to_json(OLD))::text;"))
        #expect(!sql.contains("'old'"))
        #expect(!sql.contains("ELSIF"))
        #expect(!sql.contains("DO $"))
    }

    @Test func includeOldAddsOldToUpdates() throws {
        let sql = try TriggerSQL.parse(table: "orders", channel: "orders", includeOld: true).render()
        #expect(sql.contains("""
          ELSIF TG_OP = 'UPDATE' THEN
            doc := pg_catalog.json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
              'row', pg_catalog.to_json(NEW),
              'old', pg_catalog.to_json(OLD))::text;
        """))
        #expect(occurrences(of: "'old'", in: sql) == 1)
    }

    @Test func columnsRestrictRowAndOldAndAreCheckedFirst() throws {
        let sql = try TriggerSQL.parse(table: "orders", channel: "orders", columns: "id,\"Total €\"", includeOld: true).render()
        let picked = "(SELECT pg_catalog.to_json(picked.*) FROM (SELECT NEW.\"id\" AS \"id\", NEW.\"Total €\" AS \"Total €\") AS picked)"
        #expect(sql.contains("'row', \(picked)"))
        #expect(sql.contains("'old', \(picked.replacingNEW())"))
        #expect(!sql.contains("to_json(NEW)"))
        #expect(sql.contains("ARRAY['id', 'Total €']::text[]"))
        #expect(sql.contains("a.attrelid = '\"public\".\"orders\"'::pg_catalog.regclass"))
        let check = try #require(offset(of: "DO $pubsub_relay$", in: sql))
        let function = try #require(offset(of: "CREATE OR REPLACE FUNCTION", in: sql))
        #expect(check < function)
    }

    /// The truncation path: key from the primary key at run time, `truncated`, never an error.
    @Test func oversizedDocumentsSendTheKey() throws {
        let sql = try TriggerSQL.parse(table: "orders", channel: "orders").render()
        #expect(occurrences(of: "IF pg_catalog.octet_length(doc) >= 8000 THEN", in: sql) == 2)
        #expect(sql.contains("WHERE i.indrelid = TG_RELID AND i.indisprimary"))
        #expect(sql.contains("'{}'::json"))
        #expect(sql.contains("'truncated', true)::text;"))
        #expect(sql.contains("'key', NULL, 'truncated', true)::text;"))
        // Only the final document is sent.
        #expect(occurrences(of: "pg_notify", in: sql) == 1)
    }

    @Test func oddNamesAreQuotedEverywhere() throws {
        let t = try TriggerSQL.parse(table: "\"My \"\"Schema\"\"\".\"odd.table; DROP\"", channel: "Ch\"an'nel",
                                     columns: "\"we\"\"ird\"")
        let sql = t.render()
        #expect(sql.contains("ON \"My \"\"Schema\"\"\".\"odd.table; DROP\";"))
        #expect(sql.contains("CREATE OR REPLACE FUNCTION \"My \"\"Schema\"\"\".\"pubsub_relay_odd.table; DROP_Ch\"\"an'nel_"))
        #expect(sql.contains("DROP TRIGGER IF EXISTS \"pubsub_relay_Ch\"\"an'nel\" ON"))
        #expect(sql.contains("pg_notify('Ch\"an''nel', doc)"))
        #expect(sql.contains("NEW.\"we\"\"ird\" AS \"we\"\"ird\""))
        #expect(sql.contains("ARRAY['we\"ird']::text[]"))
        #expect(sql.contains("'\"My \"\"Schema\"\"\".\"odd.table; DROP\"'::pg_catalog.regclass"))
    }

    /// A name holding the dollar-quote tag must not end the function body early.
    @Test func theDollarTagAvoidsNamesThatContainIt() throws {
        let sql = try TriggerSQL.parse(table: "t", channel: "x$pubsub_relay$y").render()
        #expect(sql.contains("AS $pubsub_relay_1$\n"))
        #expect(sql.contains("END\n$pubsub_relay_1$;\n"))
        #expect(sql.contains("pg_notify('x$pubsub_relay$y', doc)"))
    }

    @Test func aBackslashInTheChannelUsesAnEscapeLiteral() throws {
        let sql = try TriggerSQL.parse(table: "t", channel: "a\\b").render()
        #expect(sql.contains("pg_notify(E'a\\\\b', doc)"))
    }

    @Test func renderingIsDeterministic() throws {
        let a = try TriggerSQL.parse(table: "s.t", channel: "c", columns: "a,b", includeOld: true)
        let b = try TriggerSQL.parse(table: "s.t", channel: "c", columns: "a,b", includeOld: true)
        #expect(a == b)
        #expect(a.render() == b.render())
    }
}

private extension String {
    func replacingNEW() -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: "NEW.") {
            out += rest[..<r.lowerBound] + "OLD."
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
