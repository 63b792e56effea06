import Testing
@testable import RelayCore

private func pairs(_ text: String) throws(ConfigError) -> [String] {
    try EnvFile.parse(text).map { "\($0.key)=\($0.value)" }
}

private func envError(_ text: String, path: String = "env file") -> ConfigError? {
    do {
        _ = try EnvFile.parse(text, path: path)
        return nil
    } catch {
        return error
    }
}

@Suite struct EnvFileTests {
    @Test func assignmentsInFileOrder() throws {
        #expect(try pairs("RELAY_SOCKET=/run/r.sock\nRELAY_LOG_LEVEL=debug\nA=1") == [
            "RELAY_SOCKET=/run/r.sock", "RELAY_LOG_LEVEL=debug", "A=1",
        ])
    }

    @Test func commentsAndBlankLinesAreSkipped() throws {
        let text = """
        # the relay's settings
        ; another comment style

           # indented comment
        \t
        A=1
        """
        #expect(try pairs(text) == ["A=1"])
    }

    /// A `#` after a value is part of the value, as in systemd (there are no inline comments).
    @Test func hashInsideAValueIsKept() throws {
        #expect(try pairs("URL=redis://h/0#frag") == ["URL=redis://h/0#frag"])
    }

    @Test func valuesMayContainEqualsSigns() throws {
        #expect(try pairs("DATABASE_URL=host=db port=5432 sslmode=require")
            == ["DATABASE_URL=host=db port=5432 sslmode=require"])
    }

    @Test func whitespaceAroundKeyAndUnquotedValueIsTrimmed() throws {
        #expect(try pairs("  A =  spaced value \t") == ["A=spaced value"])
        #expect(try pairs("EMPTY=") == ["EMPTY="])
    }

    @Test func doubleQuotes() throws {
        #expect(try pairs("A=\"  keep spaces  \"") == ["A=  keep spaces  "])
        #expect(try pairs("A=\"say \\\"hi\\\"\"") == ["A=say \"hi\""])
        #expect(try pairs("A=\"tab\\there\\nnext\"") == ["A=tab\there\nnext"])
        #expect(try pairs("A=\"back\\\\slash\"") == ["A=back\\slash"])
        #expect(try pairs("A=\"\"") == ["A="])
    }

    @Test func singleQuotesAreLiteral() throws {
        #expect(try pairs("A='no \\n escapes'") == ["A=no \\n escapes"])
        #expect(try pairs("A='\"double\" inside'") == ["A=\"double\" inside"])
        #expect(try pairs("A=''") == ["A="])
    }

    @Test func trailingBackslashContinuesTheLine() throws {
        #expect(try pairs("RELAY_PG_CHANNELS=orders,\\\nusers,\\\naudit\nB=2") == ["RELAY_PG_CHANNELS=orders,users,audit", "B=2"])
        #expect(try pairs("A=one \\\n two") == ["A=one  two"])
        // A doubled backslash is an escaped backslash, not a continuation.
        #expect(try pairs("A=x\\\\\nB=y") == ["A=x\\\\", "B=y"])
        // A continuation on the last line ends with the file.
        #expect(try pairs("A=x\\") == ["A=x"])
    }

    @Test func continuedCommentSwallowsTheNextLine() throws {
        #expect(try pairs("# comment \\\nHIDDEN=1\nA=2") == ["A=2"])
    }

    @Test func lineWithoutEqualsIsAnError() {
        let error = envError("A=1\n\njust some text\n", path: "/etc/pubsub-relay.env")
        #expect(error?.variable == "/etc/pubsub-relay.env")
        #expect(error?.message.contains("line 3") == true, "\(error?.message ?? "no error")")
        #expect(error?.message.contains("KEY=VALUE") == true)
    }

    /// Line numbers are those of the file, also after continued lines.
    @Test func lineNumbersCountPhysicalLines() {
        let error = envError("A=1 \\\n2 \\\n3\nbad line")
        #expect(error?.message.contains("line 4") == true, "\(error?.message ?? "no error")")
    }

    @Test(arguments: ["1A=x", "A B=x", "=x", "A-B=x", "export A=1", "A.B=1"])
    func invalidVariableNames(_ line: String) {
        let error = envError(line)
        #expect(error != nil, "\(line)")
        #expect(error?.message.contains("invalid variable name") == true)
    }

    @Test(arguments: ["A=\"abc", "A='abc", "A=\"", "A=\"abc' ", "A='abc\""])
    func unterminatedQuotes(_ line: String) {
        let error = envError(line)
        #expect(error?.message.contains("unterminated") == true, "\(line): \(error?.message ?? "no error")")
    }

    @Test func repeatedKeysAreAllReturnedInOrder() throws {
        #expect(try pairs("A=1\nA=2") == ["A=1", "A=2"])
    }

    @Test func emptyFile() throws {
        #expect(try pairs("") == [])
        #expect(try pairs("\n\n") == [])
    }

    /// Env files written on Windows (or by some editors) end lines with CR LF; the CR belongs to
    /// the line ending, not to the value.
    @Test func crlfLineEndings() throws {
        #expect(try pairs("A=1\r\nB=two\r\n") == ["A=1", "B=two"])
        #expect(try pairs("# c\r\nA=\"q\"\r\n") == ["A=q"])
    }
}
