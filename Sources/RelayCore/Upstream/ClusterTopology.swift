/// A Redis Cluster as one node described it: its nodes, and which master serves each of the 16384
/// hash slots. Built from `CLUSTER SHARDS` (Redis 7) or, on older servers, `CLUSTER SLOTS`
/// (`ClusterTopology+Replies.swift`); compared with the previous one to learn which slots moved.
///
/// Equal topologies describe the same nodes (addresses, roles, health) and the same slot map;
/// `changedSlots(from:)` reports only what changes routing.
public struct ClusterTopology: Sendable, Equatable {
    /// One node of the cluster, with the address to connect to.
    public struct Node: Sendable, Equatable, Hashable, CustomStringConvertible {
        public enum Role: Sendable, Equatable, Hashable { case master, replica }
        /// `CLUSTER SHARDS`'s `health`: `online`, `loading` (a replica still syncing), `fail`.
        public enum Health: String, Sendable, Equatable, Hashable {
            case online, loading
            case failed = "fail"
        }

        /// The 40-character node id (`CLUSTER MYID`).
        public var id: String
        /// Where to connect: the node's announced endpoint, or the host the reply came from when
        /// the node's endpoint is unknown (as redis-cli does).
        public var host: String
        /// The port to connect to: the `tls-port` when TLS was asked for and the node has one.
        public var port: Int
        /// The node's TLS port, when `CLUSTER SHARDS` gives one.
        public var tlsPort: Int?
        public var role: Role
        /// Nil when the reply does not say (`CLUSTER SLOTS`).
        public var health: Health?
        /// A replica's master, when the reply says which it is.
        public var masterID: String?

        public init(id: String, host: String, port: Int, tlsPort: Int? = nil, role: Role,
                    health: Health? = nil, masterID: String? = nil) {
            self.id = id
            self.host = host
            self.port = port
            self.tlsPort = tlsPort
            self.role = role
            self.health = health
            self.masterID = masterID
        }

        /// `host:port`, an IPv6 host in brackets.
        public var address: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

        public var description: String { "\(id.prefix(8)) \(address) \(role)" }
    }

    /// One run of consecutive slots whose master is not the same in two topologies.
    public struct SlotChange: Sendable, Equatable {
        public var slots: ClosedRange<Int>
        /// The master before; nil: the slots had none.
        public var from: Node?
        /// The master now; nil: the slots have none (e.g. its master failed and nobody took over yet).
        public var to: Node?

        public init(slots: ClosedRange<Int>, from: Node?, to: Node?) {
            self.slots = slots
            self.from = from
            self.to = to
        }
    }

    /// Every node, masters and replicas, ordered by id (so that equal clusters compare equal
    /// whatever order the reply listed them in).
    public private(set) var nodes: [Node]
    /// For each slot, the index in `nodes` of its master; `unassigned` when it has none. Two
    /// bytes a slot: 32 KiB, looked up on every PUBLISH.
    private var owners: [UInt16]
    private static let unassigned = UInt16.max

    /// A topology of `nodes` whose masters serve `slots` (a master id for each range).
    /// Throws if a range is outside 0…16383, two ranges overlap, an id is listed twice, or a
    /// range names a node that is not a master of `nodes`.
    public init(nodes: [Node], slots: [(range: ClosedRange<Int>, masterID: String)]) throws(ClusterTopologyError) {
        let sorted = nodes.sorted { $0.id < $1.id }
        guard sorted.count < Int(Self.unassigned) else {
            throw ClusterTopologyError(.malformedReply, "\(sorted.count) nodes; more than a cluster can have")
        }
        var index: [String: UInt16] = [:]
        for (i, node) in sorted.enumerated() {
            if index.updateValue(UInt16(i), forKey: node.id) != nil {
                throw ClusterTopologyError(.overlappingSlots, "node \(node.id) is listed twice")
            }
        }
        var owners = [UInt16](repeating: Self.unassigned, count: ClusterSlot.count)
        for (range, masterID) in slots {
            guard range.lowerBound >= 0, range.upperBound < ClusterSlot.count else {
                throw ClusterTopologyError(.slotOutOfRange, "slots \(range.lowerBound)-\(range.upperBound) are outside 0-16383")
            }
            guard let i = index[masterID], sorted[Int(i)].role == .master else {
                throw ClusterTopologyError(.malformedReply, "slots \(range.lowerBound)-\(range.upperBound) are assigned to \(masterID), which is not a master of the reply")
            }
            for slot in range {
                if owners[slot] != Self.unassigned, owners[slot] != i {
                    throw ClusterTopologyError(.overlappingSlots, "slot \(slot) is assigned to both \(sorted[Int(owners[slot])].id) and \(masterID)")
                }
                owners[slot] = i
            }
        }
        self.nodes = sorted
        self.owners = owners
    }

    /// The master serving `slot` (0…16383); nil when no master has it, or for a slot out of range.
    @inlinable
    public func master(forSlot slot: Int) -> Node? {
        guard let i = ownerIndex(slot) else { return nil }
        return nodes[i]
    }

    @usableFromInline
    func ownerIndex(_ slot: Int) -> Int? {
        guard slot >= 0, slot < owners.count else { return nil }
        let i = owners[slot]
        return i == Self.unassigned ? nil : Int(i)
    }

    /// The node with this id.
    public func node(id: String) -> Node? {
        nodes.first { $0.id == id }
    }

    /// The masters that serve at least one slot, ordered by id.
    public var masters: [Node] {
        var serving = [Bool](repeating: false, count: nodes.count)
        for i in owners where i != Self.unassigned { serving[Int(i)] = true }
        return nodes.indices.filter { serving[$0] }.map { nodes[$0] }
    }

    /// The replicas of the master `masterID`, as far as the reply said.
    public func replicas(of masterID: String) -> [Node] {
        nodes.filter { $0.role == .replica && $0.masterID == masterID }
    }

    /// Whether every slot has a master (Redis's `cluster-require-full-coverage` state).
    public var isComplete: Bool { !owners.contains(Self.unassigned) }

    /// The runs of slots no master serves, in order.
    public var unassignedSlots: [ClosedRange<Int>] { ranges { $0 == Self.unassigned } }

    /// The runs of slots `masterID` serves, in order; empty for a replica or an unknown id.
    public func slots(of masterID: String) -> [ClosedRange<Int>] {
        guard let i = nodes.firstIndex(where: { $0.id == masterID }) else { return [] }
        return ranges { $0 == UInt16(i) }
    }

    /// The slots whose master is not the same as in `old`: another node, none, or the same id at
    /// another address (the I/O layer must reconnect for those too). Consecutive slots with the
    /// same before and after are one change. Empty when routing is unchanged.
    public func changedSlots(from old: ClusterTopology) -> [SlotChange] {
        // Who serves a slot, as far as routing cares: the id and where to connect.
        struct Owner: Equatable { var id: String; var host: String; var port: Int }
        let oldOwners = old.nodes.map { Owner(id: $0.id, host: $0.host, port: $0.port) }
        let newOwners = nodes.map { Owner(id: $0.id, host: $0.host, port: $0.port) }
        var changes: [SlotChange] = []
        var runStart = -1
        var runPair: (UInt16, UInt16) = (0, 0)
        func close(at end: Int) {
            guard runStart >= 0 else { return }
            let from = runPair.0 == Self.unassigned ? nil : old.nodes[Int(runPair.0)]
            let to = runPair.1 == Self.unassigned ? nil : nodes[Int(runPair.1)]
            changes.append(SlotChange(slots: runStart...end, from: from, to: to))
            runStart = -1
        }
        for slot in 0..<ClusterSlot.count {
            let (o, n) = (old.owners[slot], owners[slot])
            let same: Bool
            switch (o == Self.unassigned, n == Self.unassigned) {
            case (true, true): same = true
            case (false, false): same = oldOwners[Int(o)] == newOwners[Int(n)]
            default: same = false
            }
            if same {
                close(at: slot - 1)
            } else if runStart < 0 || runPair != (o, n) {
                close(at: slot - 1)
                runStart = slot
                runPair = (o, n)
            }
        }
        close(at: ClusterSlot.count - 1)
        return changes
    }

    /// The runs of slots whose owner entry satisfies `predicate`.
    private func ranges(where predicate: (UInt16) -> Bool) -> [ClosedRange<Int>] {
        var result: [ClosedRange<Int>] = []
        var start: Int?
        for slot in 0..<owners.count {
            if predicate(owners[slot]) {
                if start == nil { start = slot }
            } else if let s = start {
                result.append(s...(slot - 1))
                start = nil
            }
        }
        if let s = start { result.append(s...(owners.count - 1)) }
        return result
    }
}
