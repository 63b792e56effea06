import CHiredis
import CLibpq
import Testing

/// The system-library wrappers build, link and work against Debian's hiredis and libpq.
@Suite struct LinkedLibrariesTests {
    @Test func hiredisIsDebiansAndItsReaderParsesAReply() throws {
        #expect(HIREDIS_MAJOR == 0 && HIREDIS_MINOR == 14)
        let reader = try #require(redisReaderCreate())
        defer { redisReaderFree(reader) }
        let bytes: [CChar] = Array("*2\r\n$7\r\nmessage\r\n:42\r\n".utf8CString.dropLast())
        #expect(redisReaderFeed(reader, bytes, bytes.count) == REDIS_OK)
        var raw: UnsafeMutableRawPointer?
        #expect(redisReaderGetReply(reader, &raw) == REDIS_OK)
        let reply = try #require(raw?.assumingMemoryBound(to: redisReply.self))
        defer { freeReplyObject(raw) }
        #expect(reply.pointee.type == REDIS_REPLY_ARRAY)
        #expect(reply.pointee.elements == 2)
        #expect(reply.pointee.element[1]!.pointee.integer == 42)
    }

    @Test func libpqIsVersion15AndRejectsABadConninfo() {
        #expect(PQlibVersion() / 10000 == 15)
        var error: UnsafeMutablePointer<CChar>?
        let options = PQconninfoParse("host=/tmp port=notanumber= =", &error)
        #expect(options == nil)
        #expect(error != nil)
        PQfreemem(error)
    }
}
