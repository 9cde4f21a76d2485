package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// dir is the cluster's directory.Directory on one node. Each node is the
// only writer of its own peers: it numbers its changes and broadcasts them
// (puts and removes, batched) on the cluster's directory subject, and
// every node keeps a copy of every other node's peers, so that a lookup is
// a map read on the packet path, never a network round trip. A node that
// misses a change (a gap in the numbers, or a heartbeat that says more
// changes were made than it saw) asks the owner for a snapshot and applies
// the changes that came meanwhile. A node that stops sending heartbeats
// is forgotten with its peers after deadAfter, so no entry points at a dead
// node for long; one that says goodbye is forgotten at once.
type dir struct {
	n *Node
	h directory.Handler

	mu     sync.RWMutex
	local  map[[32]byte]directory.Sessions // this node's peers, every session of each
	seq    uint64                          // the last change given a number
	queue  []op                            // changes not yet published
	nodes  map[string]*remoteNode          // the other nodes heard from
	remote map[[32]byte]directory.Peer     // newest session per peer ID on other nodes
	perKey map[string]int                  // sessions per developer key on other nodes
	// changed is closed at the next change of the remote view (tests and
	// the conformance suite wait on it); nil while nobody waits.
	changed chan struct{}

	// NetGroup membership (groups.go): every node's members in one ring,
	// this node's memberships, and the announcements for this node's
	// members that changing the ring made, for its server once d.mu is
	// released.
	groups       *groupDir
	localMembers map[memberKey]groupOp
	announce     []membership.Announcement

	relayMu sync.Mutex
	relayID uint64
	relays  map[uint64]*pendingRelay
}

// remoteNode is what this node knows of another.
type remoteNode struct {
	name  string
	epoch uint64
	seq   uint64 // its last change applied here
	heard time.Time
	hb    heartbeat
	peers map[[32]byte]directory.Peer
	// Its group memberships.
	members map[memberKey]remoteMembership
	// While syncing, deltas wait in buffered until the snapshot asked for
	// with nonce has come whole (its parts collect in snap).
	syncing  bool
	asked    time.Time
	nonce    uint64
	snap     []op
	buffered []delta
}

type pendingRelay struct {
	done  func(error)
	timer *time.Timer
}

// relayTimeout is how long a relay waits for the holding node's answer.
const relayTimeout = 3 * time.Second

// maxBuffered bounds the deltas kept while waiting for a snapshot; past
// it they are dropped and the snapshot asked for again.
const maxBuffered = 4096

func newDir(n *Node, h directory.Handler, policy membership.Policy) *dir {
	d := &dir{n: n, h: h, local: map[[32]byte]directory.Sessions{}, nodes: map[string]*remoteNode{},
		remote: map[[32]byte]directory.Peer{}, perKey: map[string]int{}, relays: map[uint64]*pendingRelay{},
		localMembers: map[memberKey]groupOp{}}
	d.groups = &groupDir{d: d, ring: membership.NewLocal(policy, collector{d})}
	return d
}

var _ directory.Directory = (*dir)(nil)

// Put implements directory.Directory. The other nodes hear of the peer,
// this node's newest session of its ID, only.
func (d *dir) Put(p directory.Peer) {
	p.Node = d.n.name
	d.mu.Lock()
	ss, isPeer := d.local[p.ID].Put(p)
	d.local[p.ID] = ss
	if isPeer {
		d.record(op{Put: true, Peer: p})
	}
	d.mu.Unlock()
	if isPeer {
		d.n.wake()
	}
}

// Remove implements directory.Directory: when the peer's newest session
// goes and an older one is still open, the other nodes hear that the
// older one is the peer.
func (d *dir) Remove(id [32]byte, local any) bool {
	d.mu.Lock()
	ss, was := d.local[id].Remove(local)
	next, open := ss.Peer()
	if open {
		d.local[id] = ss
	} else {
		delete(d.local, id)
	}
	switch {
	case was && open:
		d.record(op{Put: true, Peer: next})
	case was:
		d.record(op{Peer: directory.Peer{ID: id}})
	}
	d.mu.Unlock()
	if was {
		d.n.wake()
	}
	return was
}

// record numbers a change of this node's peers and queues it for
// publication; d.mu held.
func (d *dir) record(o op) {
	d.seq++
	o.Peer.Local = nil
	d.queue = append(d.queue, o)
}

// Lookup implements directory.Directory: the newest session, here or on
// another node.
func (d *dir) Lookup(id [32]byte) (directory.Peer, bool) {
	d.mu.RLock()
	l, lok := d.local[id].Peer()
	r, rok := d.remote[id]
	d.mu.RUnlock()
	if lok && (!rok || !r.Since.After(l.Since)) {
		return l, true
	}
	return r, rok
}

// RemoteSessions implements directory.Directory.
func (d *dir) RemoteSessions(key string) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.perKey[key]
}

// Range implements directory.Directory.
func (d *dir) Range(fn func(directory.Peer) bool) {
	d.mu.RLock()
	all := make([]directory.Peer, 0, len(d.local)+len(d.remote))
	for id, ss := range d.local {
		p, _ := ss.Peer()
		if r, ok := d.remote[id]; !ok || !r.Since.After(p.Since) {
			all = append(all, p)
		}
	}
	for id, p := range d.remote {
		if l, ok := d.local[id].Peer(); !ok || p.Since.After(l.Since) {
			all = append(all, p)
		}
	}
	d.mu.RUnlock()
	for _, p := range all {
		if !fn(p) {
			return
		}
	}
}

// Changed implements directorytest.Notifier.
func (d *dir) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.changed
}

// notify wakes whoever waits on Changed; d.mu held.
func (d *dir) notify() {
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// localHandle returns this node's handle on a peer it holds.
func (d *dir) localHandle(id [32]byte) (any, bool) {
	d.mu.RLock()
	p, ok := d.local[id].Peer()
	d.mu.RUnlock()
	return p.Local, ok
}

// Introduce implements directory.Directory.
func (d *dir) Introduce(p directory.Peer, in directory.Introduction) {
	if p.Node == d.n.name {
		if local, ok := d.localHandle(p.ID); ok {
			d.h.Introduce(local, in)
		}
		return
	}
	d.n.send(d.n.subject(p.Node, "in"), "", header{Kind: kindIntro}, introMsg(in).append)
}

// Relay implements directory.Directory.
func (d *dir) Relay(p directory.Peer, r directory.Relay, done func(error)) {
	if p.Node == d.n.name {
		local, ok := d.localHandle(p.ID)
		if !ok {
			done(directory.ErrGone)
			return
		}
		done(d.h.Relay(local, r))
		return
	}
	d.relayMu.Lock()
	d.relayID++
	id := d.relayID
	pr := &pendingRelay{done: done}
	d.relays[id] = pr
	pr.timer = time.AfterFunc(relayTimeout, func() { d.finishRelay(id, directory.ErrUnreachable) })
	d.relayMu.Unlock()
	if !d.n.send(d.n.subject(p.Node, "in"), "", header{Kind: kindRelay}, relayMsg{ID: id, Relay: r}.append) {
		d.finishRelay(id, directory.ErrUnreachable)
	}
}

// finishRelay reports a relay's result, once.
func (d *dir) finishRelay(id uint64, err error) {
	d.relayMu.Lock()
	pr := d.relays[id]
	delete(d.relays, id)
	d.relayMu.Unlock()
	if pr != nil {
		pr.timer.Stop()
		pr.done(err)
	}
}

// onDirect handles what other nodes send this node: introductions and
// relays for its peers, answers to its relays.
func (d *dir) onDirect(m *nats.Msg) {
	h, body, ok := d.n.open(m)
	if !ok {
		return
	}
	switch h.Kind {
	case kindIntro:
		in, err := parseIntro(body)
		if err != nil {
			d.n.drop("malformed", err)
			return
		}
		if local, ok := d.localHandle(in.Target); ok {
			d.h.Introduce(local, in)
		} else {
			d.n.stats.introsStale.Add(1)
		}
	case kindRelay:
		r, err := parseRelay(body)
		if err != nil {
			d.n.drop("malformed", err)
			return
		}
		res := directory.ErrGone
		if local, ok := d.localHandle(r.Target); ok {
			res = d.h.Relay(local, r.Relay)
		}
		d.n.send(d.n.subject(h.Node, "reply"), "", header{Kind: kindRelayReply}, relayReply{ID: r.ID, Result: relayResult(res)}.append)
	case kindRelayReply:
		r, err := parseRelayReply(body)
		if err != nil {
			d.n.drop("malformed", err)
			return
		}
		d.finishRelay(r.ID, relayError(r.Result))
	default:
		d.n.drop("unexpected_kind", nil)
	}
}

// takeQueue hands the changes not yet published to the publisher, with
// the number of the first.
func (d *dir) takeQueue() (uint64, []op) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.queue
	d.queue = nil
	return d.seq - uint64(len(q)) + 1, q
}

// onSnapReq answers another node's request for all of this node's peers.
func (d *dir) onSnapReq(m *nats.Msg) {
	h, body, ok := d.n.open(m)
	if !ok {
		return
	}
	req, err := parseSnapReq(body)
	if err != nil || h.Kind != kindSnapReq || m.Reply != d.n.subject(h.Node, "snap-data") {
		d.n.drop("malformed", err)
		return
	}
	d.mu.RLock()
	seq := d.seq
	ops := make([]op, 0, len(d.local)+len(d.localMembers))
	for _, ss := range d.local {
		p, _ := ss.Peer()
		p.Local = nil
		ops = append(ops, op{Put: true, Peer: p})
	}
	for _, o := range d.localMembers {
		ops = append(ops, op{Group: &o})
	}
	d.mu.RUnlock()
	d.n.stats.snapsServed.Add(1)
	// Parts of at most snapPartOps peers (about 100 bytes each) stay well
	// below NATS's message size limit.
	for first := 0; ; first += snapPartOps {
		part := snapPart{Nonce: req.Nonce, Seq: seq, Ops: ops[first:min(first+snapPartOps, len(ops))], Last: first+snapPartOps >= len(ops)}
		d.n.send(m.Reply, "", header{Kind: kindSnapPart}, part.append)
		if part.Last {
			return
		}
	}
}

const snapPartOps = 2000

// onBroadcast handles the directory subject: other nodes' changes,
// heartbeats and goodbyes.
func (d *dir) onBroadcast(m *nats.Msg) {
	h, body, ok := d.n.open(m)
	if !ok {
		return
	}
	now := time.Now()
	switch h.Kind {
	case kindDelta:
		dl, err := parseDelta(body)
		if err != nil {
			d.n.drop("malformed", err)
			return
		}
		d.mu.Lock()
		rn := d.nodeFor(h, now)
		switch {
		case rn.syncing:
			if len(rn.buffered) < maxBuffered {
				rn.buffered = append(rn.buffered, dl)
			} else {
				rn.buffered, rn.asked = nil, time.Time{} // ask again
			}
		case !d.applyDelta(rn, dl):
			d.startSync(rn, now)
		}
		d.unlockAndDeliver()
	case kindHeartbeat:
		hb, err := parseHeartbeat(body)
		if err != nil {
			d.n.drop("malformed", err)
			return
		}
		d.mu.Lock()
		rn := d.nodeFor(h, now)
		rn.hb = hb
		if !rn.syncing && hb.Seq > rn.seq {
			d.startSync(rn, now) // changes were lost on the way
		}
		d.unlockAndDeliver()
	case kindBye:
		d.mu.Lock()
		if rn := d.nodes[h.Node]; rn != nil && rn.epoch == h.Epoch {
			d.forget(rn)
			d.n.log.Info("cluster: node left", "remote", h.Node)
		}
		d.unlockAndDeliver()
	default:
		d.n.drop("unexpected_kind", nil)
	}
}

// nodeFor returns the record of the sender of h, new (and syncing) if it
// was unknown or restarted; d.mu held.
func (d *dir) nodeFor(h header, now time.Time) *remoteNode {
	rn := d.nodes[h.Node]
	if rn != nil && rn.epoch != h.Epoch {
		d.forget(rn) // it restarted: what it held before is gone
		rn = nil
	}
	if rn == nil {
		rn = &remoteNode{name: h.Node, epoch: h.Epoch, peers: map[[32]byte]directory.Peer{},
			members: map[memberKey]remoteMembership{}}
		d.nodes[h.Node] = rn
		d.n.stats.nodesJoined.Add(1)
		d.n.log.Info("cluster: node joined", "remote", h.Node)
		d.startSync(rn, now)
	}
	rn.heard = now
	return rn
}

// startSync asks rn for its snapshot, buffering its deltas meanwhile;
// d.mu held.
func (d *dir) startSync(rn *remoteNode, now time.Time) {
	rn.syncing, rn.asked, rn.snap, rn.buffered = true, now, nil, nil
	var b [8]byte
	rand.Read(b[:])
	rn.nonce = binary.BigEndian.Uint64(b[:])
	d.n.stats.snapsAsked.Add(1)
	d.n.send(d.n.subject(rn.name, "snap"), d.n.subject(d.n.name, "snap-data"), header{Kind: kindSnapReq}, snapReq{Nonce: rn.nonce}.append)
}

// onSnapPart collects the parts of a snapshot this node asked for.
func (d *dir) onSnapPart(m *nats.Msg) {
	h, body, ok := d.n.open(m)
	if !ok {
		return
	}
	sp, err := parseSnapPart(body)
	if err != nil || h.Kind != kindSnapPart {
		d.n.drop("malformed", err)
		return
	}
	d.mu.Lock()
	defer d.unlockAndDeliver()
	rn := d.nodes[h.Node]
	if rn == nil || rn.epoch != h.Epoch || !rn.syncing || sp.Nonce != rn.nonce {
		return // an answer to an earlier request
	}
	if len(rn.snap)+len(sp.Ops) > maxSnapshot {
		d.n.drop("oversize", nil)
		rn.asked = time.Time{} // ask again
		return
	}
	rn.snap = append(rn.snap, sp.Ops...)
	if !sp.Last {
		return
	}
	// Replace what we knew of rn with the snapshot (changing only what
	// differs, so that memberships are announced once), then apply the
	// changes made after it.
	peers, members := map[[32]byte]bool{}, map[memberKey]bool{}
	for _, o := range rn.snap {
		if o.Group != nil {
			members[memberKey{o.Group.Group, o.Group.Addr}] = true
		} else {
			peers[o.Peer.ID] = true
		}
	}
	now := time.Now()
	for mk, m := range rn.members {
		if !members[mk] {
			o := m.op
			o.Join = false
			d.applyGroup(rn, o, now)
		}
	}
	for id := range rn.peers {
		if !peers[id] {
			d.drop(rn, id)
		}
	}
	for _, o := range rn.snap {
		if o.Group != nil {
			d.applyGroup(rn, *o.Group, now)
		} else {
			d.put(rn, o.Peer)
		}
	}
	rn.seq, rn.syncing, rn.snap = sp.Seq, false, nil
	buffered := rn.buffered
	rn.buffered = nil
	for _, dl := range buffered {
		if !d.applyDelta(rn, dl) {
			d.startSync(rn, now)
			break
		}
	}
	d.notify()
}

// maxSnapshot bounds the peers one node may claim to hold.
const maxSnapshot = 4 << 20

// applyDelta applies the part of dl that rn has not applied yet; false if
// changes are missing before it; d.mu held.
func (d *dir) applyDelta(rn *remoteNode, dl delta) bool {
	if dl.First > rn.seq+1 {
		return false
	}
	now := time.Now()
	for i, o := range dl.Ops {
		switch {
		case dl.First+uint64(i) <= rn.seq:
			// applied already (it overlaps a snapshot)
		case o.Group != nil:
			d.applyGroup(rn, *o.Group, now)
		case o.Put:
			d.put(rn, o.Peer)
		default:
			d.drop(rn, o.Peer.ID)
		}
	}
	if last := dl.First + uint64(len(dl.Ops)) - 1; len(dl.Ops) > 0 && last > rn.seq {
		rn.seq = last
	}
	d.notify()
	return true
}

// put records a peer rn holds; d.mu held.
func (d *dir) put(rn *remoteNode, p directory.Peer) {
	p.Node, p.Local = rn.name, nil
	if old, ok := rn.peers[p.ID]; ok {
		d.perKey[old.Key]--
		if d.perKey[old.Key] <= 0 {
			delete(d.perKey, old.Key)
		}
	}
	rn.peers[p.ID] = p
	d.perKey[p.Key]++
	if cur, ok := d.remote[p.ID]; !ok || cur.Node == rn.name || !p.Since.Before(cur.Since) {
		d.remote[p.ID] = p
	}
}

// drop forgets a peer rn held; d.mu held.
func (d *dir) drop(rn *remoteNode, id [32]byte) {
	old, ok := rn.peers[id]
	if !ok {
		return
	}
	delete(rn.peers, id)
	if d.perKey[old.Key]--; d.perKey[old.Key] <= 0 {
		delete(d.perKey, old.Key)
	}
	if cur := d.remote[id]; cur.Node != rn.name {
		return
	}
	// It was the newest session: the next newest, if another node has one.
	delete(d.remote, id)
	for _, other := range d.nodes {
		if p, ok := other.peers[id]; ok {
			if cur, ok := d.remote[id]; !ok || p.Since.After(cur.Since) {
				d.remote[id] = p
			}
		}
	}
}

// forget drops a node, every peer it held and its memberships; d.mu
// held.
func (d *dir) forget(rn *remoteNode) {
	for id := range rn.peers {
		d.drop(rn, id)
	}
	d.leaveAll(rn, time.Now())
	delete(d.nodes, rn.name)
	d.n.stats.nodesLeft.Add(1)
	d.notify()
}

// checkNodes forgets nodes silent for longer than deadAfter and asks
// again for snapshots that did not come.
func (d *dir) checkNodes(now time.Time, deadAfter time.Duration) {
	d.mu.Lock()
	defer d.unlockAndDeliver()
	for _, rn := range d.nodes {
		switch {
		case now.Sub(rn.heard) > deadAfter:
			d.forget(rn)
			d.n.log.Warn("cluster: node silent, forgetting its peers", "remote", rn.name, "silent_for", now.Sub(rn.heard).Round(time.Millisecond))
		case rn.syncing && now.Sub(rn.asked) > snapRetry:
			d.startSync(rn, now)
		}
	}
}

// snapRetry is how long a snapshot may take before it is asked again.
const snapRetry = 3 * time.Second

// view summarises the other nodes for the admin API and heartbeats.
func (d *dir) view() []NodeInfo {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]NodeInfo, 0, len(d.nodes))
	for _, rn := range d.nodes {
		out = append(out, NodeInfo{Name: rn.name, Peers: len(rn.peers), Sessions: int(rn.hb.Sessions), Clients: int(rn.hb.Clients),
			MaxSessions: int(rn.hb.MaxSessions), Draining: rn.hb.Draining, Public: rn.hb.Public, Version: rn.hb.Version,
			Started: rn.hb.Started, LastHeard: rn.heard, Syncing: rn.syncing})
	}
	return out
}

// nodeCount is how many other nodes this node hears.
func (d *dir) nodeCount() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.nodes)
}

// localCount is how many peers this node holds.
func (d *dir) localCount() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.local)
}
