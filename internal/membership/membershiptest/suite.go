// Package membershiptest is the conformance suite every
// membership.Directory passes: the single server's Local and a cluster's
// directory run the same tests, so the server behaves the same on one
// node and on many, except that a cluster knows more members.
//
// The suite checks the default bootstrap policy's announcements exactly
// (who is told about whom, with which kind and handle, on which node),
// which session of a peer ID is the member, leaves and their repairs,
// the "recently gone" answer, the admin views and concurrent use.
package membershiptest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/membership"
)

// Node is one directory under test, with its node name.
type Node struct {
	Name string
	Dir  membership.Directory
}

// Factory builds n directories with the default policy that share one
// world (the nodes of one cluster), handing announcements for their own
// members to handlers[i]. A single-server implementation returns one node
// whatever n is; the tests that need several nodes then skip.
type Factory func(t *testing.T, handlers []membership.Handler) []Node

// Notifier is implemented by directories that change in the background
// (members other nodes hold): Changed is closed at the next change. The
// suite waits on it instead of polling.
type Notifier interface {
	Changed() <-chan struct{}
}

// Timeout bounds every wait for a change to reach the other nodes.
var Timeout = 15 * time.Second

// Run runs the suite.
func Run(t *testing.T, newNodes Factory) {
	t.Run("JoinAnnouncesToRingNeighbours", func(t *testing.T) { testJoinSmall(t, newNodes) })
	t.Run("JoinInLargeGroup", func(t *testing.T) { testJoinLarge(t, newNodes) })
	t.Run("LeaveRepairs", func(t *testing.T) { testLeave(t, newNodes) })
	t.Run("NewestSessionIsTheMember", func(t *testing.T) { testNewest(t, newNodes) })
	t.Run("NewestAcrossNodes", func(t *testing.T) { testNewestAcrossNodes(t, newNodes) })
	t.Run("Gone", func(t *testing.T) { testGone(t, newNodes) })
	t.Run("KeysIsolateGroups", func(t *testing.T) { testKeys(t, newNodes) })
	t.Run("AdminViews", func(t *testing.T) { testAdminViews(t, newNodes) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newNodes) })
}

// recorder is a Handler that records what it is handed.
type recorder struct {
	mu   sync.Mutex
	got  []delivery
	bell *bell
}

// bell wakes the tests at every delivery on any node.
type bell struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced at every delivery
}

func (b *bell) ring() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

func (b *bell) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

type delivery struct {
	local any
	a     membership.Announcement
}

func (r *recorder) Announce(local any, a membership.Announcement) {
	r.mu.Lock()
	r.got = append(r.got, delivery{local, a})
	r.mu.Unlock()
	r.bell.ring()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// take returns and forgets what was delivered.
func (r *recorder) take() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// waitCount waits until n deliveries are recorded on r.
func (r *recorder) waitCount(t *testing.T, n int, what string) {
	t.Helper()
	waitDeliveries(t, []*recorder{r}, n, what)
}

// waitDeliveries waits until the recorders hold n deliveries between them.
func waitDeliveries(t *testing.T, recs []*recorder, n int, what string) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		ch := recs[0].bell.wait()
		have := 0
		for _, r := range recs {
			have += r.count()
		}
		if have >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("after %v: %d of %d deliveries: %s", Timeout, have, n, what)
		}
	}
}

func setup(t *testing.T, newNodes Factory, n int) ([]Node, []*recorder) {
	t.Helper()
	recs := make([]*recorder, n)
	hs := make([]membership.Handler, n)
	b := &bell{ch: make(chan struct{})}
	for i := range recs {
		recs[i] = &recorder{bell: b}
		hs[i] = recs[i]
	}
	nodes := newNodes(t, hs)
	if len(nodes) == 0 {
		t.Fatal("factory built no node")
	}
	return nodes, recs[:len(nodes)]
}

func needNodes(t *testing.T, nodes []Node, n int) {
	t.Helper()
	if len(nodes) < n {
		t.Skipf("a single-node directory (%d node, the test needs %d)", len(nodes), n)
	}
}

// handle is a member's session handle, distinct per value.
type handle struct{ n int }

var seq struct {
	sync.Mutex
	n uint64
}

// newGroup is a group no other test uses.
func newGroup(key string) membership.GroupKey {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	var id [32]byte
	copy(id[:], fmt.Sprintf("membershiptest-%016x", n))
	binary.BigEndian.PutUint64(id[24:], uint64(time.Now().UnixNano()))
	return membership.GroupKey{DevKey: key, ID: id}
}

// member makes a member whose group address is addr (the tests choose the
// ring order) and whose peer ID is derived from it.
func member(addr [32]byte, h *handle, since time.Time) membership.Member {
	m := membership.Member{Addr: addr, Local: h, Since: since, Joined: since}
	m.Peer = addr
	m.Peer[31] ^= 0xff // a peer ID that is not its address
	return m
}

// addrs returns n distinct random-looking group addresses in ring order.
func addrs(n int) [][32]byte {
	seq.Lock()
	seq.n++
	base := seq.n
	seq.Unlock()
	out := make([][32]byte, n)
	for i := range out {
		binary.BigEndian.PutUint64(out[i][:], uint64(i+1)<<40|base<<8)
		binary.BigEndian.PutUint64(out[i][8:], uint64(time.Now().UnixNano()))
	}
	return out
}

// eventually waits until cond holds on node d, woken by its changes.
func eventually(t *testing.T, d membership.Directory, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		var ch <-chan struct{}
		if n, ok := d.(Notifier); ok {
			ch = n.Changed()
		}
		if cond() {
			return
		}
		if ch == nil {
			t.Fatalf("not %s (and the directory does not change by itself)", what)
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("after %v, still not %s", Timeout, what)
		}
	}
}

// waitMembers waits until every node sees n members in g.
func waitMembers(t *testing.T, nodes []Node, g membership.GroupKey, n int) {
	t.Helper()
	for i, nd := range nodes {
		eventually(t, nd.Dir, fmt.Sprintf("%d members on node %d", n, i), func() bool {
			_, sum, ok := nd.Dir.Members(g, 0)
			return n == 0 && !ok || ok && sum.Members == n
		})
	}
}

// joinAll has each member join g on node i mod len(nodes), waiting for
// every node to see it before the next, and discards the announcements.
func joinAll(t *testing.T, nodes []Node, recs []*recorder, g membership.GroupKey, ms []membership.Member) {
	t.Helper()
	_, sum, _ := nodes[0].Dir.Members(g, 0)
	for i, m := range ms {
		if res, _ := nodes[i%len(nodes)].Dir.Join(g, m); res != membership.Joined {
			t.Fatalf("join %d: %v", i, res)
		}
		waitMembers(t, nodes, g, sum.Members+i+1)
	}
	settle(t, nodes, recs)
}

// settle waits until announcements stop arriving (every node has handed
// what it will hand), then forgets them.
func settle(t *testing.T, nodes []Node, recs []*recorder) {
	t.Helper()
	if len(nodes) > 1 {
		// A round trip from every node to every other: a node sees
		// another's join after whatever that node sent before it, and
		// after handing what that made; the joins of its own that it
		// sees at once prove nothing about the news it is still
		// handling from elsewhere.
		// Each in a group of its own, so that the round trip makes no
		// announcement.
		var gs []membership.GroupKey
		var ms []membership.Member
		for i, a := range addrs(len(nodes)) {
			gs = append(gs, newGroup("settle"))
			ms = append(ms, member(a, &handle{-1 - i}, time.Now()))
			nodes[i].Dir.Join(gs[i], ms[i])
		}
		for _, g := range gs {
			waitMembers(t, nodes, g, 1)
		}
		for i, m := range ms {
			nodes[i].Dir.Leave(gs[i], m, time.Now()) // the same handle: another would not leave
		}
		for _, g := range gs {
			waitMembers(t, nodes, g, 0)
		}
	}
	for _, r := range recs {
		r.take()
	}
}

// all collects the deliveries of every node, each with its node's index.
func all(recs []*recorder) (out []nodeDelivery) {
	for i, r := range recs {
		for _, d := range r.take() {
			out = append(out, nodeDelivery{i, d})
		}
	}
	return out
}

type nodeDelivery struct {
	node int
	delivery
}

// In a group of five, a sixth member's join tells each of the five about
// it (all are within four ring places of it), through the handler of the
// node that holds each, with that member's handle; the newcomer is told
// nothing (nobody is left to draw at random).
func testJoinSmall(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 3)
	g := newGroup("key-small")
	as := addrs(6)
	now := time.Now()
	var ms []membership.Member
	for i, a := range as[:5] {
		ms = append(ms, member(a, &handle{i}, now))
	}
	joinAll(t, nodes, recs, g, ms)
	x := member(as[5], &handle{5}, now)
	res, n := nodes[0].Dir.Join(g, x)
	if res != membership.Joined || n != 5 {
		t.Fatalf("join: %v, %d announcements (want joined, 5)", res, n)
	}
	waitDeliveries(t, recs, 5, "the five members told")
	got := all(recs)
	if len(got) != 5 {
		t.Fatalf("%d deliveries, want 5: %+v", len(got), got)
	}
	told := map[any]bool{}
	for _, d := range got {
		h := d.local.(*handle)
		if d.node != h.n%len(nodes) || d.a.To.Local != d.local || d.a.To.Addr != as[h.n] || d.a.To.Peer != ms[h.n].Peer {
			t.Fatalf("member %d (node %d) told on node %d: %+v", h.n, h.n%len(nodes), d.node, d.a)
		}
		if d.a.Peer != x.Peer || d.a.Kind != membership.ToMember || d.a.Group != g || told[d.local] {
			t.Fatalf("delivery %+v, want one announcement of the newcomer per member", d.a)
		}
		told[d.local] = true
	}
	waitMembers(t, nodes, g, 6)
}

// In a group of thirty, a join tells exactly the newcomer's four ring
// successors and four predecessors about it and tells it about two other
// members; nobody is told twice.
func testJoinLarge(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	g := newGroup("key-large")
	as := addrs(31)
	now := time.Now()
	x := member(as[15], &handle{15}, now) // 15 members on each side of it
	var ms []membership.Member
	byPeer := map[[32]byte]int{} // peer ID -> ring place
	for i, a := range as {
		m := member(a, &handle{i}, now)
		byPeer[m.Peer] = i
		if i != 15 {
			ms = append(ms, m)
		}
	}
	joinAll(t, nodes, recs, g, ms)
	res, n := nodes[len(nodes)-1].Dir.Join(g, x)
	if res != membership.Joined || n != membership.DefaultPolicy.MaxMessages() {
		t.Fatalf("join: %v, %d announcements (want joined, %d)", res, n, membership.DefaultPolicy.MaxMessages())
	}
	waitDeliveries(t, recs, n, "the join's announcements")
	var toMembers []int
	drawn := map[int]bool{}
	for _, d := range all(recs) {
		i := byPeer[d.a.To.Peer]
		if d.a.To.Local != d.local || d.local.(*handle).n != i || d.a.Group != g {
			t.Fatalf("announcement to member %d handed with handle %v: %+v", i, d.local, d.a)
		}
		switch j := byPeer[d.a.Peer]; d.a.Kind {
		case membership.ToMember:
			if j != 15 {
				t.Fatalf("member %d told about member %d, not the newcomer", i, j)
			}
			toMembers = append(toMembers, i)
		case membership.ToJoiner:
			// Drawn from the rest of the ring: not a ring neighbour, not
			// twice.
			if i != 15 || j >= 11 && j <= 19 || drawn[j] {
				t.Fatalf("member %d told about member %d as a joiner", i, j)
			}
			drawn[j] = true
		default:
			t.Fatalf("kind %v on a join", d.a.Kind)
		}
	}
	sort.Ints(toMembers)
	if want := []int{11, 12, 13, 14, 16, 17, 18, 19}; !slices.Equal(toMembers, want) || len(drawn) != 2 {
		t.Fatalf("members told %v (want %v), newcomer told about %v (want 2 others)", toMembers, want, drawn)
	}
}

// When a member leaves, its ring predecessor is told about its successor,
// wrapping around; a leave with another handle, or of a non-member,
// changes nothing; the last member's leave deletes the group.
func testLeave(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	g := newGroup("key-leave")
	as := addrs(3)
	now := time.Now()
	var ms []membership.Member
	for i, a := range as {
		ms = append(ms, member(a, &handle{i}, now))
	}
	joinAll(t, nodes, recs, g, ms)
	owner := func(i int) membership.Directory { return nodes[i%len(nodes)].Dir }
	if owner(1).Leave(g, member(as[1], &handle{1}, now), now) {
		t.Fatal("a leave with another handle (an equal value, not the same) removed the member")
	}
	if owner(0).Leave(newGroup("key-leave"), ms[0], now) {
		t.Fatal("a leave from a group that does not exist succeeded")
	}
	if !owner(1).Leave(g, ms[1], now) {
		t.Fatal("the member's own leave failed")
	}
	recs[0].waitCount(t, 1, "the repair")
	got := all(recs)
	if len(got) != 1 || got[0].node != 0 || got[0].local != ms[0].Local || got[0].a.Kind != membership.Repair ||
		got[0].a.Peer != ms[2].Peer || got[0].a.Group != g {
		t.Fatalf("repair %+v, want member 0 (on node 0) told about member 2", got)
	}
	waitMembers(t, nodes, g, 2)
	// Wrapping: the last in ring order leaves, the one before it learns
	// the first.
	if !owner(2).Leave(g, ms[2], now) {
		t.Fatal("leave failed")
	}
	waitMembers(t, nodes, g, 1)
	settle(t, nodes, recs) // a group of one has nobody to repair; nothing arrives
	if !owner(0).Leave(g, ms[0], now) {
		t.Fatal("the last member's leave failed")
	}
	waitMembers(t, nodes, g, 0)
	for i, n := range nodes {
		if gs := n.Dir.Groups(g.ID); len(gs) != 0 {
			t.Fatalf("node %d still lists %v", i, gs)
		}
	}
	settle(t, nodes, recs)
}

// Of two sessions of one peer ID, the newer (later Since) is the member
// whatever order they join in; the older's leave changes nothing; the same
// handle joining again is a no-op; announcements go to the member's
// current handle.
func testNewest(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 1)
	d := nodes[0].Dir
	g := newGroup("key-newest")
	as := addrs(3)
	t0 := time.Now()
	first, old, cur, third := &handle{0}, &handle{1}, &handle{2}, &handle{4}
	d.Join(g, member(as[0], first, t0))
	if res, n := d.Join(g, member(as[1], cur, t0.Add(time.Second))); res != membership.Joined || n != 1 {
		t.Fatalf("first join: %v %d", res, n)
	}
	if res, n := d.Join(g, member(as[1], cur, t0.Add(time.Second))); res != membership.Already || n != 0 {
		t.Fatalf("the same membership again: %v %d", res, n)
	}
	// The older session's join comes later: it does not take over.
	if res, n := d.Join(g, member(as[1], old, t0)); res != membership.Superseded || n != 0 {
		t.Fatalf("an older session's join: %v %d", res, n)
	}
	if d.Leave(g, member(as[1], old, t0), t0) {
		t.Fatal("the older session's leave removed the newer membership")
	}
	// A still newer session takes over, without announcements.
	newest := &handle{3}
	if res, n := d.Join(g, member(as[1], newest, t0.Add(2*time.Second))); res != membership.Replaced || n != 0 {
		t.Fatalf("a newer session's join: %v %d", res, n)
	}
	ms, sum, _ := d.Members(g, 10)
	if sum.Members != 2 || len(ms) != 2 || !ms[1].Since.Equal(t0.Add(2*time.Second)) || ms[1].Local != nil {
		t.Fatalf("members %+v: want the newest session's, without handles", ms)
	}
	recs[0].take()
	d.Join(g, member(as[2], third, t0))
	recs[0].waitCount(t, 2, "two members told")
	for _, dl := range recs[0].take() {
		if dl.a.To.Addr == as[1] && dl.local != newest {
			t.Fatalf("announcement to %v, not the newest session", dl.local)
		}
	}
	if d.Leave(g, member(as[1], cur, t0.Add(time.Second)), t0) {
		t.Fatal("a replaced session's leave succeeded")
	}
	if !d.Leave(g, member(as[1], newest, t0.Add(2*time.Second)), t0) {
		t.Fatal("the newest session could not leave")
	}
	d.Leave(g, member(as[0], first, t0), t0)
	d.Leave(g, member(as[2], third, t0), t0)
	if _, _, ok := d.Members(g, 1); ok {
		t.Fatal("the group outlived its members")
	}
}

// A peer that joins through another node with a newer session is the
// member everywhere: announcements for it go to that node's handler.
func testNewestAcrossNodes(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	needNodes(t, nodes, 2)
	g := newGroup("key-across")
	as := addrs(2)
	t0 := time.Now()
	a, b := &handle{1}, &handle{2}
	nodes[0].Dir.Join(g, member(as[0], a, t0))
	waitMembers(t, nodes, g, 1)
	if res, _ := nodes[1].Dir.Join(g, member(as[0], b, t0.Add(time.Second))); res != membership.Replaced {
		t.Fatalf("newer session on another node: %v", res)
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("the newer session is the member on node %d", i), func() bool {
			ms, _, ok := n.Dir.Members(g, 1)
			return ok && len(ms) == 1 && ms[0].Since.Equal(t0.Add(time.Second))
		})
	}
	if nodes[0].Dir.Leave(g, member(as[0], a, t0), t0) {
		t.Fatal("the replaced session's leave succeeded")
	}
	c := &handle{3}
	nodes[0].Dir.Join(g, member(as[1], c, t0))
	recs[1].waitCount(t, 1, "the member told through its new node")
	if got := recs[1].take(); len(got) != 1 || got[0].local != b || got[0].a.Peer != member(as[1], nil, t0).Peer {
		t.Fatalf("deliveries on node 1: %+v", got)
	}
	if got := recs[0].take(); len(got) != 0 {
		t.Fatalf("the replaced session's node was handed %+v", got)
	}
	nodes[1].Dir.Leave(g, member(as[0], b, t0), t0)
	nodes[0].Dir.Leave(g, member(as[1], c, t0), t0)
	waitMembers(t, nodes, g, 0)
	settle(t, nodes, recs)
}

// A member that leaves (for whatever reason) is gone for GoneLifetime,
// with its group's developer key, on every node; a peer that never was a
// member is not, nor is one whose leave failed.
func testGone(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	g := newGroup("key-gone")
	as := addrs(2)
	t0 := time.Now()
	m := member(as[0], &handle{0}, t0)
	never := member(as[1], &handle{1}, t0)
	for i, n := range nodes {
		if _, ok := n.Dir.Gone(m.Peer, t0); ok {
			t.Fatalf("node %d: a peer that never joined is gone", i)
		}
	}
	nodes[0].Dir.Join(g, m)
	waitMembers(t, nodes, g, 1)
	if _, ok := nodes[0].Dir.Gone(m.Peer, t0); ok {
		t.Fatal("a member is gone")
	}
	if nodes[0].Dir.Leave(g, never, t0) {
		t.Fatal("a non-member left")
	}
	left := time.Now()
	if !nodes[0].Dir.Leave(g, m, left) {
		t.Fatal("leave failed")
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("the departed member gone on node %d", i), func() bool {
			k, ok := n.Dir.Gone(m.Peer, left.Add(time.Second))
			return ok && k == g.DevKey
		})
		if _, ok := n.Dir.Gone(never.Peer, left); ok {
			t.Fatalf("node %d: the peer whose leave failed is gone", i)
		}
		if _, ok := n.Dir.Gone(m.Peer, left.Add(membership.GoneLifetime+time.Second)); ok {
			t.Fatalf("node %d: still gone after GoneLifetime", i)
		}
	}
	settle(t, nodes, recs)
}

// The same group ID under two developer keys is two groups: members of
// one are never told about the other's.
func testKeys(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	ga := newGroup("key-a")
	gb := membership.GroupKey{DevKey: "key-b", ID: ga.ID}
	as := addrs(3)
	now := time.Now()
	ma, mb, mc := member(as[0], &handle{0}, now), member(as[1], &handle{1}, now), member(as[2], &handle{2}, now)
	nodes[0].Dir.Join(ga, ma)
	if _, n := nodes[len(nodes)-1].Dir.Join(gb, mb); n != 0 {
		t.Fatalf("the first member of key b's group caused %d announcements", n)
	}
	waitMembers(t, nodes, ga, 1)
	waitMembers(t, nodes, gb, 1)
	if _, n := nodes[0].Dir.Join(ga, mc); n != 1 {
		t.Fatalf("key a's second member: %d announcements", n)
	}
	recs[0].waitCount(t, 1, "key a's first member told")
	settleAndCheck := all(recs)
	if len(settleAndCheck) != 1 || settleAndCheck[0].local != ma.Local || settleAndCheck[0].a.Peer != mc.Peer {
		t.Fatalf("deliveries %+v", settleAndCheck)
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("two groups with the ID on node %d", i), func() bool {
			gs := n.Dir.Groups(ga.ID)
			return len(gs) == 2 && gs[0] == ga && gs[1] == gb
		})
	}
	nodes[0].Dir.Leave(ga, ma, now)
	nodes[0].Dir.Leave(ga, mc, now)
	nodes[len(nodes)-1].Dir.Leave(gb, mb, now)
	waitMembers(t, nodes, ga, 0)
	waitMembers(t, nodes, gb, 0)
	settle(t, nodes, recs)
}

// Totals, Keys and Members, with their limits (a negative limit lists
// nothing and does not fail).
func testAdminViews(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	key := fmt.Sprint("views-", time.Now().UnixNano())
	g1, g2 := newGroup(key), newGroup(key)
	as := addrs(5)
	t0 := time.Now().Truncate(time.Millisecond)
	var ms1, ms2 []membership.Member
	for i, a := range as[:3] {
		m := member(a, &handle{i}, t0.Add(time.Duration(i)*time.Second))
		ms1 = append(ms1, m)
	}
	for i, a := range as[3:] {
		ms2 = append(ms2, member(a, &handle{3 + i}, t0))
	}
	type totals struct{ groups, members int }
	base := make([]totals, len(nodes))
	for i, n := range nodes {
		base[i].groups, base[i].members = n.Dir.Totals()
	}
	joinAll(t, nodes, recs, g1, ms1)
	joinAll(t, nodes, recs, g2, ms2)
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("totals on node %d", i), func() bool {
			gs, mm := n.Dir.Totals()
			return gs == base[i].groups+2 && mm == base[i].members+5
		})
		var ks membership.KeySummary
		eventually(t, n.Dir, fmt.Sprintf("key summary on node %d", i), func() bool {
			for _, k := range n.Dir.Keys(1) {
				if k.DevKey == key {
					ks = k
					return k.GroupCount == 2 && k.Members == 5
				}
			}
			return false
		})
		if len(ks.Groups) != 1 || ks.Groups[0].ID != g1.ID || ks.Groups[0].Members != 3 || !ks.Groups[0].Since.Equal(t0) {
			t.Fatalf("node %d: Keys(1) lists %+v, want the larger group", i, ks.Groups)
		}
		for _, limit := range []int{0, -1} {
			for _, k := range n.Dir.Keys(limit) {
				if k.DevKey == key && (len(k.Groups) != 0 || k.GroupCount != 2) {
					t.Fatalf("node %d: Keys(%d) %+v", i, limit, k)
				}
			}
		}
		for _, k := range n.Dir.Keys(10) {
			if k.DevKey == key && (len(k.Groups) != 2 || k.Groups[0].ID != g1.ID) {
				t.Fatalf("node %d: Keys(10) %+v", i, k)
			}
		}
		got, sum, ok := n.Dir.Members(g1, 2)
		if !ok || sum.Members != 3 || sum.ID != g1.ID || !sum.Since.Equal(t0) || len(got) != 2 {
			t.Fatalf("node %d: Members(2) %+v %+v %v", i, got, sum, ok)
		}
		for j, m := range got {
			if m.Addr != as[j] || m.Peer != ms1[j].Peer || !m.Joined.Equal(ms1[j].Joined) || !m.Since.Equal(ms1[j].Since) || m.Local != nil {
				t.Fatalf("node %d: member %d %+v, want %+v without its handle", i, j, m, ms1[j])
			}
		}
		if got, sum, ok := n.Dir.Members(g1, -1); !ok || len(got) != 0 || sum.Members != 3 {
			t.Fatalf("node %d: Members(-1) %+v %+v %v", i, got, sum, ok)
		}
		if _, _, ok := n.Dir.Members(newGroup(key), 10); ok {
			t.Fatalf("node %d: an unknown group has members", i)
		}
	}
	for i, m := range ms1 {
		nodes[i%len(nodes)].Dir.Leave(g1, m, t0)
	}
	for i, m := range ms2 {
		nodes[i%len(nodes)].Dir.Leave(g2, m, t0)
	}
	waitMembers(t, nodes, g1, 0)
	waitMembers(t, nodes, g2, 0)
	settle(t, nodes, recs)
}

// Joins and leaves in a few groups from many goroutines (run with -race):
// every announcement is handed with its recipient's handle and names
// another peer, and in the end every node agrees that nothing is left.
func testConcurrent(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	key := fmt.Sprint("conc-", time.Now().UnixNano())
	groups := []membership.GroupKey{newGroup(key), newGroup(key), newGroup(key)}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := nodes[w%len(nodes)].Dir
			ms := make([]membership.Member, each)
			for i, a := range addrs(each) {
				ms[i] = member(a, &handle{w*each + i}, time.Now())
				if res, _ := d.Join(groups[i%len(groups)], ms[i]); res != membership.Joined {
					t.Errorf("join: %v", res)
				}
				d.Totals()
				d.Members(groups[i%len(groups)], 3)
			}
			for i, m := range ms {
				if !d.Leave(groups[i%len(groups)], m, time.Now()) {
					t.Errorf("own member not removed")
				}
				d.Keys(1)
			}
		}()
	}
	wg.Wait()
	for _, g := range groups {
		waitMembers(t, nodes, g, 0)
	}
	for i, r := range recs {
		for _, d := range r.take() {
			if d.local == nil || d.a.To.Local != d.local || bytes.Equal(d.a.To.Peer[:], d.a.Peer[:]) {
				t.Fatalf("node %d: delivery %+v", i, d)
			}
		}
	}
}
