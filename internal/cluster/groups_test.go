package cluster

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
)

// pair is an announcement: To is told about Peer.
type pair struct{ to, peer [32]byte }

// collector gathers the announcements made for every node's members.
type collector struct {
	mu    sync.Mutex
	pairs []pair
	dead  map[[32]byte]string
}

func (c *collector) add(plan []membership.Announcement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range plan {
		c.pairs = append(c.pairs, pair{a.To.Peer, a.Peer})
	}
}

func (c *collector) take() []pair {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.pairs
	c.pairs = nil
	return out
}

func sortPairs(p []pair) []pair {
	slices.SortFunc(p, func(a, b pair) int {
		if c := slices.Compare(a.to[:], b.to[:]); c != 0 {
			return c
		}
		return slices.Compare(a.peer[:], b.peer[:])
	})
	return p
}

// Members joining and leaving through three nodes are bootstrapped
// exactly as if they were on one server: with a deterministic policy
// (no random picks) and each change seen everywhere before the next, the
// announcements made for all nodes' members together are those a single
// server makes for the same changes. A node that dies takes its members
// out of every node's groups, and they are remembered as dead.
func TestGroupsAsOne(t *testing.T) {
	policy := membership.Policy{Successors: 4, Predecessors: 4}
	tc := startCluster(t, 3, func(i int, c *Config) { c.GroupPolicy = policy })
	col := &collector{dead: map[[32]byte]string{}}
	for _, h := range tc.handlers {
		f := func(plan []membership.Announcement, _ [32]byte) { col.add(plan) }
		h.announce.Store(&f)
		d := func(peer [32]byte, key string) {
			col.mu.Lock()
			col.dead[peer] = key
			col.mu.Unlock()
		}
		h.dead.Store(&d)
	}
	one := membership.NewLocal(policy) // the single server, for comparison
	g := membership.GroupKey{DevKey: "key", ID: sha256.Sum256([]byte("group"))}
	type member struct {
		m    membership.Member
		node int
	}
	var ms []member
	total := func(i int) int {
		_, sum, _ := tc.nodes[i].Groups().Members(g, 1000)
		return sum.Members
	}
	for i := range 15 {
		peer := sha256.Sum256([]byte(fmt.Sprintf("peer %d", i)))
		m := membership.Member{Peer: peer, Addr: flash.GroupAddress(peer), Joined: time.Now(), Local: &struct{ int }{i}}
		node := i % 3
		ms = append(ms, member{m, node})
		plan, ok := tc.nodes[node].Groups().Join(g, m, nil)
		if !ok {
			t.Fatal("join refused")
		}
		col.add(plan)
		want, _ := one.Join(g, m, nil)
		for n := range tc.nodes {
			testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d seeing %d members", n+1, i+1), func() bool { return total(n) == i+1 })
		}
		var wantPairs []pair
		for _, a := range want {
			wantPairs = append(wantPairs, pair{a.To.Peer, a.Peer})
		}
		// Every node delivered its part: wait until all of it is in.
		testutil.WaitUntil(t, 10*time.Second, "the announcements of join "+fmt.Sprint(i), func() bool {
			col.mu.Lock()
			defer col.mu.Unlock()
			return len(col.pairs) >= len(wantPairs)
		})
		if got := sortPairs(col.take()); !slices.Equal(got, sortPairs(wantPairs)) {
			t.Fatalf("join %d on node %d: announcements %d, a single server makes %d", i, node+1, len(got), len(wantPairs))
		}
	}
	// Leaves: the repair of each, made where the member that is told is.
	for _, i := range []int{3, 7} {
		m := ms[i]
		plan, ok := tc.nodes[m.node].Groups().Leave(g, m.m, nil)
		if !ok {
			t.Fatal("leave refused")
		}
		col.add(plan)
		want, _ := one.Leave(g, m.m, nil)
		testutil.WaitUntil(t, 10*time.Second, "the repair of a leave", func() bool {
			col.mu.Lock()
			defer col.mu.Unlock()
			return len(col.pairs) >= len(want)
		})
		got := sortPairs(col.take())
		if len(got) != len(want) || len(want) != 1 || got[0] != (pair{want[0].To.Peer, want[0].Peer}) {
			t.Fatalf("leave of member %d: repair %v, a single server's %v", i, got, want)
		}
	}
	// Node 3 dies: its members are out of every group on nodes 1 and 2,
	// and remembered as dead there.
	left := 13
	for _, m := range ms {
		if m.node == 2 && m.m.Peer != ms[3].m.Peer && m.m.Peer != ms[7].m.Peer {
			left--
		}
	}
	tc.nodes[2].Kill()
	for n := range 2 {
		testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d seeing %d members", n+1, left), func() bool { return total(n) == left })
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, m := range ms {
		if m.node == 2 && col.dead[m.m.Peer] != "key" {
			t.Fatalf("member %x of the dead node not remembered as dead", m.m.Peer[:4])
		}
	}
	if len(col.pairs) == 0 {
		t.Fatal("no repair after the node died")
	}
}
