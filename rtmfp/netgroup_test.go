package rtmfp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

const testSpec = "G:027f02010101000103010c050e74657374011b00"

// groupEvent waits for a status code on a group, failing on timeout.
func groupEvent(t *testing.T, ng *rtmfp.NetGroup, code string, within time.Duration) rtmfp.Status {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case st := <-ng.Status():
			if st.Code == code {
				return st
			}
		case <-timeout:
			t.Fatalf("no %s within %v", code, within)
		}
	}
}

func join(t *testing.T, nc *rtmfp.NetConnection, spec string) *rtmfp.NetGroup {
	t.Helper()
	ng, err := rtmfp.NewNetGroup(nc, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Close() })
	return ng
}

func TestGroupTwoMembersPost(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	a, b := dial(t, url), dial(t, url)
	ga, gb := join(t, a, testSpec), join(t, b, testSpec)
	groupEvent(t, ga, rtmfp.GroupConnectSuccess, 20*time.Second)
	groupEvent(t, gb, rtmfp.GroupConnectSuccess, 20*time.Second)
	if !ga.AddNeighbor(b.NearID()) {
		t.Fatal("AddNeighbor")
	}
	st := groupEvent(t, ga, rtmfp.GroupNeighborConnect, 30*time.Second)
	if p, _ := st.Info.GetString("peerID"); p != b.NearID() {
		t.Fatalf("neighbour %s", p)
	}
	groupEvent(t, gb, rtmfp.GroupNeighborConnect, 30*time.Second)
	id, err := ga.Post("hello")
	if err != nil {
		t.Fatal(err)
	}
	st = groupEvent(t, gb, rtmfp.GroupPostingNotify, 10*time.Second)
	if m, _ := st.Info.GetString("message"); m != "hello" {
		t.Fatalf("message %q", m)
	}
	if got, _ := st.Info.GetString("messageID"); got != id {
		t.Fatalf("messageID %s, posted %s", got, id)
	}
}

// sendToNeighbor reaches the next member up or down the ring,
// sendToAllNeighbors every neighbour; group neighbours do not count
// against maxPeerConnections, which is for direct streams.
func TestGroupNeighborMessages(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	ms, h := startMembers(t, url, 5, groupOpts{spec: testSpec, bootstrap: true})
	for _, m := range ms {
		m.nc.MaxPeerConnections = 1
	}
	h.waitAll(t, "everyone connected to everyone", 20*time.Second, func(*string) bool {
		for _, m := range ms {
			if m.ng.NeighborCount() != 4 {
				return false
			}
		}
		return overlayConnected(ms)
	})
	for _, m := range ms {
		if m.nc.PeerConnections() != 0 {
			t.Fatalf("%d direct peer connections counted", m.nc.PeerConnections())
		}
	}
	got := func(m *member, msg string) func(*member) bool {
		return func(*member) bool {
			for _, st := range m.sendTo {
				if v, _ := st.Info.Get("message"); v == msg {
					return true
				}
			}
			return false
		}
	}
	ring := ringOrder(ms)
	from := ring[2]
	if res := from.ng.SendToNeighbor("up", rtmfp.NextIncreasing); res != rtmfp.SendSent {
		t.Fatal(res)
	}
	if res := from.ng.SendToNeighbor("down", rtmfp.NextDecreasing); res != rtmfp.SendSent {
		t.Fatal(res)
	}
	ring[3].waitFor(t, "the message up the ring", 5*time.Second, got(ring[3], "up"))
	ring[1].waitFor(t, "the message down the ring", 5*time.Second, got(ring[1], "down"))
	if res := from.ng.SendToAllNeighbors("all"); res != rtmfp.SendSent {
		t.Fatal(res)
	}
	for _, m := range ring {
		if m != from {
			m.waitFor(t, "the message to all neighbours", 5*time.Second, got(m, "all"))
		}
	}
	if res := from.ng.SendToNeighbor("x", "sideways"); res != rtmfp.SendError {
		t.Fatal(res)
	}
	// A group without routing refuses to route.
	nc := dial(t, url)
	plain := join(t, nc, "G:027f0201010103010c050e74657374011b00") // no routing option
	if res := plain.SendToAllNeighbors("x"); res != rtmfp.SendError {
		t.Fatal(res)
	}
	if res := plain.SendToNearest("x", ring[0].ng.LocalAddress()); res != rtmfp.SendError {
		t.Fatal(res)
	}
}

// Anyone can open a session to a member; only a member whose group init
// (HMAC) was checked on that session may post or route there. A
// connection that never joined opens the post and routing flows to a
// member: both are refused, nothing is delivered or flooded on, and the
// members' own post still arrives.
func TestGroupRefusesFlowsOfNonMembers(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	a, b, x := dial(t, url), dial(t, url), dial(t, url)
	ga, gb := join(t, a, testSpec), join(t, b, testSpec)
	groupEvent(t, ga, rtmfp.GroupNeighborConnect, 30*time.Second)
	groupEvent(t, gb, rtmfp.GroupNeighborConnect, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ps, err := x.DialPeer(ctx, a.NearID())
	if err != nil {
		t.Fatal(err)
	}
	post, err := group.AppendPost(nil, "intruder", make([]byte, group.StampLen))
	if err != nil {
		t.Fatal(err)
	}
	routed := group.AppendRouted(nil, group.Routed{Mode: group.ModeNeighbor, Body: []byte{0x02, 0x00, 0x01, 'x'}})
	for _, f := range []struct {
		meta, msg []byte
	}{{group.MetaPosts, post}, {group.MetaRouting, routed}} {
		w, err := ps.OpenFlow(f.meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(f.msg); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if err := w.WaitComplete(ctx); err == nil {
			t.Fatalf("flow %q from a non-member taken", f.meta)
		}
	}
	if _, err := gb.Post("member"); err != nil {
		t.Fatal(err)
	}
	st := groupEvent(t, ga, rtmfp.GroupPostingNotify, 10*time.Second)
	if m, _ := st.Info.GetString("message"); m != "member" {
		t.Fatalf("a got %q", m)
	}
	if s := ga.Stats(); s.PostsReceived != 1 || s.RoutedDelivered != 0 {
		t.Fatalf("a: %+v", s)
	}
}
