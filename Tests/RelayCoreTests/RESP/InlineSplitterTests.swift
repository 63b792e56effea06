import Testing
@testable import RelayCore

private func split(_ line: String) -> [String]? {
    InlineSplitter.split(Array(line.utf8)).map { $0.map { String(decoding: $0, as: UTF8.self) } }
}


@Suite struct InlineSplitterTests {
    @Test func plainWordsSplitOnWhitespace() {
        #expect(split("SUBSCRIBE news weather") == ["SUBSCRIBE", "news", "weather"])
        #expect(split("  \t PING   \t") == ["PING"])
        #expect(split("") == [])
        #expect(split("   ") == [])
    }

    /// Leading blanks are skipped with `isspace` (also \v and \f), but inside a word only
    /// space, \t, \r, \n and NUL end it.
    @Test func verticalTabAndFormFeedOnlySeparateBeforeAWord() {
        #expect(split("\u{0B}\u{0C}a") == ["a"])
        #expect(split("a\u{0B}b") == ["a\u{0B}b"])
        #expect(split("a\rb\nc") == ["a", "b", "c"])
    }

    @Test func doubleQuotesWithEscapes() {
        #expect(split("PUBLISH \"my channel\" \"line\\nnext\"") == ["PUBLISH", "my channel", "line\nnext"])
        #expect(split("\"\\r\\t\\b\\a\\\\\\\"\\q\"") == ["\r\t\u{08}\u{07}\\\"q"])
        #expect(split("\"\"") == [""])
        #expect(split("a \"\" b") == ["a", "", "b"])
    }

    @Test func hexEscapesInDoubleQuotes() {
        #expect(InlineSplitter.split(Array("\"\\x00\\xff\\x41\\x4a\"".utf8)) == [[0x00, 0xFF, 0x41, 0x4A]])
        // Not two hex digits: the backslash escapes the 'x' alone.
        #expect(split("\"\\x4\"") == ["x4"])
        #expect(split("\"\\xg1\"") == ["xg1"])
    }

    @Test func singleQuotesAreLiteralExceptEscapedQuote() {
        #expect(split("'a b' 'c\\nd' 'it\\'s'") == ["a b", "c\\nd", "it's"])
        #expect(split("''") == [""])
    }

    @Test func quotesInsideAWordStartAQuotedPart() {
        #expect(split("foo\"bar baz\"") == ["foobar baz"])
        #expect(split("a'b c'") == ["ab c"])
    }

    @Test(arguments: ["\"abc", "'abc", "PUBLISH \"a", "'a\\'", "\"a\\\"", "\"\\"])
    func unbalancedQuotesGiveNil(_ line: String) {
        #expect(split(line) == nil, "\(line)")
    }

    @Test(arguments: ["\"a\"b", "'a'b", "\"a\"\"b\"", "set \"\"\"test-key\"\"\" test-value", "'it''s'"])
    func closingQuoteFollowedByNonSpaceGivesNil(_ line: String) {
        #expect(split(line) == nil, "\(line)")
    }

    @Test func closingQuoteFollowedBySpaceOrEnd() {
        #expect(split("\"a\" b") == ["a", "b"])
        #expect(split("\"a\"\tb") == ["a", "b"])
        #expect(split("'a'") == ["a"])
    }

    /// The line is a C string for sdssplitargs: a NUL ends it.
    @Test func nulEndsTheLine() {
        #expect(InlineSplitter.split([0x61, 0x20, 0x62, 0x00, 0x20, 0x63]) == [[0x61], [0x62]])
        #expect(InlineSplitter.split([0x22, 0x61, 0x00, 0x22]) == nil)
    }

    @Test func highBytesAreOrdinary() {
        #expect(InlineSplitter.split([0xE9, 0x20, 0xFF, 0xA0]) == [[0xE9], [0xFF, 0xA0]])
    }

    /// 150 lines drawn at random over a quote/escape-heavy alphabet, each split by Redis 7.0.15's
    /// `sdssplitargs` compiled from src/sds.c: `line-hex ERR` or `line-hex argc arg-hex…`.
    @Test func differentialVectorsFromRedis() {
        var checked = 0
        for line in Self.redisVectors.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 2 else { continue }
            let expected: [[UInt8]]? = f[1] == "ERR" ? nil : f.dropFirst(2).map(hex)
            if let expected { #expect(expected.count == Int(f[1])) }
            #expect(InlineSplitter.split(hex(f[0])) == expected, "line \(f[0])")
            checked += 1
        }
        #expect(checked == 150)
    }

    static let redisVectors = """
    090922205c0b3009 ERR
    09093430200d3046726161 2 3430 3046726161
    09096209460d460de9 4 62 46 46 e9
    09096e7267780d092267 ERR
    090b09610d46e90c0c0d 2 61 46e90c0c
    090b0961e92034310de9 3 61e9 3431 e9
    090b22 ERR
    090b316130720d62e962e9 2 31613072 62e962e9
    090c5c307831e9720d610d20 2 5c307831e972 61
    090d0de920e96227270ce90978 4 e9 e962 e9 78
    090d27 ERR
    090d4622466e466e0d620d46 ERR
    0922203127720d5c ERR
    092267090d206227 ERR
    09227246460be9345c0c0d ERR
    092730 ERR
    092731 ERR
    0927340c34e90c340b2262 ERR
    09276ee96e3078 ERR
    09310c30623078097862616e62 2 310c30623078 7862616e62
    0931725c20e9 2 31725c e9
    09340d670c310d346e31 3 34 670c31 346e31
    0946270d6234 ERR
    095c0d3062095c20 3 5c 3062 5c
    0961466231340d78725c31e90d 2 6146623134 78725c31e9
    09616161e9096e6e 2 616161e9 6e6e
    0967310920e90b6e7234e9 2 6731 e90b6e7234e9
    09675c340b610d27 ERR
    0967620c312009312262 ERR
    096e090ce9726e344672 2 6e e9726e344672
    096e5c6e200b206e200b0d 2 6e5c6e 6e
    09726278094630610d46 3 726278 463061 46
    09726e782046300c78340d095c 3 726e78 46300c7834 5c
    0972e90d783431616e0c 2 72e9 783431616e0c
    09780b720d78310b6761 2 780b72 78310b6761
    09786146e96e722734312267 ERR
    09786e090c72780d27720909 ERR
    09e909460961 3 e9 46 61
    09e9340d30 2 e934 30
    09e978782009720d340d6e 4 e97878 72 34 6e
    0b0b27466e72460d460972 ERR
    0b0c625c6261723134300d30 2 625c626172313430 30
    0b0d220d6727614620 ERR
    0b0d782730 ERR
    0b22460d30095c6e7861 ERR
    0b27300c ERR
    0b345c62312034e90972 3 345c6231 34e9 72
    0b4609e95ce90d6120096e 4 46 e95ce9 61 6e
    0b620b0946720de9624634226e ERR
    0b670d780b72200b 2 67 780b72
    0b720d0b460c5c67670c312061 3 72 460c5c67670c31 61
    0b78300d5c0d 2 7830 5c
    0b785c090b5c727262e930 2 785c 5c727262e930
    0b78e9620d46e9e934 2 78e962 46e9e934
    0c0c31e90d0be9340b0c0d6e6e 3 31e9 e9340b0c 6e6e
    0c2034092762 ERR
    0c222722096720 2 27 67
    0c3009096e0d095c0978 4 30 6e 5c 78
    0c300b20e90d62 3 300b e9 62
    0c3031670946e9 2 303167 46e9
    0c306720460b6772e93046e9 2 3067 460b6772e93046e9
    0c5c61676272620c096767 2 5c61676272620c 6767
    0c67096e7867 2 67 6e7867
    0c67204634626e0d72727220 3 67 4634626e 727272
    0c6e300b09723431090d62 3 6e300b 723431 62
    0ce90c310946676e 2 e90c31 46676e
    0ce95c627867720b622061 2 e95c627867720b62 61
    0ce96e460d340934 3 e96e46 34 34
    0d0c273462 ERR
    0d200c780d0d672078e9 3 78 67 78e9
    0d2220220d315c62 2 20 315c62
    0d7278317831224667206e ERR
    0de90b0d0c72200d27310de9 ERR
    0de9300b0d67206e 3 e9300b 67 6e
    0de9345c670d09e9 2 e9345c67 e9
    2022225c720d0be9 ERR
    2030090c67e978202227340c ERR
    20780c2046 2 780c 46
    20780d0d340c460b0c0b097261 3 78 340c460b0c0b 7261
    220c46670d0972090c72 ERR
    2220786130625c ERR
    22316e782261676230090c7272 ERR
    22672209670d4662 3 67 67 4662
    226e220c7234 2 6e 7234
    27460d0c20 ERR
    27462031 ERR
    2746206ee978466761 ERR
    275c3472e92778 ERR
    276222222062 ERR
    300be90d62616e6709e9 3 300be9 62616e67 e9
    30315c09346746 2 30315c 346746
    306e5c272030277231 ERR
    307220307262627862 2 3072 307262627862
    310b22613034 ERR
    31200d46 2 31 46
    31225c220c343422200b0b2046 2 31220c3434 46
    313009206e31 2 3130 6e31
    317272316762223167670b ERR
    31e96e0de90d7231 3 31e96e e9 7231
    31e972610d2062625ce9 2 31e97261 62625ce9
    31e978613130202061 2 31e978613130 61
    340d300d0d09 2 34 30
    340d310946726e0d 3 34 31 46726e
    340d317862786e30 2 34 317862786e30
    340d46 2 34 46
    340d46315c6e3127270b720c20 3 34 46315c6e31 720c
    34200c31346e627809 2 34 31346e6278
    342022e9670d315c6e ERR
    34620c46780d78 2 34620c4678 78
    34720d7278306261 2 3472 7278306261
    3472343161096767 2 3472343161 6767
    34e95c096746310961e90b6146 3 34e95c 674631 61e90b6146
    460d315c0d2761e96e0d6146 ERR
    46273472093430466731 ERR
    46314662460d0b3046096134 3 4631466246 3046 6134
    4631625c220978096e46 ERR
    46676e3072205c5c6778096e0d 3 46676e3072 5c5c6778 6e
    5c0b617809460d4631466e7846 3 5c0b6178 46 4631466e7846
    5c61e9277861225c ERR
    5c6e62e9460d2222 2 5c6e62e946 -
    610b0909670b7862270c22e9 ERR
    610d31 2 61 31
    610d31720b30 2 61 31720b30
    610d34670ce9786e5c 2 61 34670ce9786e5c
    610d6e0c09346e46 3 61 6e0c 346e46
    61616e0b46206e6e67 2 61616e0b46 6e6e67
    616e200b5c670ce972 2 616e 5c670ce972
    620d093462780c 2 62 3462780c
    62270b6267270d300b310d 2 620b6267 300b31
    670c27780b0c ERR
    670c4678306722224672 ERR
    670c7222466e204678 ERR
    6e0972090b340d615c46 4 6e 72 34 615c46
    6e09e9e90c 2 6e e9e90c
    6e0b2209300930 ERR
    6e0c0de972 2 6e0c e972
    6e0c6127310b31270c46300931 3 6e0c61310b31 4630 31
    7231620de90c 2 723162 e90c
    78090c31e90d 2 78 31e9
    78090d46e9090c20780c5ce9 3 78 46e9 780c5ce9
    78092227346e6772220c 2 78 27346e6772
    7809310b5c46 2 78 310b5c46
    7809466234306e0c31307831 2 78 466234306e0c31307831
    78095c34 2 78 5c34
    780d675c 2 78 675c
    785c0d780c313172 2 785c 780c313172
    785c20610c31 2 785c 610c31
    786e20677872720b340c30 2 786e 677872720b340c30
    e9340d6e5c78 2 e934 6e5c78
    e9e96e0d0b5ce93134 2 e9e96e 5ce93134
    """
}
