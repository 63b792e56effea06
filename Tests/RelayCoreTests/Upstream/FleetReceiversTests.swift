import NIOCore
import Testing
@testable import RelayCore

/// The fleet channel's bookkeeping without a machine: what a relay tells, and what another makes
/// of it.
@Suite struct FleetReceiversTests {
    private func key(_ kind: SubscriptionKind, _ name: String) -> FleetReceivers.Key {
        FleetReceivers.Key(kind: kind, name: buffer(name))
    }

    @Test func onlyChangesOfToldCountsAreSent() throws {
        var r1 = FleetReceivers(namespace: "ns", relayID: "r1")
        var counts: [FleetReceivers.Key: Int] = [key(.channel, "solo"): 1, key(.channel, "room"): 3]
        r1.changed(.channel, buffer("solo"))
        r1.changed(.channel, buffer("room"))
        let delta = r1.takeDelta { counts[$0] ?? 0 }
        #expect(delta.count == 1, "one client of `solo` is what Redis counts already: not told")
        counts[key(.channel, "room")] = 1
        r1.changed(.channel, buffer("room"))
        var r2 = FleetReceivers(namespace: "ns", relayID: "r2")
        #expect(try r2.received(delta[0], now: 1) == .none)
        #expect(r2.remoteExtra(for: buffer("room")) == 2)
        for message in r1.takeDelta(count: { counts[$0] ?? 0 }) { _ = try r2.received(message, now: 2) }
        #expect(r2.remoteExtra(for: buffer("room")) == 0 && r2.knownRelays == 0)
        #expect(r1.takeDelta { counts[$0] ?? 0 }.isEmpty, "nothing changed since")
    }

    @Test func aLongStateGoesOutInPartsAndReplacesTheOldOne() throws {
        var r1 = FleetReceivers(namespace: "ns", relayID: "r1")
        let n = FleetReceivers.entriesPerMessage + 100
        let state = r1.takeState((0..<n).map { (key(.channel, "c\($0)"), 2) } + [(key(.pattern, "c1*"), 4)])
        #expect(state.count == 2)
        var r2 = FleetReceivers(namespace: "ns", relayID: "r2")
        for message in state { #expect(try r2.received(message, now: 1) == .none) }
        // c10 has 2 clients on r1 (extra 1) and matches c1* with 4 (extra 3).
        #expect(r2.remoteExtra(for: buffer("c10")) == 4)
        #expect(r2.remoteExtra(for: buffer("c\(n - 1)")) == 1)
        // A new state replaces everything r1 told before.
        for message in r1.takeState([(key(.channel, "c0"), 5)]) { _ = try r2.received(message, now: 2) }
        #expect(r2.remoteExtra(for: buffer("c0")) == 4 && r2.remoteExtra(for: buffer("c10")) == 0)
    }

    @Test func malformedMessagesAreRefused() {
        var r2 = FleetReceivers(namespace: "ns", relayID: "r2")
        for bad in ["*3\r\n$7\r\nfleet/2\r\n$5\r\ndelta\r\n$2\r\nr1\r\n",       // another version
                    "*4\r\n$7\r\nfleet/1\r\n$5\r\ndelta\r\n$2\r\nr1\r\n$1\r\nc\r\n", // a partial entry
                    "not resp at all",
                    "*3\r\n$7\r\nfleet/1\r\n$4\r\nwhat\r\n$2\r\nr1\r\n"] {         // an unknown type
            #expect(throws: FleetReceivers.Malformed.self) { try r2.received(buffer(bad), now: 0) }
        }
    }
}
