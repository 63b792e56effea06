import Testing
@testable import RelayCore

@Suite struct CounterDefinitionTests {
    private let table = RelayCounterTable.all

    @Test func infoNamesAreUnique() {
        let names = table.map(\.info)
        let repeated = Dictionary(grouping: names, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(repeated == [])
    }

    @Test func seriesAreUnique() {
        let series = table.map(\.series)
        let repeated = Dictionary(grouping: series, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        #expect(repeated == [])
    }

    @Test func metricNamesAreCountersInTheRelaysNamespace() throws {
        let pattern = try Regex("^pubsub_relay_[a-z_]+_total$")
        let bad = table.map(\.metric).filter { $0.wholeMatch(of: pattern) == nil }
        #expect(bad == [])
    }

    /// Prometheus has one HELP per metric: the series of one metric must agree on it (and on
    /// their label names).
    @Test func seriesOfOneMetricShareHelpAndLabelNames() {
        for (metric, rows) in Dictionary(grouping: table, by: \.metric) {
            #expect(Set(rows.map(\.help)).count == 1, "\(metric): \(rows.map(\.help))")
            #expect(Set(rows.map { $0.labels.map(\.name) }).count == 1, "\(metric)")
            #expect(rows.allSatisfy { !$0.help.isEmpty }, "\(metric) has no HELP")
        }
    }

    @Test func everyProtocolErrorReasonHasASeries() {
        let reasons = table.filter { $0.metric == "pubsub_relay_protocol_errors_total" }.flatMap { $0.labels.map(\.value) }
        #expect(Set(reasons) == Set(ProtocolError.allReasons))
    }

    @Test func infoLinesReadEachCounterAndSkipWhatIsNotConfigured() {
        var stats = RelayStats.Counts()
        stats.deliveries = 7
        stats.protocolErrors = ["expected_dollar": 2, "inline_too_big": 1]
        let local = RelayCounters(stats: stats)
        let statsLines = RelayCounterTable.infoLines(.stats, local)
        #expect(statsLines.contains("messages_delivered:7"))
        #expect(statsLines.contains("protocol_errors:3"))
        // Only the reasons that happened, in name order (as INFO has always listed them).
        #expect(statsLines.filter { $0.hasPrefix("protocol_errors_") }
                == ["protocol_errors_expected_dollar:2", "protocol_errors_inline_too_big:1"])
        #expect(RelayCounterTable.infoLines(.redis, local) == [])
        #expect(RelayCounterTable.infoLines(.postgres, local) == [])

        let pg = PostgresBridgeCounters(received: 5, published: 0, deliveredLocally: 4, lostUpstream: 0, droppedAsStandby: 1,
                                        leaseChanges: 0, reconnects: 2, gaps: 1, gapSecondsTotal: 1.5)
        let bridged = RelayCounters(stats: stats, postgres: pg)
        let pgLines = RelayCounterTable.infoLines(.postgres, bridged)
        #expect(pgLines.contains("postgres_notifications_delivered_locally:4"))
        #expect(pgLines.contains("postgres_notifications_dropped_as_standby:1"))
        #expect(pgLines.contains("postgres_gap_seconds_total:1.500"))
        #expect(pgLines.count == table.filter { $0.section == .postgres }.count)
    }

    /// Every counter field of the Redis and Postgres copies has a row: a field set to a marker
    /// value must show up in exactly one INFO line.
    @Test func everyUpstreamCounterFieldIsRendered() {
        let redis = RedisLinkCounters(reconnects: 101, gaps: 102, gapSecondsTotal: 103, unconfirmedPublishes: 104,
                                      refusedSubscriptions: 105, replyLimitDisconnects: 106, masterSwitches: 107,
                                      heldPublishes: 108, malformedFleetMessages: 109, clusterRefreshes: 110,
                                      clusterRedirects: 111, clusterSlotMovesPushed: 112, clusterResubscriptions: 113)
        let pg = PostgresBridgeCounters(received: 201, published: 202, deliveredLocally: 203, lostUpstream: 204,
                                        droppedAsStandby: 205, leaseChanges: 206, reconnects: 207, gaps: 208, gapSecondsTotal: 209)
        let c = RelayCounters(stats: RelayStats.Counts(), redis: redis, postgres: pg)
        let values = (RelayCounterTable.infoLines(.redis, c) + RelayCounterTable.infoLines(.postgres, c))
            .map { String($0.split(separator: ":")[1]) }
        let expected = (101...113).map(String.init) + (201...209).map(String.init)
        #expect(values.map { $0.hasSuffix(".000") ? String($0.dropLast(4)) : $0 }.sorted() == expected.sorted())
    }

    @Test func everyStatsCounterFieldIsRendered() {
        var s = RelayStats.Counts()
        s.connectionsReceived = 1; s.commandsProcessed = 2; s.messagesPublished = 3; s.messagesFromRedis = 4
        s.messagesFromPostgres = 5; s.deliveries = 6; s.unknownCommands = 7; s.rejectedCommands = 8
        s.slowConsumerDisconnects = 9; s.queryBufferDisconnects = 10; s.droppedFrames = 11
        s.securityDisconnects = 12; s.acceptErrorsFDLimit = 13; s.acceptErrorsNoMemory = 14
        s.authFailures = 16
        s.protocolErrors = ["expected_dollar": 15]
        let values = RelayCounterTable.infoLines(.stats, RelayCounters(stats: s)).map { Int($0.split(separator: ":")[1])! }
        // 15 twice: the total (`protocol_errors`) and its one reason.
        #expect(values.sorted() == Array(1...15) + [15, 16])
    }
}
