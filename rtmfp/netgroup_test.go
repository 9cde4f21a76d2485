package rtmfp_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
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
		// The flow stays open: only a refusal ends the wait in time.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		err = w.WaitComplete(wctx)
		wcancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("flow %q from a non-member not refused: %v", f.meta, err)
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

// groupOutcome collects a group's NetGroup.Connect.* events until it
// has one and then waits a little longer for a second (there must be
// none), or until the group closes.
func groupOutcome(t *testing.T, ng *rtmfp.NetGroup, within time.Duration) []string {
	t.Helper()
	var codes []string
	timeout := time.After(within)
	for {
		var settle <-chan time.Time
		if len(codes) > 0 {
			settle = time.After(2 * time.Second)
		}
		select {
		case st := <-ng.Status():
			if strings.HasPrefix(st.Code, "NetGroup.Connect.") {
				codes = append(codes, st.Code)
			}
		case <-settle:
			return codes
		case <-timeout:
			t.Fatalf("connect events %v within %v", codes, within)
		}
	}
}

// A server that refuses the group (here: one group per session) gets
// NetGroup.Connect.Rejected alone, never after a Success, and the group
// closes; the group the server took reports Success alone.
func TestGroupConnectRejected(t *testing.T) {
	noLeaks(t)
	url := servertest.Start(t, server.Config{Open: true, MaxGroupsPerSession: 1}).URL("k")
	nc := dial(t, url)
	g1 := join(t, nc, testSpec)
	if got := groupOutcome(t, g1, 20*time.Second); len(got) != 1 || got[0] != rtmfp.GroupConnectSuccess {
		t.Fatalf("first group: %v", got)
	}
	g2 := join(t, nc, "G:027f02010101000103010c060e6f74686572011b00")
	if got := groupOutcome(t, g2, 20*time.Second); len(got) != 1 || got[0] != rtmfp.GroupConnectRejected {
		t.Fatalf("second group: %v", got)
	}
	select {
	case <-g2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the rejected group is still open")
	}
	if _, err := g2.Post("x"); err == nil {
		t.Fatal("a rejected group posts")
	}
}

// A join the server never gets (every datagram lost, then the connection
// closed) reports NetGroup.Connect.Failed alone, and the group closes.
func TestGroupConnectFailed(t *testing.T) {
	noLeaks(t)
	url := startServer(t)
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lc := newLossyConn(c, 0, 1)
	nc, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{PacketConn: lc})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lc.setLoss(1)
	ng := join(t, nc, testSpec)
	go nc.Close() // the join is on its way, or not yet sent: no answer either way
	if got := groupOutcome(t, ng, 30*time.Second); len(got) != 1 || got[0] != rtmfp.GroupConnectFailed {
		t.Fatalf("%v", got)
	}
	select {
	case <-ng.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the failed group is still open")
	}
}

// A direct NetStream and a group neighbourship share the session between
// two members: only the stream counts as a peer connection, and closing
// either leaves the other working.
func TestGroupAndStreamShareSession(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	a, b := dial(t, url), dial(t, url)
	ga, gb := join(t, a, testSpec), join(t, b, testSpec)
	groupEvent(t, ga, rtmfp.GroupNeighborConnect, 30*time.Second)
	groupEvent(t, gb, rtmfp.GroupNeighborConnect, 30*time.Second)
	if a.PeerConnections() != 0 || b.PeerConnections() != 0 {
		t.Fatal("a neighbourship counted as a peer connection")
	}
	pub := publisher(t, a, "cam")
	sub := subscribe(t, b, a, "cam")
	waitStatus(t, sub, rtmfp.PlayStart)
	if b.PeerConnections() != 1 {
		t.Fatalf("b: %d peer connections", b.PeerConnections())
	}
	frames := func(n byte) {
		t.Helper()
		for i := range n {
			pub.WriteVideo(uint32(i)*40, []byte{0x17, 1, n, i})
		}
		timeout := time.After(10 * time.Second)
		for got := byte(0); got < n; {
			select {
			case m := <-sub.Messages():
				if m.Kind == rtmfp.KindVideo && m.Payload[2] == n {
					got++
				}
			case <-timeout:
				t.Fatalf("stream: %d of %d frames", got, n)
			}
		}
	}
	post := func(from, to *rtmfp.NetGroup, msg string) {
		t.Helper()
		if _, err := from.Post(msg); err != nil {
			t.Fatal(err)
		}
		st := groupEvent(t, to, rtmfp.GroupPostingNotify, 10*time.Second)
		if m, _ := st.Info.GetString("message"); m != msg {
			t.Fatalf("post %q", m)
		}
	}
	frames(5)
	post(ga, gb, "with the stream")
	// The stream ends: the neighbourship goes on.
	sub.Close()
	post(ga, gb, "after the stream")
	post(gb, ga, "back, after the stream")
	if ga.NeighborCount() != 1 || gb.NeighborCount() != 1 {
		t.Fatal("the neighbourship ended with the stream")
	}
	// A new stream, then the group closes: the stream goes on.
	sub = subscribe(t, b, a, "cam")
	waitStatus(t, sub, rtmfp.PlayStart)
	gb.Close()
	groupEvent(t, ga, rtmfp.GroupNeighborDisconnect, 10*time.Second)
	frames(7)
}
