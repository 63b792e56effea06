import Testing
@testable import RelayCore

@Suite struct SQLQuotingTests {
    @Test func identifiersAreAlwaysQuotedWithQuotesDoubled() {
        #expect(SQLQuoting.identifier("orders") == "\"orders\"")
        #expect(SQLQuoting.identifier("Order Items") == "\"Order Items\"")
        #expect(SQLQuoting.identifier("a\"b") == "\"a\"\"b\"")
        #expect(SQLQuoting.identifier("\"") == "\"\"\"\"")
        #expect(SQLQuoting.identifier("select") == "\"select\"")
        #expect(SQLQuoting.qualified("My Schema", "odd.table") == "\"My Schema\".\"odd.table\"")
    }

    @Test func literalsDoubleSingleQuotes() {
        #expect(SQLQuoting.literal("orders") == "'orders'")
        #expect(SQLQuoting.literal("it's") == "'it''s'")
        #expect(SQLQuoting.literal("") == "''")
        #expect(SQLQuoting.literal("\"x\"") == "'\"x\"'")
    }

    /// `E'…'` reads the same with standard_conforming_strings on or off.
    @Test func literalsWithABackslashUseTheEscapeForm() {
        #expect(SQLQuoting.literal("a\\b") == "E'a\\\\b'")
        #expect(SQLQuoting.literal("it's\\") == "E'it''s\\\\'")
    }

    @Test func dollarQuotingPicksATagAbsentFromTheBody() {
        #expect(SQLQuoting.dollarQuoted(" x ") == "$pubsub_relay$ x $pubsub_relay$")
        #expect(SQLQuoting.dollarQuoted("'$pubsub_relay$'") == "$pubsub_relay_1$'$pubsub_relay$'$pubsub_relay_1$")
        #expect(SQLQuoting.dollarQuoted("$pubsub_relay$ $pubsub_relay_1$")
            == "$pubsub_relay_2$$pubsub_relay$ $pubsub_relay_1$$pubsub_relay_2$")
        // `$` then a combining accent is one Character for Swift, but PostgreSQL's lexer reads bytes.
        #expect(SQLQuoting.dollarQuoted("x$pubsub_relay$\u{301}") == "$pubsub_relay_1$x$pubsub_relay$\u{301}$pubsub_relay_1$")
    }

    @Test func prefixEndsOnACharacterBoundary() {
        #expect(SQLQuoting.prefix("abc", maxBytes: 2) == "ab")
        #expect(SQLQuoting.prefix("abc", maxBytes: 5) == "abc")
        #expect(SQLQuoting.prefix("aé", maxBytes: 2) == "a")     // é is 2 bytes
        #expect(SQLQuoting.prefix("a😀", maxBytes: 4) == "a")    // 😀 is 4 bytes
        #expect(SQLQuoting.prefix("a😀", maxBytes: 5) == "a😀")
    }

    /// The published FNV-1a 32-bit test vectors.
    @Test func fnv1aMatchesTheReferenceVectors() {
        #expect(SQLQuoting.fnv1aHex("".utf8) == "811c9dc5")
        #expect(SQLQuoting.fnv1aHex("a".utf8) == "e40c292c")
        #expect(SQLQuoting.fnv1aHex("foobar".utf8) == "bf9cf968")
    }
}
