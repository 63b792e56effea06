import Testing
@testable import RelayCore

private func qualified(_ text: String) throws(TriggerSQLError) -> [String] {
    let (schema, name) = try PostgresName.parseQualified(text, option: "--table")
    return [schema, name]
}

private func tableError(_ text: String) -> TriggerSQLError? {
    do {
        _ = try PostgresName.parseQualified(text, option: "--table")
        return nil
    } catch {
        return error
    }
}

private func listError(_ text: String) -> TriggerSQLError? {
    do {
        _ = try PostgresName.parseList(text, option: "--columns")
        return nil
    } catch {
        return error
    }
}

@Suite struct PostgresNameTests {
    // MARK: SCHEMA.TABLE

    @Test func anUnqualifiedNameIsInSchemaPublic() throws {
        #expect(try qualified("orders") == ["public", "orders"])
    }

    /// As in SQL: `Shop.Orders` is `shop.orders`.
    @Test func plainNamesFoldToLowerCase() throws {
        #expect(try qualified("Shop.Orders") == ["shop", "orders"])
        #expect(try qualified("_a1$.B_2") == ["_a1$", "b_2"])
    }

    /// Only ASCII letters fold, as PostgreSQL does in a UTF-8 database.
    @Test func nonASCIILettersArePlainAndKeepTheirCase() throws {
        #expect(try qualified("Café.ÉTÉ") == ["café", "ÉtÉ"])
    }

    @Test func quotedNamesAreExact() throws {
        #expect(try qualified("\"My Schema\".\"odd.table\"") == ["My Schema", "odd.table"])
        #expect(try qualified("\"Orders\"") == ["public", "Orders"])
        #expect(try qualified("\"a\"\"b\".\"x\"\"\"") == ["a\"b", "x\""])
        #expect(try qualified("\"select\".\"from\"") == ["select", "from"])
        #expect(try qualified("Mixed.\"Case\"") == ["mixed", "Case"])
    }

    @Test func spacesAroundNamesAndDotsAreIgnored() throws {
        #expect(try qualified("  shop . orders ") == ["shop", "orders"])
        #expect(try qualified(" \"a b\" .\t\"c\" ") == ["a b", "c"])
    }

    @Test func emptyInputIsRejected() {
        #expect(tableError("")?.description.hasPrefix("--table: is empty; expected SCHEMA.TABLE or TABLE") == true)
        #expect(tableError("  ")?.message.hasPrefix("is empty") == true)
    }

    @Test func emptyPartsAreRejected() {
        for text in ["a..b", ".a", "a.", "a. ", " . "] {
            #expect(tableError(text)?.message.hasPrefix("'\(text)' has an empty name; expected SCHEMA.TABLE") == true, "\(text)")
        }
        #expect(tableError("\"\".a")?.message.hasPrefix("'\"\".a' has an empty quoted name") == true)
    }

    @Test func moreThanTwoPartsAreRejected() {
        let error = tableError("db.shop.orders")
        #expect(error?.option == "--table")
        #expect(error?.message.hasPrefix("'db.shop.orders' has 3 dot-separated names; expected SCHEMA.TABLE or TABLE") == true)
        #expect(error?.message.contains("\"odd.table\"") == true)
    }

    @Test func anUnterminatedQuoteIsRejected() {
        #expect(tableError("\"abc")?.message.hasPrefix("'\"abc' has an unterminated double quote") == true)
        #expect(tableError("a.\"b\"\"")?.message.hasPrefix("'a.\"b\"\"' has an unterminated double quote") == true)
    }

    @Test func textAfterAQuotedNameIsRejected() {
        #expect(tableError("\"a\"b")?.message.hasPrefix("'\"a\"b' has 'b' after the quoted name \"a\"") == true)
        #expect(tableError("\"a\" \"b\"")?.message.hasPrefix("'\"a\" \"b\"' has '\"' after the quoted name \"a\"") == true)
    }

    /// A name SQL would need quotes for is refused with the quoted spelling to use instead.
    @Test func namesThatNeedQuotesAreRejectedWithAHint() {
        #expect(tableError("my-table")?.message
            == "'my-table' is not a plain name (letters, digits, _ and $, not starting with a digit or $); write it in double quotes as in SQL: \"my-table\"")
        #expect(tableError("shop.my table")?.message.hasPrefix("'my table' is not a plain name") == true)
        #expect(tableError("1orders")?.message.hasPrefix("'1orders' is not a plain name") == true)
        #expect(tableError("$x")?.message.hasPrefix("'$x' is not a plain name") == true)
        #expect(tableError("a\"b\"")?.message.hasPrefix("'a\"b\"' is not a plain name") == true)
    }

    /// PostgreSQL keeps 63 bytes of a name; a longer one cannot be the table meant.
    @Test func namesOver63BytesAreRejected() throws {
        let ok = String(repeating: "a", count: 63)
        #expect(try qualified(ok) == ["public", ok])
        #expect(tableError(ok + "a")?.message == "name '\(ok)a' is 64 bytes; PostgreSQL names are at most 63 bytes")
        // Bytes, not characters: 32 two-byte letters.
        #expect(tableError("\"" + String(repeating: "é", count: 32) + "\"")?.message.contains("is 64 bytes") == true)
    }

    // MARK: Lists

    @Test func listsAreCommaSeparatedNames() throws {
        #expect(try PostgresName.parseList("id, Name ,\"Mixed Case\",\"a,b\"", option: "--columns") == ["id", "name", "Mixed Case", "a,b"])
        #expect(try PostgresName.parseList("id", option: "--columns") == ["id"])
    }

    @Test func emptyListItemsAreRejected() {
        #expect(listError("")?.description.hasPrefix("--columns: is empty; expected a comma-separated list of column names") == true)
        #expect(listError("a,,b")?.message.hasPrefix("'a,,b' has an empty name") == true)
        #expect(listError("a,")?.message.hasPrefix("'a,' has an empty name") == true)
        #expect(listError(",a")?.message.hasPrefix("',a' has an empty name") == true)
    }
}
