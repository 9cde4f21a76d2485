package server_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/server"
)

// remoteDir is a directory as a cluster's looks to the server: the Local
// one, plus news from "other nodes" that the test makes up (announcements
// pushed to this server's members, peers gone elsewhere).
type remoteDir struct {
	*membership.Local
	h membership.Handler

	mu      sync.Mutex
	members []membership.Member // what this server joined
	gone    map[[32]byte]string
}

func (d *remoteDir) Join(g membership.GroupKey, m membership.Member) (membership.JoinResult, int) {
	d.mu.Lock()
	d.members = append(d.members, m)
	d.mu.Unlock()
	return d.Local.Join(g, m)
}

func (d *remoteDir) Gone(peer [32]byte, now time.Time) (string, bool) {
	d.mu.Lock()
	key, ok := d.gone[peer]
	d.mu.Unlock()
	if ok {
		return key, true
	}
	return d.Local.Gone(peer, now)
}

// A directory that learns of a join on another node pushes the
// announcement to this server's member through the Handler, and the
// member gets it on its GC flow; a member that died on another node gets
// the "peer gone" answer here.
func TestGroupDirectoryPushes(t *testing.T) {
	dir := &remoteDir{gone: map[[32]byte]string{}}
	srv, reg := groupServer(t, func(c *server.Config) {
		server.SetGroupDirectory(c, func(h membership.Handler) membership.Directory {
			dir.h, dir.Local = h, membership.NewLocal(membership.DefaultPolicy, h)
			return dir
		})
	})
	h := newHub()
	a := newGroupClient(t, h, srv.Addr, "k")
	fa := a.join(testGroupID)
	waitMembers(t, srv, testGroupID, "k", 1)
	dir.mu.Lock()
	m := dir.members[0]
	dir.mu.Unlock()
	if m.Peer != a.peerID() || m.Since.IsZero() || m.Local == nil {
		t.Fatalf("the server joined %+v", m)
	}
	remote := [32]byte{0x42, 0x42}
	dir.h.Announce(m.Local, membership.Announcement{Group: membership.GroupKey{DevKey: "k", ID: testGroupID},
		To: m, Peer: remote, Kind: membership.ToMember})
	h.WaitUntil(t, "the pushed announcement", func() bool { return a.announced(fa)[remote] == 1 })
	if v := metricValues(t, reg, "stratus_group_bootstrap_messages_total", "kind"); v["member"] != 1 {
		t.Fatalf("bootstrap messages %v", v)
	}
	dead := [32]byte{0xde, 0xad}
	dir.mu.Lock()
	dir.gone[dead] = "k"
	dir.mu.Unlock()
	if got := anonymousLookups(t, srv.Addr, dead, a.peerID()); !isGone(got[0]) {
		t.Fatalf("lookup of a member gone on another node: %v", got[0])
	}
}
