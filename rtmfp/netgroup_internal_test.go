package rtmfp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/mesh"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

type traced struct {
	ng   *NetGroup
	what string
}

// traceGroups makes every group's untold events (refusals, ended
// neighbourships) arrive on the returned channel for the test's length.
func traceGroups(t *testing.T) chan traced {
	ch := make(chan traced, 100)
	groupTrace = func(ng *NetGroup, what string) {
		select {
		case ch <- traced{ng, what}:
		default:
		}
	}
	t.Cleanup(func() { groupTrace = nil })
	return ch
}

// A member that has the group's ID but not its groupspec text (what the
// server, or an eavesdropper on the server channel, knows) cannot compute
// the group-init HMAC: the member it dials refuses it, and neither gets a
// neighbour. A member of another group is refused too.
func TestGroupHandshakeRefusesWrongGroupspec(t *testing.T) {
	events := traceGroups(t)
	srv := servertest.Start(t, server.Config{Open: true})
	spec := "G:027f02010101000103010c050e74657374011b00"
	dial := func() *NetConnection {
		nc, err := Connect(context.Background(), srv.URL("k"), &Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	a, b, c := dial(), dial(), dial()
	join := func(nc *NetConnection, spec string, prepare func(*NetGroup)) *NetGroup {
		ng, err := newNetGroup(nc, spec, prepare)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ng.Close() })
		return ng
	}
	ga := join(a, spec, nil)
	gb := join(b, spec, func(g *NetGroup) {
		g.ident.Text = strings.TrimSuffix(spec, "00") + "00" // same group ID, another HMAC key
	})
	gc := join(c, "G:027f02010101000103010c060e6f74686572011b00", nil)
	gb.AddNeighbor(a.NearID())
	// The server introduces them to each other too, so each may dial:
	// each refuses the other's init (the keys differ both ways), and b's
	// attempt ends either way.
	want := map[string]bool{"a refused b": false, "b's attempt ended": false}
	deadline := time.After(20 * time.Second)
	for !want["a refused b"] || !want["b's attempt ended"] {
		select {
		case ev := <-events:
			switch {
			case ev.ng == ga && ev.what == "refused wrong group key (another groupspec)":
				want["a refused b"] = true
			case ev.ng == gb && (ev.what == "ended refused by the peer" || ev.what == "refused wrong group key (another groupspec)"):
				want["b's attempt ended"] = true
			}
		case <-deadline:
			t.Fatalf("%v", want)
		}
	}
	// c's init names a group a is not in: a refuses its flow before any
	// group sees it, and c's dial fails the same way.
	gc.AddNeighbor(a.NearID())
	for done := false; !done; {
		select {
		case ev := <-events:
			done = ev.ng == gc && strings.HasPrefix(ev.what, "ended refused by the peer")
		case <-deadline:
			t.Fatal("c not refused")
		}
	}
	if ga.NeighborCount() != 0 || gb.NeighborCount() != 0 || gc.NeighborCount() != 0 || ga.Stats().NeighborsConnected != 0 {
		t.Fatal("a neighbourship formed")
	}
	for _, g := range []*NetGroup{ga, gb, gc} {
		for len(g.Status()) > 0 {
			if st := <-g.Status(); st.Code == GroupNeighborConnect {
				t.Fatal("Neighbor.Connect for a refused member")
			}
		}
	}
}

// Once the loop has ended nothing is accepted for it: what do takes, the
// loop runs (a handshake handed over and never answered would leave the
// peer waiting).
func TestGroupDoAfterClose(t *testing.T) {
	srv := servertest.Start(t, server.Config{Open: true})
	nc, err := Connect(context.Background(), srv.URL("k"), &Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ng, err := NewNetGroup(nc, "G:027f02010101000103010c050e74657374011b00")
	if err != nil {
		t.Fatal(err)
	}
	ng.Close()
	for i := 0; i < 100; i++ {
		if ng.do(func() {}) {
			t.Fatal("do took work after the loop ended")
		}
	}
}

// Where neighbours say they see us: the address most of them agree on is
// advertised first, one neighbour counts once (its latest word), and old
// words are forgotten. Before, the first 7 addresses heard were kept for
// ever, junk included.
func TestGroupAdvertisedAddresses(t *testing.T) {
	ng := &NetGroup{}
	now := time.Unix(1_000_000, 0)
	real := netip.MustParseAddrPort("192.0.2.1:5000")
	liar, h1, h2 := [32]byte{1}, [32]byte{2}, [32]byte{3}
	for i := range 10 {
		ng.addMyAddr(liar, netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 80), now)
	}
	if len(ng.seenAs) != 1 || len(ng.myAddrs) != 1 {
		t.Fatalf("one neighbour's words: %v", ng.myAddrs)
	}
	ng.addMyAddr(h1, real, now)
	ng.addMyAddr(h2, real, now)
	if ng.myAddrs[0].AddrPort != real || len(ng.myAddrs) != 2 {
		t.Fatalf("%v", ng.myAddrs)
	}
	ng.addMyAddr(h1, real, now.Add(mesh.PeerTimeout+time.Second))
	if len(ng.myAddrs) != 1 || ng.myAddrs[0].AddrPort != real {
		t.Fatalf("old words kept: %v", ng.myAddrs)
	}
}

func testGroup() *NetGroup {
	return &NetGroup{sp: group.Spec{Posting: true}, seen: map[string]time.Time{}, status: make(chan Status, groupStatusBuffer),
		links: map[[32]byte]*groupLink{}, log: slog.New(slog.DiscardHandler)}
}

// Post bodies are kept within the replay's byte budget however fast they
// come, and post IDs within their count, at once (not at the next tick).
func TestGroupPostMemoryBounded(t *testing.T) {
	ng := testGroup()
	defer func(n int) { groupMaxSeen = n }(groupMaxSeen)
	groupMaxSeen = 500
	now := time.Now()
	for i := range 2000 {
		msg := make([]byte, 1000)
		msg[0], msg[1] = byte(i), byte(i>>8)
		ng.remember(fmt.Sprint(i), msg, now)
		if ng.recentBytes > groupReplayMax || len(ng.seen) > groupMaxSeen {
			t.Fatalf("after %d posts: %d bytes kept, %d IDs", i+1, ng.recentBytes, len(ng.seen))
		}
	}
	if n := len(ng.recent); n != groupReplayMax/1000 {
		t.Fatalf("%d bodies kept", n)
	}
}

// A neighbour that floods new posts gets its rate: the rest are dropped,
// not delivered and not forwarded.
func TestGroupPostFloodLimited(t *testing.T) {
	ng := testGroup()
	l := &groupLink{ng: ng}
	for i := range 1000 {
		msg, err := group.AppendPost(nil, fmt.Sprint("flood ", i), make([]byte, group.StampLen))
		if err != nil {
			t.Fatal(err)
		}
		ng.onPost(l, msg)
	}
	got, dropped := ng.c.postsReceived.Load(), ng.c.postsDropped.Load()
	if float64(got) > 2*groupPostRate+50 || dropped < 500 {
		t.Fatalf("%d delivered, %d dropped of 1000 at once", got, dropped)
	}
}

// A member whose session ended is gone for the server, which answers a
// lookup for it with an all-zero address: the member that dials it again
// drops it at once instead of retrying for minutes.
func TestGroupDepartedMemberDroppedOnServerWord(t *testing.T) {
	events := traceGroups(t)
	srv := servertest.Start(t, server.Config{Open: true})
	spec := "G:027f02010101000103010c050e74657374011b00"
	var ncs [2]*NetConnection
	var gs [2]*NetGroup
	for i := range ncs {
		nc, err := Connect(context.Background(), srv.URL("k"), &Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		ng, err := NewNetGroup(nc, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ng.Close() })
		ncs[i], gs[i] = nc, ng
	}
	deadline := time.After(30 * time.Second)
	for gs[0].NeighborCount() == 0 {
		select {
		case <-gs[0].Status():
		case <-deadline:
			t.Fatal("no neighbourship")
		}
	}
	gone := ncs[1].id.PeerID
	ncs[1].Close()
	for done := false; !done; {
		select {
		case ev := <-events:
			done = ev.ng == gs[0] && ev.what == "member gone"
		case <-deadline:
			t.Fatal("the departed member was not dropped on the server's word")
		}
	}
	var heard bool
	gs[0].call(func() { heard = gs[0].mesh.Peer(gone) != nil })
	if heard {
		t.Fatal("still in the heard list")
	}
}
