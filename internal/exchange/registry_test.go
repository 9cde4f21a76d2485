package exchange

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeLive is a set of connected (peer, key) pairs.
type fakeLive struct {
	mu  sync.Mutex
	set map[[2]string]bool
}

func (f *fakeLive) live(peer, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set[[2]string{peer, key}]
}

func (f *fakeLive) connect(peer, key string) {
	f.mu.Lock()
	f.set[[2]string{peer, key}] = true
	f.mu.Unlock()
}

func (f *fakeLive) disconnect(peer, key string) {
	f.mu.Lock()
	delete(f.set, [2]string{peer, key})
	f.mu.Unlock()
}

func newTestRegistry(perKey, perPeer int) (*Registry, *fakeLive) {
	f := &fakeLive{set: map[[2]string]bool{}}
	return New(Config{Live: f.live, MaxNamesPerKey: perKey, MaxNamesPerPeer: perPeer}), f
}

func peerID(c byte) string { return strings.Repeat(string(c), 64) }

func TestRegistryRules(t *testing.T) {
	r, f := newTestRegistry(0, 0)
	a, b := peerID('a'), peerID('b')
	if err := r.Register("k", "alice", a, Self); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("unconnected peer: %v", err)
	}
	f.connect(a, "k")
	f.connect(b, "k")
	f.connect(b, "other")
	if err := r.Register("k", "alice", a, Self); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("k", "alice", strings.ToUpper(a), Self); err != nil {
		t.Fatalf("refresh in upper case: %v", err)
	}
	if err := r.Register("k", "alice", b, Self); !errors.Is(err, ErrTaken) {
		t.Fatalf("takeover of a live name: %v", err)
	}
	if got, ok := r.Lookup("k", "alice"); !ok || got != a {
		t.Fatalf("Lookup = %q %v", got, ok)
	}
	if _, ok := r.Lookup("other", "alice"); ok {
		t.Fatal("a name leaked to another key")
	}
	// A peer connected with another key cannot register under this one.
	f.disconnect(b, "k")
	if err := r.Register("k", "bob", b, Self); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("peer of another key: %v", err)
	}
	// Anonymous unregister cannot free a live holder's name; the holder can.
	if err := r.Unregister("k", "alice", ""); !errors.Is(err, ErrHeld) {
		t.Fatalf("anonymous unregister of a live name: %v", err)
	}
	if err := r.Unregister("k", "alice", b); !errors.Is(err, ErrTaken) {
		t.Fatalf("unregister by another peer: %v", err)
	}
	if err := r.Unregister("k", "alice", a); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup("k", "alice"); ok {
		t.Fatal("still there after unregister")
	}
	// Session ended: lookups miss at once, the name can be taken over.
	r.Register("k", "alice", a, Self)
	f.disconnect(a, "k")
	if _, ok := r.Lookup("k", "alice"); ok {
		t.Fatal("a disconnected peer is still found")
	}
	f.connect(b, "k")
	if err := r.Register("k", "alice", b, Self); err != nil {
		t.Fatalf("takeover after the holder left: %v", err)
	}
	if got, ok := r.Lookup("k", "alice"); !ok || got != b || r.Count("k") != 1 {
		t.Fatalf("after the takeover: Lookup = %q %v, Count = %d", got, ok, r.Count("k"))
	}
	if err := r.Unregister("k", "nobody", ""); err != nil {
		t.Fatalf("unregistering a free name: %v", err)
	}
}

func TestRegistryForgetAndBounds(t *testing.T) {
	r, f := newTestRegistry(3, 2)
	a, b, c := peerID('a'), peerID('b'), peerID('c')
	for _, p := range []string{a, b, c} {
		f.connect(p, "k")
	}
	r.Register("k", "a1", a, Self)
	r.Register("k", "a2", a, Self)
	if err := r.Register("k", "a3", a, Self); !errors.Is(err, ErrPeerFull) {
		t.Fatalf("third name of a peer: %v", err)
	}
	r.Register("k", "b1", b, Self)
	if err := r.Register("k", "c1", c, Self); !errors.Is(err, ErrKeyFull) {
		t.Fatalf("fourth name of a key: %v", err)
	}
	f.disconnect(a, "k")
	r.Forget(a, "k")
	if r.Count("k") != 1 || len(r.byPeer) != 1 {
		t.Fatalf("after Forget: %d names, %d peers", r.Count("k"), len(r.byPeer))
	}
	f.disconnect(b, "k")
	r.Forget(b, "k")
	if len(r.keys) != 0 || len(r.byPeer) != 0 {
		t.Fatalf("empty maps stay: %v %v", r.keys, r.byPeer)
	}
	// Takeover moves the name between the peers' lists, and the name is
	// found under its new holder (it was the key's last name: dropping
	// the old entry removed the key's map, which the takeover must not
	// write into).
	f.connect(a, "k")
	if err := r.Register("k", "n", a, Self); err != nil {
		t.Fatal(err)
	}
	f.disconnect(a, "k")
	if err := r.Register("k", "n", c, Self); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if len(r.byPeer[a]) != 0 || len(r.byPeer[c]) != 1 {
		t.Fatalf("after takeover: %v", r.byPeer)
	}
	if got, ok := r.Lookup("k", "n"); !ok || got != c || r.Count("k") != 1 {
		t.Fatalf("after takeover: Lookup = %q %v, Count = %d", got, ok, r.Count("k"))
	}
	// Its session ending frees everything: no orphan counts against c.
	f.disconnect(c, "k")
	r.Forget(c, "k")
	if len(r.keys) != 0 || len(r.byPeer) != 0 {
		t.Fatalf("after the new holder left: %v %v", r.keys, r.byPeer)
	}
}

// Names registered over HTTP against a peer's ID (anybody can, peer IDs
// are public) have bounds of their own: they never use up the room of
// the peer's own registrations, per peer or per key.
func TestRegistryOriginsHaveTheirOwnBounds(t *testing.T) {
	r, f := newTestRegistry(3, 2)
	victim, other := peerID('d'), peerID('e')
	f.connect(victim, "k")
	f.connect(other, "k")
	r.Register("k", "h1", victim, Anyone)
	r.Register("k", "h2", victim, Anyone)
	if err := r.Register("k", "h3", victim, Anyone); !errors.Is(err, ErrPeerFull) {
		t.Fatalf("third HTTP name of a peer: %v", err)
	}
	for _, n := range []string{"mine1", "mine2"} {
		if err := r.Register("k", n, victim, Self); err != nil {
			t.Fatalf("the peer's own %s after HTTP filled its HTTP room: %v", n, err)
		}
	}
	if err := r.Register("k", "mine3", victim, Self); !errors.Is(err, ErrPeerFull) {
		t.Fatalf("third own name of a peer: %v", err)
	}
	// The key: 3 names of each origin.
	r.Register("k", "h4", other, Anyone)
	if err := r.Register("k", "h5", other, Anyone); !errors.Is(err, ErrKeyFull) {
		t.Fatalf("fourth HTTP name of the key: %v", err)
	}
	if err := r.Register("k", "mine4", other, Self); err != nil {
		t.Fatalf("own name with the key's HTTP room full: %v", err)
	}
	if r.Count("k") != 6 {
		t.Fatalf("Count = %d, want 6", r.Count("k"))
	}
	f.disconnect(victim, "k")
	r.Forget(victim, "k")
	f.disconnect(other, "k")
	r.Forget(other, "k")
	if len(r.keys) != 0 || len(r.byPeer) != 0 {
		t.Fatalf("after Forget: %v %v", r.keys, r.byPeer)
	}

	// The peer's own registration of a name made for it over HTTP makes
	// it its own, and frees HTTP room, when it has room of its own.
	r, f = newTestRegistry(0, 2)
	f.connect(victim, "k")
	r.Register("k", "x", victim, Anyone)
	if err := r.Register("k", "x", victim, Self); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"y", "z"} {
		if err := r.Register("k", n, victim, Anyone); err != nil {
			t.Fatalf("HTTP room freed by the conversion (%s): %v", n, err)
		}
	}
	r.Register("k", "s", victim, Self)
	if err := r.Register("k", "s2", victim, Self); !errors.Is(err, ErrPeerFull) {
		t.Fatalf("own names after the conversion: %v", err)
	}
	// Without room it stays an HTTP name, and the refresh succeeds.
	if err := r.Register("k", "y", victim, Self); err != nil {
		t.Fatal(err)
	}
	if got := r.keys["k"].names["y"].origin; got != Anyone {
		t.Fatalf("y's origin = %v, want Anyone", got)
	}
}

// Forget drops a peer's names under one key, and only once the peer is
// no longer connected with it: an identity connected with two keys (two
// sessions) keeps each key's names while that key's session lasts.
func TestRegistryForgetPerKey(t *testing.T) {
	r, f := newTestRegistry(0, 0)
	a := peerID('a')
	f.connect(a, "k1")
	f.connect(a, "k2")
	r.Register("k1", "one", a, Self)
	r.Register("k2", "two", a, Self)
	r.Forget(a, "k1") // a session of a ended, another with k1 remains
	if got, ok := r.Lookup("k1", "one"); !ok || got != a {
		t.Fatalf("Forget while still connected with the key: %q %v", got, ok)
	}
	f.disconnect(a, "k1")
	r.Forget(a, "k1")
	if r.Count("k1") != 0 || r.Count("k2") != 1 || len(r.byPeer[a]) != 1 {
		t.Fatalf("after the k1 session ended: k1 %d, k2 %d names, %v", r.Count("k1"), r.Count("k2"), r.byPeer[a])
	}
	if got, ok := r.Lookup("k2", "two"); !ok || got != a {
		t.Fatalf("k2's name: %q %v", got, ok)
	}
}

func TestRegistryInput(t *testing.T) {
	r, f := newTestRegistry(0, 0)
	f.connect(peerID('a'), "k")
	for _, tc := range []struct{ name, peer string }{
		{"", peerID('a')},
		{strings.Repeat("x", MaxNameLen+1), peerID('a')},
		{"tab\there", peerID('a')},
		{"\xff", peerID('a')},
		{"ok", "short"},
		{"ok", strings.Repeat("g", 64)},
	} {
		if err := r.Register("k", tc.name, tc.peer, Self); err == nil {
			t.Errorf("Register(%q, %q) accepted", tc.name, tc.peer)
		}
	}
	if err := r.Register("k", "Zoë ☎", peerID('a'), Self); err != nil {
		t.Fatalf("unicode name: %v", err)
	}
}
