// Package directorytest is the conformance suite every directory.Directory
// passes: the single server's Local and the cluster's directory run the
// same tests, so the rendezvous server cannot tell them apart except that
// a cluster knows more peers.
package directorytest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
)

// Node is one directory under test, with its node name (what Peer.Node
// says for the peers it holds).
type Node struct {
	Name string
	Dir  directory.Directory
}

// Factory builds n directories that share one world (the nodes of one
// cluster), handing introductions and relays for their own peers to
// handlers[i]. A single-server implementation returns one node whatever n
// is; the tests that need several nodes then skip.
type Factory func(t *testing.T, handlers []directory.Handler) []Node

// Notifier is implemented by directories that change in the background
// (peers other nodes hold): Changed is closed at the next change. The
// suite waits on it instead of polling.
type Notifier interface {
	Changed() <-chan struct{}
}

// Timeout bounds every wait for a change to reach the other nodes.
var Timeout = 15 * time.Second

// Run runs the suite.
func Run(t *testing.T, newNodes Factory) {
	t.Run("PutLookupRemove", func(t *testing.T) { testPutLookupRemove(t, newNodes) })
	t.Run("NewestSessionWins", func(t *testing.T) { testNewestWins(t, newNodes) })
	t.Run("OlderSessionFoundAgain", func(t *testing.T) { testOlderFoundAgain(t, newNodes) })
	t.Run("NewestAcrossNodes", func(t *testing.T) { testNewestAcrossNodes(t, newNodes) })
	t.Run("RemoteSessions", func(t *testing.T) { testRemoteSessions(t, newNodes) })
	t.Run("Introduce", func(t *testing.T) { testIntroduce(t, newNodes) })
	t.Run("Relay", func(t *testing.T) { testRelay(t, newNodes) })
	t.Run("Range", func(t *testing.T) { testRange(t, newNodes) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newNodes) })
}

// recorder is a Handler that records what it is asked and answers relays
// with err.
type recorder struct {
	mu     sync.Mutex
	intros []intro
	relays []relay
	err    error
	got    chan struct{}
}

type intro struct {
	local any
	in    directory.Introduction
}

type relay struct {
	local any
	r     directory.Relay
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1024)} }

func (r *recorder) Introduce(local any, in directory.Introduction) {
	r.mu.Lock()
	r.intros = append(r.intros, intro{local, in})
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *recorder) Relay(local any, rl directory.Relay) error {
	r.mu.Lock()
	r.relays = append(r.relays, relay{local, rl})
	err := r.err
	r.mu.Unlock()
	r.got <- struct{}{}
	return err
}

func setup(t *testing.T, newNodes Factory, n int) ([]Node, []*recorder) {
	t.Helper()
	recs := make([]*recorder, n)
	hs := make([]directory.Handler, n)
	for i := range recs {
		recs[i] = newRecorder()
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

// handle is a session handle, distinct per value.
type handle struct{ n int }

var idSeq struct {
	sync.Mutex
	n uint64
}

func newID() [32]byte {
	idSeq.Lock()
	idSeq.n++
	n := idSeq.n
	idSeq.Unlock()
	var id [32]byte
	copy(id[:], fmt.Sprintf("directorytest-%016x", n))
	id[31] = byte(time.Now().UnixNano())
	return id
}

func peer(id [32]byte, key string, local any, since time.Time, addrs ...string) directory.Peer {
	p := directory.Peer{ID: id, Key: key, Local: local, Since: since,
		Observed: netip.MustParseAddrPort("198.51.100.7:40000")}
	for _, a := range addrs {
		p.Addrs = append(p.Addrs, netip.MustParseAddrPort(a))
	}
	return p
}

// eventually waits until cond holds on node d, woken by its changes.
func eventually(t *testing.T, d directory.Directory, what string, cond func() bool) {
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

// same reports whether got describes the session want, as seen from a
// node (local says whether that node holds it).
func same(got, want directory.Peer, node string, local bool) bool {
	if got.ID != want.ID || got.Key != want.Key || got.Observed != want.Observed || !slices.Equal(got.Addrs, want.Addrs) ||
		!got.Since.Equal(want.Since) || got.Node != node {
		return false
	}
	if local {
		return got.Local == want.Local
	}
	return got.Local == nil
}

func testPutLookupRemove(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 3)
	owner := nodes[0]
	id := newID()
	if _, ok := owner.Dir.Lookup(id); ok {
		t.Fatal("an unknown peer was found")
	}
	if owner.Dir.Remove(id, &handle{}) {
		t.Fatal("removing an unknown peer reported success")
	}
	h := &handle{1}
	p := peer(id, "key-a", h, time.Now(), "192.168.1.10:5000")
	owner.Dir.Put(p)
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("peer visible on node %d", i), func() bool {
			got, ok := n.Dir.Lookup(id)
			return ok && same(got, p, owner.Name, i == 0)
		})
	}
	// setPeerInfo and a new observed address update the record.
	p.Addrs = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:5000"), netip.MustParseAddrPort("[2001:db8::5]:5000")}
	p.Observed = netip.MustParseAddrPort("198.51.100.7:40001")
	owner.Dir.Put(p)
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("update visible on node %d", i), func() bool {
			got, ok := n.Dir.Lookup(id)
			return ok && same(got, p, owner.Name, i == 0)
		})
	}
	if owner.Dir.Remove(id, &handle{1}) {
		t.Fatal("another handle removed the peer")
	}
	if !owner.Dir.Remove(id, h) {
		t.Fatal("the peer's own handle did not remove it")
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("peer gone on node %d", i), func() bool {
			_, ok := n.Dir.Lookup(id)
			return !ok
		})
	}
}

func testNewestWins(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 2)
	d := nodes[0].Dir
	id := newID()
	old, cur := &handle{1}, &handle{2}
	t0 := time.Now()
	d.Put(peer(id, "k", old, t0, "10.0.0.1:1"))
	d.Put(peer(id, "k", cur, t0.Add(time.Second), "10.0.0.2:2"))
	// The replaced session's setPeerInfo does not bring it back.
	d.Put(peer(id, "k", old, t0, "10.0.0.3:3"))
	got, ok := d.Lookup(id)
	if !ok || got.Local != cur || got.Addrs[0].String() != "10.0.0.2:2" {
		t.Fatalf("lookup %+v %v, want the newer session", got, ok)
	}
	if d.Remove(id, old) {
		t.Fatal("the replaced session removed its successor")
	}
	if got, ok := d.Lookup(id); !ok || got.Local != cur {
		t.Fatal("the newer session is gone")
	}
	if !d.Remove(id, cur) {
		t.Fatal("remove failed")
	}
	if len(nodes) > 1 {
		eventually(t, nodes[1].Dir, "peer gone on the other node", func() bool {
			_, ok := nodes[1].Dir.Lookup(id)
			return !ok
		})
	}
	if _, ok := d.Lookup(id); ok {
		t.Fatal("peer still there")
	}
}

// Two sessions of one peer ID on one node (it reconnected before its old
// session timed out): the newer is the peer; when it goes, the older one,
// still open and with the addresses it last reported, is the peer again
// everywhere; a third session that comes in older than the peer waits
// behind it. (A directory that deleted the peer with its newest session
// lost a connected client.)
func testOlderFoundAgain(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 2)
	d := nodes[0].Dir
	id := newID()
	t0 := time.Now()
	old, cur, between := &handle{1}, &handle{2}, &handle{3}
	d.Put(peer(id, "k", old, t0, "10.0.0.1:1"))
	d.Put(peer(id, "k", cur, t0.Add(2*time.Second), "10.0.0.2:2"))
	d.Put(peer(id, "k", between, t0.Add(time.Second), "10.0.0.4:4"))
	pOld := peer(id, "k", old, t0, "10.0.0.3:3") // the older session's setPeerInfo
	d.Put(pOld)
	if got, ok := d.Lookup(id); !ok || got.Local != cur {
		t.Fatalf("lookup %+v %v, want the newest session", got, ok)
	}
	if d.Remove(id, between) {
		t.Fatal("removing a session that is not the peer reported it was")
	}
	if !d.Remove(id, cur) {
		t.Fatal("the newest session's remove failed")
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("the older session found again on node %d", i), func() bool {
			got, ok := n.Dir.Lookup(id)
			return ok && same(got, pOld, nodes[0].Name, i == 0)
		})
	}
	n := 0
	d.Range(func(p directory.Peer) bool {
		if p.ID == id {
			n++
		}
		return true
	})
	if n != 1 {
		t.Fatalf("Range lists the peer %d times", n)
	}
	if !d.Remove(id, old) {
		t.Fatal("the older session's remove failed")
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("peer gone on node %d", i), func() bool {
			_, ok := n.Dir.Lookup(id)
			return !ok
		})
	}
}

// A peer that reconnects to another node: the newer session is the peer
// everywhere; when it goes, the older one (still open) is found again.
func testNewestAcrossNodes(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 3)
	needNodes(t, nodes, 2)
	id := newID()
	t0 := time.Now()
	a, b := &handle{1}, &handle{2}
	pa := peer(id, "k", a, t0, "10.0.0.1:1")
	pb := peer(id, "k", b, t0.Add(time.Second), "10.0.0.2:2")
	nodes[0].Dir.Put(pa)
	eventually(t, nodes[1].Dir, "first session seen", func() bool {
		_, ok := nodes[1].Dir.Lookup(id)
		return ok
	})
	nodes[1].Dir.Put(pb)
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("newer session wins on node %d", i), func() bool {
			got, ok := n.Dir.Lookup(id)
			return ok && same(got, pb, nodes[1].Name, i == 1)
		})
	}
	nodes[1].Dir.Remove(id, b)
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("older session found again on node %d", i), func() bool {
			got, ok := n.Dir.Lookup(id)
			return ok && same(got, pa, nodes[0].Name, i == 0)
		})
	}
	nodes[0].Dir.Remove(id, a)
}

func testRemoteSessions(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 2)
	d := nodes[0].Dir
	key := fmt.Sprintf("key-%x", newID())
	var ids [][32]byte
	var hs []*handle
	for i := range 3 {
		id, h := newID(), &handle{i}
		ids, hs = append(ids, id), append(hs, h)
		d.Put(peer(id, key, h, time.Now()))
	}
	other := newID()
	d.Put(peer(other, key+"-other", &handle{9}, time.Now()))
	if n := d.RemoteSessions(key); n != 0 {
		t.Fatalf("the holding node counts %d of its own sessions as remote", n)
	}
	if len(nodes) > 1 {
		eventually(t, nodes[1].Dir, "3 remote sessions of the key", func() bool { return nodes[1].Dir.RemoteSessions(key) == 3 })
	}
	for i := range ids {
		d.Remove(ids[i], hs[i])
	}
	d.Remove(other, &handle{9}) // not its handle: stays
	if len(nodes) > 1 {
		eventually(t, nodes[1].Dir, "no remote session of the key", func() bool { return nodes[1].Dir.RemoteSessions(key) == 0 })
		if n := nodes[1].Dir.RemoteSessions(key + "-other"); n != 1 {
			t.Fatalf("other key: %d remote sessions, want 1", n)
		}
	}
}

func waitCall(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(Timeout):
		t.Fatal("the holding node's handler was not called")
	}
}

func testIntroduce(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	asker := nodes[len(nodes)-1] // another node when there is one
	id, h := newID(), &handle{7}
	nodes[0].Dir.Put(peer(id, "k", h, time.Now(), "10.1.1.1:1935"))
	var p directory.Peer
	eventually(t, asker.Dir, "peer visible to the asking node", func() bool {
		var ok bool
		p, ok = asker.Dir.Lookup(id)
		return ok
	})
	in := directory.Introduction{Target: id, EPD: []byte{0x0f, 0x21, 0x01}, Tag: bytes.Repeat([]byte{0xab}, 16),
		Reply: []directory.Address{{AddrPort: netip.MustParseAddrPort("203.0.113.9:6000"), Origin: 2},
			{AddrPort: netip.MustParseAddrPort("[2001:db8::9]:6000"), Origin: 1}}}
	asker.Dir.Introduce(p, in)
	waitCall(t, recs[0])
	recs[0].mu.Lock()
	defer recs[0].mu.Unlock()
	if len(recs[0].intros) != 1 {
		t.Fatalf("%d introductions delivered", len(recs[0].intros))
	}
	got := recs[0].intros[0]
	if got.local != h || got.in.Target != id || !bytes.Equal(got.in.EPD, in.EPD) || !bytes.Equal(got.in.Tag, in.Tag) || !slices.Equal(got.in.Reply, in.Reply) {
		t.Fatalf("delivered %+v to %v, want %+v to %v", got.in, got.local, in, h)
	}
	for i, r := range recs[1:] {
		if len(r.intros) != 0 {
			t.Fatalf("node %d, which does not hold the peer, was asked to introduce", i+1)
		}
	}
}

func testRelay(t *testing.T, newNodes Factory) {
	nodes, recs := setup(t, newNodes, 2)
	asker := nodes[len(nodes)-1]
	id, h := newID(), &handle{3}
	nodes[0].Dir.Put(peer(id, "k", h, time.Now()))
	var p directory.Peer
	eventually(t, asker.Dir, "peer visible to the asking node", func() bool {
		var ok bool
		p, ok = asker.Dir.Lookup(id)
		return ok
	})
	result := make(chan error, 1)
	relayOnce := func(msg string) error {
		t.Helper()
		asker.Dir.Relay(p, directory.Relay{Target: id, Key: "k", Msg: []byte(msg)}, func(err error) { result <- err })
		select {
		case err := <-result:
			return err
		case <-time.After(Timeout):
			t.Fatal("relay never finished")
			return nil
		}
	}
	if err := relayOnce("hello"); err != nil {
		t.Fatalf("relay: %v", err)
	}
	recs[0].mu.Lock()
	if len(recs[0].relays) != 1 || recs[0].relays[0].local != h || string(recs[0].relays[0].r.Msg) != "hello" || recs[0].relays[0].r.Key != "k" {
		t.Fatalf("delivered %+v", recs[0].relays)
	}
	recs[0].err = directory.ErrBehind
	recs[0].mu.Unlock()
	if err := relayOnce("again"); !errors.Is(err, directory.ErrBehind) {
		t.Fatalf("relay to a peer that is behind: %v, want ErrBehind", err)
	}
	// The peer leaves; a relay with the stale record fails with ErrGone.
	nodes[0].Dir.Remove(id, h)
	if err := relayOnce("late"); !errors.Is(err, directory.ErrGone) {
		t.Fatalf("relay to a peer that left: %v, want ErrGone", err)
	}
}

func testRange(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 2)
	key := fmt.Sprintf("range-%x", newID())
	want := map[[32]byte]bool{}
	for i := range 5 {
		id := newID()
		want[id] = true
		nodes[i%len(nodes)].Dir.Put(peer(id, key, &handle{i}, time.Now()))
	}
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("all peers listed on node %d", i), func() bool {
			seen := 0
			n.Dir.Range(func(p directory.Peer) bool {
				if p.Key == key && want[p.ID] {
					seen++
				}
				return true
			})
			return seen == len(want)
		})
	}
	stops := 0
	nodes[0].Dir.Range(func(directory.Peer) bool { stops++; return false })
	if stops != 1 {
		t.Fatalf("Range went on after false (%d calls)", stops)
	}
}

// Puts, updates, lookups and removes from many goroutines (run with
// -race); in the end every node agrees that nothing is left.
func testConcurrent(t *testing.T, newNodes Factory) {
	nodes, _ := setup(t, newNodes, 2)
	key := fmt.Sprintf("conc-%x", newID())
	var wg sync.WaitGroup
	const workers, each = 8, 50
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := nodes[w%len(nodes)].Dir
			for i := range each {
				id, h := newID(), &handle{i}
				p := peer(id, key, h, time.Now())
				d.Put(p)
				p.Addrs = []netip.AddrPort{netip.MustParseAddrPort("10.9.9.9:9")}
				d.Put(p)
				if got, ok := d.Lookup(id); !ok || got.Local != h {
					t.Errorf("own peer not found at once")
				}
				d.Range(func(directory.Peer) bool { return false })
				if !d.Remove(id, h) {
					t.Errorf("own peer not removed")
				}
			}
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		eventually(t, n.Dir, fmt.Sprintf("nothing left on node %d", i), func() bool {
			left := 0
			n.Dir.Range(func(p directory.Peer) bool {
				if p.Key == key {
					left++
				}
				return true
			})
			return left == 0 && n.Dir.RemoteSessions(key) == 0
		})
	}
}
