package cluster

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/membership/membershiptest"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
)

// The cluster's NetGroup directory passes the same conformance suite as a
// single server's, on a 3-node cluster and on a lone node.
func TestGroupConformance(t *testing.T) {
	leak := goleak.IgnoreCurrent()
	for _, n := range []int{3, 1} {
		t.Run(map[int]string{1: "1node", 3: "3nodes"}[n], func(t *testing.T) {
			tc := startCluster(t, n, nil)
			membershiptest.Run(t, func(t *testing.T, hs []membership.Handler) []membershiptest.Node {
				var out []membershiptest.Node
				for i, nd := range tc.nodes[:min(len(hs), len(tc.nodes))] {
					tc.handlers[i].setGroup(hs[i])
					out = append(out, membershiptest.Node{Name: nd.Name(), Dir: nd.Groups()})
				}
				return out
			})
		})
	}
	goleak.VerifyNone(t, leak)
}

// pair is an announcement: To is told about Peer.
type pair struct{ to, peer [32]byte }

// pairs gathers the announcements handed to a server's members (every
// node's, or the single server's).
type pairs struct {
	mu  sync.Mutex
	got []pair
}

func (c *pairs) Announce(_ any, a membership.Announcement) {
	c.mu.Lock()
	c.got = append(c.got, pair{a.To.Peer, a.Peer})
	c.mu.Unlock()
}

func (c *pairs) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// take returns and forgets what was gathered, sorted.
func (c *pairs) take() []pair {
	c.mu.Lock()
	out := c.got
	c.got = nil
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b pair) int {
		if c := slices.Compare(a.to[:], b.to[:]); c != 0 {
			return c
		}
		return slices.Compare(a.peer[:], b.peer[:])
	})
	return out
}

// Members joining and leaving through three nodes are bootstrapped
// exactly as if they were on one server: with a deterministic policy
// (no random picks) and each change seen everywhere before the next, the
// announcements made for all nodes' members together are those a single
// server makes for the same changes, for groups of any size (the
// conformance suite's groups are small or checked one join at a time). A
// node that dies takes its members out of every node's groups, the
// repairs reach the members that remain, and the other nodes answer
// lookups of its members as gone.
func TestGroupsAsOne(t *testing.T) {
	policy := membership.Policy{Successors: 4, Predecessors: 4}
	tc := startCluster(t, 3, func(i int, c *Config) { c.GroupPolicy = policy })
	col := &pairs{}
	for _, h := range tc.handlers {
		h.setGroup(col)
	}
	single := &pairs{}
	one := membership.NewLocal(policy, single) // the single server, for comparison
	g := membership.GroupKey{DevKey: "key", ID: sha256.Sum256([]byte("group"))}
	type member struct {
		m    membership.Member
		node int
	}
	var ms []member
	total := func(i int) int {
		_, sum, _ := tc.nodes[i].Groups().Members(g, 0)
		return sum.Members
	}
	expect := func(what string) {
		t.Helper()
		want := single.take()
		testutil.WaitUntil(t, 10*time.Second, "the announcements of "+what, func() bool { return col.len() >= len(want) })
		if got := col.take(); !slices.Equal(got, want) {
			t.Fatalf("%s: %d announcements, a single server makes %d", what, len(got), len(want))
		}
	}
	now := time.Now()
	for i := range 15 {
		peer := sha256.Sum256(fmt.Appendf(nil, "peer %d", i))
		m := membership.Member{Peer: peer, Addr: flash.GroupAddress(peer), Joined: now, Since: now, Local: &struct{ int }{i}}
		node := i % 3
		ms = append(ms, member{m, node})
		if res, _ := tc.nodes[node].Groups().Join(g, m); res != membership.Joined {
			t.Fatalf("join: %v", res)
		}
		one.Join(g, m)
		for n := range tc.nodes {
			testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d seeing %d members", n+1, i+1), func() bool { return total(n) == i+1 })
		}
		expect(fmt.Sprintf("join %d on node %d", i, node+1))
	}
	// Leaves: the repair of each, made where the member that is told is.
	for _, i := range []int{3, 7} {
		m := ms[i]
		if !tc.nodes[m.node].Groups().Leave(g, m.m, now) {
			t.Fatal("leave refused")
		}
		one.Leave(g, m.m, now)
		expect(fmt.Sprintf("the leave of member %d", i))
	}
	// Node 3 dies: its members are out of every group on nodes 1 and 2,
	// and gone there.
	left := 13
	for _, m := range ms {
		if m.node == 2 && m.m.Peer != ms[3].m.Peer && m.m.Peer != ms[7].m.Peer {
			left--
		}
	}
	tc.nodes[2].Kill()
	for n := range 2 {
		testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d seeing %d members", n+1, left), func() bool { return total(n) == left })
		for _, m := range ms {
			if key, gone := tc.nodes[n].Groups().Gone(m.m.Peer, time.Now()); m.node == 2 && (!gone || key != "key") {
				t.Fatalf("node %d: member %x of the dead node not gone", n+1, m.m.Peer[:4])
			}
		}
	}
	if col.len() == 0 {
		t.Fatal("no repair after the node died")
	}
}
