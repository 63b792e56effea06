import NIOCore
import Testing
@testable import RelayCore

/// `ClusterTopology` from `CLUSTER SHARDS` and `CLUSTER SLOTS`, and what it answers.
///
/// The `Real` replies were captured from a Redis 7.0.15 cluster (three masters made by
/// `redis-cli --cluster create 127.0.0.1:30001 127.0.0.1:30002 127.0.0.1:30003`, then 30004 joined
/// with `CLUSTER MEET` and `CLUSTER REPLICATE` of 30001): the raw RESP2 bytes of each reply.
/// `node1.example` is `cluster-announce-hostname` of 30001; the node asked was set to
/// `cluster-preferred-endpoint-type hostname` or `unknown-endpoint` for those captures.
@Suite struct ClusterTopologyTests {
    typealias Node = ClusterTopology.Node

    enum Real {
        static let a = "ce3d8c00d76c67dca6e21144d0a0569505c09096" // 30001, slots 0-5460
        static let b = "4f40348f64d673677f35b410507b84fafb581c45" // 30002, slots 5461-10922
        static let c = "9b1a51b7a2a47ec51fcfb8c573addfed675cf02b" // 30003, slots 10923-16383
        static let r = "68f8bc398821e5547f1b073518fd6c1b800ad1d1" // 30004, replica of 30001

        static let shards = "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n$4\r\nport\r\n:30001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:350\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n$4\r\nport\r\n:30004\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:350\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n$4\r\nport\r\n:30003\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n$4\r\nport\r\n:30002\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        static let slots = "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:30004\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n*0\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:30002\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n*0\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:30003\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n*0\r\n"
        /// Asked of a node with `cluster-preferred-endpoint-type hostname`: `?` for nodes without one.
        static let shardsByHostname = "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n$4\r\nport\r\n:30003\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n$4\r\nport\r\n:30002\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*16\r\n$2\r\nid\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n$4\r\nport\r\n:30001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$13\r\nnode1.example\r\n$8\r\nhostname\r\n$13\r\nnode1.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:364\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n$4\r\nport\r\n:30004\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:364\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        static let slotsByHostname = "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$13\r\nnode1.example\r\n:30001\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n$1\r\n?\r\n:30004\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$1\r\n?\r\n:30002\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$1\r\n?\r\n:30003\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
        /// Asked of a node with `cluster-preferred-endpoint-type unknown-endpoint`: `""` / null.
        static let shardsUnknownEndpoint = "*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n$4\r\nport\r\n:30003\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n$4\r\nport\r\n:30002\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*16\r\n$2\r\nid\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n$4\r\nport\r\n:30001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$8\r\nhostname\r\n$13\r\nnode1.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:364\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*14\r\n$2\r\nid\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n$4\r\nport\r\n:30004\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:364\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
        static let slotsUnknownEndpoint = "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$-1\r\n:30001\r\n$40\r\nce3d8c00d76c67dca6e21144d0a0569505c09096\r\n*4\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nhostname\r\n$13\r\nnode1.example\r\n*4\r\n$-1\r\n:30004\r\n$40\r\n68f8bc398821e5547f1b073518fd6c1b800ad1d1\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$-1\r\n:30002\r\n$40\r\n4f40348f64d673677f35b410507b84fafb581c45\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$-1\r\n:30003\r\n$40\r\n9b1a51b7a2a47ec51fcfb8c573addfed675cf02b\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
    }

    // MARK: Building replies by hand

    static func bulk(_ s: String) -> UpstreamReply { .bulk(ByteBuffer(string: s)) }

    /// A RESP2 map: a flat array of keys and values.
    static func map(_ pairs: KeyValuePairs<String, UpstreamReply>) -> UpstreamReply {
        .array(pairs.flatMap { [bulk($0.key), $0.value] })
    }

    static func node(_ id: String, port: Int? = 6379, tlsPort: Int? = nil, ip: String = "10.0.0.1",
                     endpoint: String? = nil, role: String = "master", health: String = "online") -> UpstreamReply {
        var items: [UpstreamReply] = [bulk("id"), bulk(id)]
        if let port { items += [bulk("port"), .integer(port)] }
        if let tlsPort { items += [bulk("tls-port"), .integer(tlsPort)] }
        items += [bulk("ip"), bulk(ip), bulk("endpoint"), bulk(endpoint ?? ip), bulk("role"), bulk(role),
                  bulk("replication-offset"), .integer(0), bulk("health"), bulk(health)]
        return .array(items)
    }

    static func shard(_ bounds: [Int], _ nodes: [UpstreamReply]) -> UpstreamReply {
        map(["slots": .array(bounds.map { .integer($0) }), "nodes": .array(nodes)])
    }

    private func shards(_ shards: UpstreamReply..., tls: Bool = false) throws -> ClusterTopology {
        try ClusterTopology(shardsReply: .array(shards), seedHost: "seed.example", tls: tls)
    }

    private func failure(_ reply: UpstreamReply, slots: Bool = false) -> ClusterTopologyError? {
        do {
            _ = slots ? try ClusterTopology(slotsReply: reply, seedHost: "seed")
                      : try ClusterTopology(shardsReply: reply, seedHost: "seed", tls: false)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Real replies

    @Test func shardsOfARealCluster() throws {
        let t = try ClusterTopology(shardsReply: upstreamReply(Real.shards), seedHost: "127.0.0.1", tls: false)
        #expect(t.nodes.map(\.id) == [Real.b, Real.r, Real.c, Real.a].sorted())
        #expect(t.masters.map(\.port) == [30002, 30003, 30001], "ordered by id")
        #expect(t.isComplete)
        #expect(t.unassignedSlots.isEmpty)
        #expect(t.master(forSlot: 0) == Node(id: Real.a, host: "127.0.0.1", port: 30001, role: .master, health: .online))
        #expect(t.master(forSlot: 5460)?.id == Real.a)
        #expect(t.master(forSlot: 5461)?.id == Real.b)
        #expect(t.master(forSlot: 16383)?.id == Real.c)
        #expect(t.master(forSlot: ClusterSlot.of("bar".utf8))?.port == 30001, "as -MOVED 5061 …:30001 said")
        #expect(t.slots(of: Real.a) == [0...5460])
        #expect(t.slots(of: Real.c) == [10923...16383])
        #expect(t.slots(of: Real.r) == [])
        #expect(t.slots(of: "nobody") == [])
        #expect(t.replicas(of: Real.a) == [Node(id: Real.r, host: "127.0.0.1", port: 30004, role: .replica, health: .online, masterID: Real.a)])
        #expect(t.replicas(of: Real.b) == [])
        #expect(t.node(id: Real.r)?.role == .replica)
    }

    @Test func slotsOfTheSameClusterRouteTheSame() throws {
        let bySlots = try ClusterTopology(slotsReply: upstreamReply(Real.slots), seedHost: "127.0.0.1")
        let byShards = try ClusterTopology(shardsReply: upstreamReply(Real.shards), seedHost: "127.0.0.1", tls: false)
        #expect(bySlots.changedSlots(from: byShards) == [])
        #expect(bySlots.nodes.map(\.address) == byShards.nodes.map(\.address))
        #expect(bySlots.nodes.allSatisfy { $0.health == nil }, "CLUSTER SLOTS says nothing of health")
        #expect(bySlots.replicas(of: Real.a).map(\.id) == [Real.r])
        #expect(bySlots != byShards, "health differs")
    }

    @Test func hostnameEndpointsAndTheIPWhenANodeHasNoHostname() throws {
        for t in [try ClusterTopology(shardsReply: upstreamReply(Real.shardsByHostname), seedHost: "seed", tls: false),
                  try ClusterTopology(slotsReply: upstreamReply(Real.slotsByHostname), seedHost: "seed")] {
            #expect(t.node(id: Real.a)?.host == "node1.example")
            // `?`: the node has no hostname; its IP still reaches it, the seed's host would not.
            #expect(t.node(id: Real.b)?.host == "127.0.0.1")
            #expect(t.node(id: Real.r)?.host == "127.0.0.1")
        }
    }

    @Test func unknownEndpointsAreReachedByTheSeedsHost() throws {
        for t in [try ClusterTopology(shardsReply: upstreamReply(Real.shardsUnknownEndpoint), seedHost: "lb.example", tls: false),
                  try ClusterTopology(slotsReply: upstreamReply(Real.slotsUnknownEndpoint), seedHost: "lb.example")] {
            #expect(t.nodes.map(\.host) == ["lb.example", "lb.example", "lb.example", "lb.example"])
            #expect(t.master(forSlot: 0)?.address == "lb.example:30001")
        }
    }

    @Test func replyOrderDoesNotMatter() throws {
        guard case .array(let shardList) = upstreamReply(Real.shards) else { Issue.record("not an array"); return }
        let forward = try ClusterTopology(shardsReply: .array(shardList), seedHost: "h", tls: false)
        let backward = try ClusterTopology(shardsReply: .array(shardList.reversed()), seedHost: "h", tls: false)
        #expect(forward == backward)
    }

    /// Whatever a leaf of a real reply is replaced with, the parser answers or throws.
    @Test func damagedRepliesNeverCrash() {
        for capture in [Real.shards, Real.slots, Real.slotsUnknownEndpoint] {
            let original = upstreamReply(capture)
            var leaves = 0
            func count(_ r: UpstreamReply) { if case .array(let a) = r { a.forEach(count) } else { leaves += 1 } }
            count(original)
            for target in 0..<leaves {
                for replacement: UpstreamReply in [.null, .integer(-1), .integer(99_999), Self.bulk(""), .array([]), .error(ByteBuffer(string: "ERR x"))] {
                    var seen = 0
                    func replace(_ r: UpstreamReply) -> UpstreamReply {
                        if case .array(let a) = r { return .array(a.map(replace)) }
                        defer { seen += 1 }
                        return seen == target ? replacement : r
                    }
                    let damaged = replace(original)
                    _ = try? ClusterTopology(shardsReply: damaged, seedHost: "h", tls: false)
                    _ = try? ClusterTopology(slotsReply: damaged, seedHost: "h")
                }
            }
        }
    }

    // MARK: Ports and TLS

    @Test func tlsPortWhenTLSIsWanted() throws {
        let both = Self.shard([0, 16383], [Self.node("n1", port: 6379, tlsPort: 6380)])
        #expect(try shards(both, tls: true).nodes[0].port == 6380)
        #expect(try shards(both, tls: false).nodes[0].port == 6379)
        #expect(try shards(both, tls: false).nodes[0].tlsPort == 6380)
        // tls-cluster with plaintext off: no "port".
        let tlsOnly = Self.shard([0, 16383], [Self.node("n1", port: nil, tlsPort: 6380)])
        #expect(try shards(tlsOnly, tls: true).nodes[0].port == 6380)
        #expect(try shards(tlsOnly, tls: false).nodes[0].port == 6380)
        let plainOnly = Self.shard([0, 16383], [Self.node("n1", port: 6379)])
        #expect(try shards(plainOnly, tls: true).nodes[0].port == 6379)
        #expect(failure(.array([Self.shard([0, 1], [Self.node("n1", port: nil)])]))?.code == .malformedReply)
    }

    @Test func ipv6Address() throws {
        let t = try shards(Self.shard([0, 16383], [Self.node("n1", port: 7000, ip: "::1")]))
        #expect(t.nodes[0].address == "[::1]:7000")
    }

    // MARK: Coverage

    @Test func partialCoverageAndMastersWithoutSlots() throws {
        let t = try shards(
            Self.shard([0, 99, 200, 299], [Self.node("m1"), Self.node("r1", role: "replica", health: "loading")]),
            Self.shard([], [Self.node("m2", ip: "10.0.0.2")]))
        #expect(!t.isComplete)
        #expect(t.unassignedSlots == [100...199, 300...16383])
        #expect(t.slots(of: "m1") == [0...99, 200...299])
        #expect(t.masters.map(\.id) == ["m1"], "m2 serves no slot")
        #expect(t.nodes.map(\.id) == ["m1", "m2", "r1"])
        #expect(t.node(id: "r1")?.health == .loading)
        #expect(t.master(forSlot: 150) == nil)
        #expect(t.master(forSlot: -1) == nil)
        #expect(t.master(forSlot: 16384) == nil)
        #expect(try shards().unassignedSlots == [0...16383])
    }

    @Test func failedHealth() throws {
        let t = try shards(Self.shard([0, 16383], [Self.node("m1", health: "fail")]))
        #expect(t.nodes[0].health == .failed)
    }

    // MARK: Malformed replies

    @Test func errorRepliesAndWrongShapes() {
        let unknown = failure(.error(ByteBuffer(string: "ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.")))
        #expect(unknown?.code == .errorReply)
        #expect(unknown?.message == "CLUSTER SHARDS reply: the node answered -ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.")
        #expect(failure(.error(ByteBuffer(string: "ERR This instance has cluster support disabled")), slots: true)?.code == .errorReply)
        #expect(failure(.integer(3))?.code == .malformedReply)
        #expect(failure(.array([.integer(1)]))?.message == "CLUSTER SHARDS reply: shard 1: got :1, expected a map (key, value, …)")
        #expect(failure(.array([Self.map(["nodes": .array([])])]))?.message == "CLUSTER SHARDS reply: shard 1: no 'slots' array; expected [start, end, …]")
        #expect(failure(.array([Self.map(["slots": .array([])])]))?.code == .malformedReply)
        #expect(failure(.array([.array([Self.bulk("slots")])]))?.code == .malformedReply, "odd map")
        #expect(failure(.null, slots: true)?.code == .malformedReply)
        #expect(failure(.array([.array([.integer(0), .integer(1)])]), slots: true)?.code == .malformedReply)
        #expect(failure(.array([.array([.integer(0), .integer(1), .array([Self.bulk("h")])])]), slots: true)?.code == .malformedReply)
    }

    @Test func missingOrBadNodeFields() {
        let noID = Self.map(["port": .integer(1), "ip": Self.bulk("h"), "role": Self.bulk("master")])
        #expect(failure(.array([Self.shard([0, 1], [noID])]))?.message == "CLUSTER SHARDS reply: shard 1, node 1: no 'id'")
        let badRole = Self.node("n1", role: "leader")
        #expect(failure(.array([Self.shard([0, 1], [badRole])]))?.message == "CLUSTER SHARDS reply: shard 1, node 1: node n1 has role 'leader', expected master or replica")
        let badPort = Self.map(["id": Self.bulk("n1"), "port": .integer(70000), "role": Self.bulk("master")])
        #expect(failure(.array([Self.shard([0, 1], [badPort])]))?.code == .malformedReply)
        let textID = Self.map(["id": .integer(5), "port": .integer(1), "role": Self.bulk("master")])
        #expect(failure(.array([Self.shard([0, 1], [textID])]))?.message == "CLUSTER SHARDS reply: shard 1, node 1: 'id' is :5, expected a string")
        #expect(failure(.array([Self.shard([0, 1], [Self.node("r", role: "replica")])]))?.message == "CLUSTER SHARDS reply: shard 1: serves slots but lists no master")
        #expect(failure(.array([Self.shard([0, 1], [Self.node("m1"), Self.node("m2")])]))?.code == .malformedReply)
    }

    @Test func slotRanges() {
        let outOfRange = failure(.array([Self.shard([0, 16384], [Self.node("m1")])]))
        #expect(outOfRange?.code == .slotOutOfRange)
        #expect(outOfRange?.message == "CLUSTER SHARDS reply: shard 1: slots 0-16384 are not a range within 0-16383")
        #expect(failure(.array([Self.shard([-1, 5], [Self.node("m1")])]))?.code == .slotOutOfRange)
        #expect(failure(.array([Self.shard([9, 5], [Self.node("m1")])]))?.code == .slotOutOfRange)
        #expect(failure(.array([Self.shard([0, 5, 7], [Self.node("m1")])]))?.code == .malformedReply)
        #expect(failure(.array([Self.shard([0, 5], [Self.node("m1")]), Self.shard([5, 9], [Self.node("m2")])]))
                == ClusterTopologyError(.overlappingSlots, "CLUSTER SHARDS reply: slot 5 is assigned to both m1 and m2"))
        #expect(failure(.array([Self.shard([0, 5], [Self.node("m1")]), Self.shard([6, 9], [Self.node("m1")])]))?.code == .overlappingSlots, "a node twice")
        let overlappingSlots = UpstreamReply.array([
            .array([.integer(0), .integer(10), .array([Self.bulk("h"), .integer(1), Self.bulk("a")])]),
            .array([.integer(10), .integer(20), .array([Self.bulk("h"), .integer(2), Self.bulk("b")])]),
        ])
        #expect(failure(overlappingSlots, slots: true)?.code == .overlappingSlots)
        let masterAndReplica = UpstreamReply.array([
            .array([.integer(0), .integer(10), .array([Self.bulk("h"), .integer(1), Self.bulk("a")]), .array([Self.bulk("h"), .integer(2), Self.bulk("b")])]),
            .array([.integer(11), .integer(20), .array([Self.bulk("h"), .integer(2), Self.bulk("b")])]),
        ])
        #expect(failure(masterAndReplica, slots: true)?.code == .malformedReply)
    }

    @Test func oldSlotsRepliesWithoutIDs() throws {
        let t = try ClusterTopology(slotsReply: .array([
            .array([.integer(0), .integer(16383), .array([Self.bulk("10.0.0.1"), .integer(7000)]), .array([Self.bulk("10.0.0.2"), .integer(7001)])]),
        ]), seedHost: "seed")
        #expect(t.master(forSlot: 9)?.id == "10.0.0.1:7000")
        #expect(t.replicas(of: "10.0.0.1:7000").map(\.address) == ["10.0.0.2:7001"])
        #expect(t.isComplete)
    }

    // MARK: What changed

    @Test func unchangedRoutingHasNoChanges() throws {
        let t = try ClusterTopology(shardsReply: upstreamReply(Real.shards), seedHost: "127.0.0.1", tls: false)
        #expect(t.changedSlots(from: t) == [])
        var loading = try shards(Self.shard([0, 16383], [Self.node("m1"), Self.node("r1", role: "replica", health: "loading")]))
        let online = try shards(Self.shard([0, 16383], [Self.node("m1"), Self.node("r1", role: "replica")]))
        #expect(loading != online)
        #expect(online.changedSlots(from: loading) == [])
        loading = online
        #expect(loading == online)
    }

    @Test func failoverMovesEverySlotOfTheShard() throws {
        let before = try shards(
            Self.shard([0, 8191], [Self.node("a", ip: "10.0.0.1"), Self.node("a2", ip: "10.0.0.3", role: "replica")]),
            Self.shard([8192, 16383], [Self.node("b", ip: "10.0.0.2")]))
        let after = try shards(
            Self.shard([0, 8191], [Self.node("a2", ip: "10.0.0.3"), Self.node("a", ip: "10.0.0.1", role: "replica", health: "fail")]),
            Self.shard([8192, 16383], [Self.node("b", ip: "10.0.0.2")]))
        let changes = after.changedSlots(from: before)
        #expect(changes.map(\.slots) == [0...8191])
        #expect(changes.first?.from?.id == "a")
        #expect(changes.first?.to?.id == "a2")
        #expect(changes.first?.to?.host == "10.0.0.3")
    }

    @Test func migratedSlotsLostMastersAndMovedAddresses() throws {
        let before = try shards(
            Self.shard([0, 8191], [Self.node("a", ip: "10.0.0.1")]),
            Self.shard([8192, 16383], [Self.node("b", ip: "10.0.0.2")]))
        // 100-199 and 5000 migrated to b; b's slots 9000-9999 lost (nobody serves them); b kept
        // its id but moved to another address.
        let after = try shards(
            Self.shard([0, 99, 200, 4999, 5001, 8191], [Self.node("a", ip: "10.0.0.1")]),
            Self.shard([100, 199, 5000, 5000, 8192, 8999, 10000, 16383], [Self.node("b", ip: "10.0.0.9")]))
        let changes = after.changedSlots(from: before)
        #expect(changes.map(\.slots) == [100...199, 5000...5000, 8192...8999, 9000...9999, 10000...16383])
        #expect(changes.map { $0.from?.id } == ["a", "a", "b", "b", "b"])
        #expect(changes.map { $0.to?.id } == ["b", "b", "b", nil, "b"])
        #expect(changes[2].to?.address == "10.0.0.9:6379")
        // And back: the lost slots come back from no master.
        let back = before.changedSlots(from: after)
        #expect(back.map(\.slots) == changes.map(\.slots))
        #expect(back[3].from == nil)
        #expect(back[3].to?.id == "b")
    }

    @Test func buildingFromParts() throws {
        let m = Node(id: "m", host: "h", port: 1, role: .master)
        let r = Node(id: "r", host: "h", port: 2, role: .replica, masterID: "m")
        let t = try ClusterTopology(nodes: [r, m], slots: [(0...16383, "m")])
        #expect(t.isComplete)
        #expect(t.replicas(of: "m") == [r])
        #expect(throws: ClusterTopologyError.self) { try ClusterTopology(nodes: [m, r], slots: [(0...1, "r")]) }
        #expect(throws: ClusterTopologyError.self) { try ClusterTopology(nodes: [m], slots: [(0...1, "x")]) }
        #expect(throws: ClusterTopologyError.self) { try ClusterTopology(nodes: [m], slots: [(16000...16384, "m")]) }
    }
}
