import Testing
@testable import RelayCore

@Suite struct ConnectionSecretsTests {
    private func password(_ text: String, bare: Bool = false) -> String? {
        ConnectionSecrets.password(in: text, bareCredentialIsPassword: bare)
    }

    @Test func urls() {
        #expect(password("postgresql://app:s3cret@[::1/db") == "s3cret")
        #expect(password("redis://u:p@ss@h:1/0") == "p@ss")
        #expect(password("postgresql://app@host/db") == nil)
        #expect(password("redis://secret@host", bare: true) == "secret")
        #expect(password("postgresql://app@host/db?password=pw&sslmode=require") == "pw")
        #expect(password("unix:///r.sock?db=1&password=x%26y") == "x%26y")
    }

    @Test func conninfo() {
        #expect(password("host=/tmp password=hunter2 dbname=x") == "hunter2")
        #expect(password("host=/tmp password = 'two words' dbname=x") == "two words")
        #expect(password("host=/tmp dbname=x") == nil)
    }

    @Test func maskingEveryOccurrence() {
        let message = #"end of string reached in URI: "postgresql://app:s3cret@[::1/db" (s3cret)"#
        #expect(ConnectionSecrets.masking("s3cret", in: message)
                == #"end of string reached in URI: "postgresql://app:***@[::1/db" (***)"#)
        #expect(ConnectionSecrets.masking(nil, in: "x") == "x")
        #expect(ConnectionSecrets.masking("", in: "x") == "x")
    }
}
