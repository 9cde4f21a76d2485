package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// clusterMembers is the group's size as node srv sees it.
func clusterMembers(t *testing.T, srv *servertest.Server, key string) int {
	n, _ := members(t, srv, testGroupID, key)
	return n
}

// One NetGroup whose members connect to three nodes: every node lists all
// of them; every pair of ring neighbours (in group-address order, over
// all nodes) is introduced and meets peer to peer through the cluster's
// introductions; when node 3 dies its members leave the group on nodes 1
// and 2, the ring is repaired there, and a lookup of one of them is told
// it is gone.
func TestClusterGroups(t *testing.T) {
	tc := startTestCluster(t, 3, func(i int, _ netip.AddrPort, c *server.Config) { c.Open = true })
	const n = 12
	h := newHub()
	type member struct {
		c    *groupClient
		node int
		f    *engine.SendFlow
	}
	var mu sync.Mutex
	met := map[[2][32]byte]bool{} // pairs that made a peer session
	var failures []error
	dials := 0
	ms := make([]*member, n)
	for i := range ms {
		node := i % 3
		m := &member{c: newGroupClient(t, h, tc.addrs[node], "live"), node: node}
		ms[i] = m
		m.c.onMember = func(peer [32]byte) {
			mu.Lock()
			dials++
			mu.Unlock()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err := m.c.e.Connect(ctx, handshake.FingerprintEPD(peer), engine.ConnectOptions{Reuse: true}, tc.addrs[m.node])
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Errorf("node %d member to %x: %w", m.node+1, peer[:4], err))
				} else {
					met[pairOf(m.c.peerID(), peer)] = true
				}
				dials--
				mu.Unlock()
				h.Signal()
			}()
		}
	}
	for _, m := range ms {
		m.f = m.c.join(testGroupID)
	}
	for i, s := range tc.srvs {
		testutil.WaitUntil(t, 20*time.Second, fmt.Sprintf("node %d listing all %d members", i+1, n), func() bool { return clusterMembers(t, s, "live") == n })
	}
	// The ring over every node's members: each neighbour pair met.
	ring := make([][32]byte, n)
	for i, m := range ms {
		ring[i] = m.c.peerID()
	}
	slices.SortFunc(ring, func(a, b [32]byte) int {
		x, y := flash.GroupAddress(a), flash.GroupAddress(b)
		return bytes.Compare(x[:], y[:])
	})
	h.WaitUntil(t, "every ring neighbour pair met peer to peer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range ring {
			if !met[pairOf(ring[i], ring[(i+1)%n])] {
				return false
			}
		}
		return dials == 0
	})
	mu.Lock()
	if len(failures) > 0 {
		t.Fatalf("%d dials failed: %v", len(failures), failures[0])
	}
	acrossNodes := 0
	node := map[[32]byte]int{}
	for _, m := range ms {
		node[m.c.peerID()] = m.node
	}
	for p := range met {
		if node[p[0]] != node[p[1]] {
			acrossNodes++
		}
	}
	t.Logf("%d members on 3 nodes: %d peer sessions, %d of them across nodes", n, len(met), acrossNodes)
	mu.Unlock()

	// Node 3 dies: its members leave the group on nodes 1 and 2, which
	// repair their ring and answer lookups of them with "gone".
	var gone [32]byte
	before := 0
	for _, m := range ms {
		if m.node == 2 {
			gone = m.c.peerID()
		} else {
			before += m.c.total()
		}
	}
	tc.crash(2)
	for i := range 2 {
		testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d listing the %d members left", i+1, n-n/3), func() bool {
			return clusterMembers(t, tc.srvs[i], "live") == n-n/3
		})
	}
	h.WaitUntil(t, "repair announcements on nodes 1 and 2", func() bool {
		after := 0
		for _, m := range ms {
			if m.node != 2 {
				after += m.c.total()
			}
		}
		return after > before
	})
	addrs, ok := lookupAnswer(t, tc.addrs[0], gone)
	if !ok || len(addrs) != 1 || addrs[0].AddrPort != netip.AddrPortFrom(netip.IPv4Unspecified(), 0) || addrs[0].Origin != wire.OriginUnknown {
		t.Fatalf("lookup on node 1 of a member of the dead node 3: %v %v", addrs, ok)
	}
}

func pairOf(a, b [32]byte) [2][32]byte {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return [2][32]byte{a, b}
}
