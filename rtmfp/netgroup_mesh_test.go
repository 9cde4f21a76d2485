package rtmfp_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// 20 members over loopback UDP with the real server: they form one
// overlay with the ring closed (each member's predecessor and successor
// are neighbours) within a bounded time, neighbour sets stay within their
// bound, a post reaches every other member exactly once, a member that
// leaves is replaced in its neighbours' sets, and sendToNearest reaches
// the member nearest an address.
func TestGroupOverlayOf20(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	const n, maxNeighbors = 20, 8
	ms, h := startMembers(t, url, n, groupOpts{spec: testSpec, maxNeighbors: maxNeighbors})
	took := h.waitAll(t, "one connected overlay", 30*time.Second, func(*string) bool { return overlayConnected(ms) })
	t.Logf("%d members: connected overlay after %v", n, took)
	took = h.waitAll(t, "the ring closed", 30*time.Second, func(why *string) bool { return ringClosed(ms, 3, why) })
	t.Logf("every member has its 3 nearest on each side of the ring after %v more", took)
	for i, m := range ms {
		if c := m.ng.NeighborCount(); c < 2 || c > maxNeighbors {
			t.Errorf("member %d has %d neighbours", i, c)
		}
		if est := m.ng.EstimatedMemberCount(); est < 5 || est > 200 {
			t.Errorf("member %d estimates %v members", i, est)
		}
	}

	all := slices.Clone(ms) // ms[5] leaves below
	var postID string
	t.Run("post reaches everyone once", func(t *testing.T) {
		id, err := ms[3].ng.Post("hello, 19 others")
		postID = id
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			if i == 3 {
				continue
			}
			m.waitFor(t, fmt.Sprintf("member %d has the post", i), 10*time.Second, func(m *member) bool { return m.posts[id] > 0 })
		}
		// Every member forwards a new post to all its neighbours, so most
		// receive it several times: once delivered, the rest dropped.
		dups := uint64(0)
		for _, m := range ms {
			dups += m.ng.Stats().PostsDuplicate
		}
		if dups == 0 {
			t.Error("no duplicate suppressed: the flood did not flood")
		}
	})
	t.Run("sendToNearest", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 1))
		for k := range 10 {
			var b [32]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			addr := fmt.Sprintf("%x", b)
			if k == 0 {
				addr = ms[7].ng.LocalAddress() // exactly a member's address
			}
			from := ms[r.IntN(n)]
			to := nearestTo(ms, addr)
			msg := fmt.Sprintf("to the nearest of %s", addr[:8])
			if res := from.ng.SendToNearest(msg, addr); res != rtmfp.SendSent {
				t.Fatalf("SendToNearest: %s", res)
			}
			to.waitFor(t, "the routed message at the nearest member", 10*time.Second, func(m *member) bool {
				for _, st := range m.sendTo {
					if v, _ := st.Info.Get("message"); v == msg {
						local, _ := st.Info.Get("fromLocal")
						if local != (from == to) {
							t.Errorf("fromLocal %v, sent by the destination itself: %v", local, from == to)
						}
						return true
					}
				}
				return false
			})
		}
	})

	t.Run("a member that leaves is replaced", func(t *testing.T) {
		gone := ms[5]
		goneID := gone.nc.NearID()
		before := map[*member]map[string]bool{}
		for _, m := range ms {
			nbs := map[string]bool{}
			for _, nb := range m.ng.Neighbors() {
				nbs[nb.PeerID] = true
			}
			if nbs[goneID] {
				before[m] = nbs
			}
		}
		if len(before) == 0 {
			t.Fatal("member 5 had no neighbours")
		}
		start := time.Now()
		gone.ng.Close()
		gone.nc.Close()
		ms[5] = nil // (closed again at the end: a no-op)
		// The members that had it among their 3 nearest on a side of the
		// ring now have the next one there instead: the ring is whole
		// again without it.
		h.waitAll(t, "the departed member replaced", 30*time.Second, func(why *string) bool {
			for m := range before {
				for _, nb := range m.ng.Neighbors() {
					if nb.PeerID == goneID {
						*why = "the departed member is still a neighbour"
						return false
					}
				}
			}
			return ringClosed(ms, 3, why)
		})
		replaced := 0
		for m, old := range before {
			for _, nb := range m.ng.Neighbors() {
				if !old[nb.PeerID] {
					replaced++
					break
				}
			}
			m.mu.Lock()
			if m.left[goneID] != 1 {
				t.Errorf("%d Neighbor.Disconnect for the departed member", m.left[goneID])
			}
			m.mu.Unlock()
		}
		if replaced == 0 {
			t.Fatal("no former neighbour took a new neighbour")
		}
		t.Logf("%d of its %d neighbours took a new one, ring whole again, %v after it left", replaced, len(before), time.Since(start))
	})

	// Exactly once, checked now that every copy of the post has long
	// arrived (the subtests above took seconds).
	if postID == "" {
		return
	}
	for i, m := range all {
		m.mu.Lock()
		c, msg := m.posts[postID], m.postMsgs[postID]
		m.mu.Unlock()
		if want := map[bool]int{true: 0, false: 1}[i == 3]; c != want || c == 1 && msg != "hello, 19 others" {
			t.Errorf("member %d: post delivered %d times (%v)", i, c, msg)
		}
	}
}

// With 10% of the datagrams lost in each direction on every member's
// socket, every post still reaches every other member exactly once.
func TestGroupPostsUnderLoss(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	const n = 10
	start := time.Now()
	ms, h := startMembers(t, url, n, groupOpts{spec: testSpec, loss: 0.10})
	t.Logf("connected and joined in %v", time.Since(start))
	took := h.waitAll(t, "one connected overlay", 60*time.Second, func(*string) bool { return overlayConnected(ms) })
	t.Logf("overlay after %v more", took)
	start = time.Now()
	ids := map[string]int{} // message ID → poster
	for k := range 10 {
		from := k % 5
		id, err := ms[from].ng.Post(fmt.Sprintf("lossy post %d", k))
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = from
	}
	for i, m := range ms {
		m.waitFor(t, fmt.Sprintf("member %d has every post", i), 60*time.Second, func(m *member) bool {
			for id, from := range ids {
				if from != i && m.posts[id] == 0 {
					return false
				}
			}
			return true
		})
	}
	t.Logf("all posts everywhere after %v", time.Since(start))
	for i, m := range ms {
		m.mu.Lock()
		for id, from := range ids {
			if want := map[bool]int{true: 0, false: 1}[from == i]; m.posts[id] != want {
				t.Errorf("member %d got post %s… %d times", i, id[:8], m.posts[id])
			}
		}
		m.mu.Unlock()
	}
}
