package membership

import (
	"math/rand/v2"
	"testing"
	"time"
)

func addrOf(b byte) [32]byte { return [32]byte{b} }

// recorder is a Handler that keeps what it is handed; Local calls it
// before Join and Leave return.
type recorder struct{ got []Announcement }

func (r *recorder) Announce(local any, a Announcement) {
	if local != a.To.Local {
		panic("announcement handed with another member's handle")
	}
	r.got = append(r.got, a)
}

// take returns what was announced since the last take.
func (r *recorder) take() []Announcement {
	out := r.got
	r.got = nil
	return out
}

// testDir is a Local whose announcements come back as return values.
type testDir struct {
	*Local
	r *recorder
}

func newTestDir() testDir {
	r := &recorder{}
	return testDir{NewLocal(Policy{}, r), r}
}

func (d testDir) join(g GroupKey, m Member) ([]Announcement, JoinResult) {
	res, n := d.Join(g, m)
	out := d.r.take()
	if n != len(out) {
		panic("Join's count differs from the announcements delivered")
	}
	return out, res
}

func (d testDir) leave(g GroupKey, m Member) ([]Announcement, bool) {
	ok := d.Leave(g, m, time.Now())
	return d.r.take(), ok
}

// member makes a member whose peer ID and group address are both derived
// from b, so that tests choose the ring order.
func member(b byte) Member { return Member{Peer: [32]byte{0xee, b}, Addr: addrOf(b), Local: int(b)} }

type pair struct{ to, peer byte }

func pairs(as []Announcement) []pair {
	var out []pair
	for _, a := range as {
		out = append(out, pair{a.To.Addr[0], a.Peer[1]})
	}
	return out
}

// The worked example of the research notes (§2.4): members P1 < … < P5 and
// X between P2 and P3. MonaServer 2 tells P2, P1, P5, P3, P4 about X; so do
// we (in ring-distance order, successor first), four on each side, each
// member once.
func TestJoinPlanWorkedExample(t *testing.T) {
	d := newTestDir()
	g := GroupKey{DevKey: "k", ID: [32]byte{1}}
	for _, b := range []byte{10, 20, 30, 40, 50} {
		d.join(g, member(b))
	}
	out, res := d.join(g, member(25))
	if res != Joined {
		t.Fatal("join refused")
	}
	want := []pair{{30, 25}, {20, 25}, {40, 25}, {10, 25}, {50, 25}}
	if got := pairs(out); len(got) != len(want) {
		t.Fatalf("plan %v, want %v", got, want)
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("plan %v, want %v", got, want)
			}
		}
	}
	if out[0].To.Local != 30 || out[1].To.Local != 20 {
		t.Fatal("announcements lost the members' handles")
	}
	if out, res := d.join(g, member(25)); res != Already || len(out) != 0 {
		t.Fatalf("a second join of the same member: %v %v", res, pairs(out))
	}
	// X leaves: P2 (before it) is told about P3 (after it).
	out, ok := d.leave(g, member(25))
	if got := pairs(out); !ok || len(got) != 1 || got[0] != (pair{20, 30}) || out[0].Kind != Repair || out[0].Group != g {
		t.Fatalf("leave repair %v", got)
	}
	// Wrapping: the last member leaves, the first learns... the new last.
	out, _ = d.leave(g, member(50))
	if got := pairs(out); len(got) != 1 || got[0] != (pair{40, 10}) {
		t.Fatalf("leave repair at the wrap %v", got)
	}
}

func TestSmallGroups(t *testing.T) {
	d := newTestDir()
	g := GroupKey{ID: [32]byte{2}}
	if out, _ := d.join(g, member(1)); len(out) != 0 {
		t.Fatalf("first member told %v", pairs(out))
	}
	// The first learns the second (its successor, wrapping).
	if out, _ := d.join(g, member(2)); len(pairs(out)) != 1 || pairs(out)[0] != (pair{1, 2}) {
		t.Fatalf("second member: %v", pairs(out))
	}
	// Each later member of a small group reaches every other exactly once.
	for b := byte(3); b <= 9; b++ {
		out, _ := d.join(g, member(b))
		seen := map[byte]bool{}
		for _, p := range pairs(out) {
			other := p.to
			if other == b {
				other = p.peer
			}
			if seen[other] || other == b {
				t.Fatalf("member %d: plan %v", b, pairs(out))
			}
			seen[other] = true
		}
		if len(seen) != int(b-1) {
			t.Fatalf("member %d reached %d of %d", b, len(seen), b-1)
		}
	}
	d.leave(g, member(1))
	if out, ok := d.leave(g, member(99)); ok || len(out) != 0 {
		t.Fatal("leaving a non-member")
	}
	for b := byte(2); b <= 8; b++ {
		d.leave(g, member(b))
	}
	if out, ok := d.leave(g, member(9)); !ok || len(out) != 0 {
		t.Fatal("the last member's leave")
	}
	if gs, ms := d.Totals(); gs != 0 || ms != 0 {
		t.Fatalf("totals %d %d after everyone left", gs, ms)
	}
}

func TestKeysIsolateGroups(t *testing.T) {
	d := newTestDir()
	id := [32]byte{3}
	a, b := GroupKey{DevKey: "a", ID: id}, GroupKey{DevKey: "b", ID: id}
	d.join(a, member(1))
	if out, _ := d.join(b, member(2)); len(out) != 0 {
		t.Fatalf("a member of key b was told about key a's: %v", pairs(out))
	}
	if out, _ := d.join(a, member(3)); len(out) != 1 || out[0].To.Addr != addrOf(1) || out[0].Peer[1] != 3 {
		t.Fatalf("key a: %v", pairs(out))
	}
	if gs := d.Groups(id); len(gs) != 2 || gs[0] != a || gs[1] != b {
		t.Fatalf("groups with the ID: %v", gs)
	}
	keys := d.Keys(10)
	if len(keys) != 2 || keys[0].DevKey != "a" || keys[0].Members != 2 || keys[1].Members != 1 || len(keys[0].Groups) != 1 || keys[0].GroupCount != 1 {
		t.Fatalf("keys %+v", keys)
	}
	ms, sum, _ := d.Members(a, 1)
	if sum.Members != 2 || len(ms) != 1 || ms[0].Addr != addrOf(1) || ms[0].Local != nil {
		t.Fatalf("members %+v of %+v", ms, sum)
	}
}

// Through random joins and leaves in a large group: every join costs at
// most MaxMessages announcements (at least the eight ring ones once the
// group is large enough), announcements only name current members, and
// the graph the server seeded always links every pair of ring neighbours,
// so it stays connected whatever the churn.
func TestSeededGraphKeepsTheRingLinked(t *testing.T) {
	d := newTestDir()
	g := GroupKey{DevKey: "k", ID: [32]byte{4}}
	rnd := rand.New(rand.NewPCG(5, 6))
	live := map[[32]byte]bool{}
	var order [][32]byte
	edges := map[[2][32]byte]bool{}
	link := func(a, b [32]byte) {
		if string(a[:]) > string(b[:]) {
			a, b = b, a
		}
		edges[[2][32]byte{a, b}] = true
	}
	linked := func(a, b [32]byte) bool {
		if string(a[:]) > string(b[:]) {
			a, b = b, a
		}
		return edges[[2][32]byte{a, b}]
	}
	check := func(out []Announcement, x [32]byte) {
		for _, a := range out {
			// Peer IDs equal addresses here.
			if !live[a.To.Addr] || !live[a.Peer] || a.To.Addr == a.Peer {
				t.Fatalf("announcement to %x about %x names a non-member", a.To.Addr[:4], a.Peer[:4])
			}
			link(a.To.Addr, a.Peer)
		}
	}
	for step := range 20000 {
		if len(order) > 50 && rnd.IntN(3) == 0 {
			i := rnd.IntN(len(order))
			x := order[i]
			order[i] = order[len(order)-1]
			order = order[:len(order)-1]
			delete(live, x)
			buf, _ := d.leave(g, Member{Peer: x, Addr: x})
			if len(buf) != 1 {
				t.Fatalf("step %d: leave sent %d messages", step, len(buf))
			}
			check(buf, x)
			continue
		}
		a := randAddr(rnd)
		n := len(order)
		live[a] = true
		order = append(order, a)
		buf, _ := d.join(g, Member{Peer: a, Addr: a})
		if len(buf) > DefaultPolicy.MaxMessages() || len(buf) < min(n, 8) {
			t.Fatalf("step %d: %d messages for a join into %d members", step, len(buf), n)
		}
		check(buf, a)
		if step%1000 == 999 {
			ms, sum, _ := d.Members(g, 1<<30)
			if sum.Members != len(order) {
				t.Fatalf("%d members, want %d", sum.Members, len(order))
			}
			for i := range ms {
				a, b := ms[i].Addr, ms[(i+1)%len(ms)].Addr
				if !linked(a, b) {
					t.Fatalf("step %d: ring neighbours %x and %x were never introduced", step, a[:4], b[:4])
				}
			}
		}
	}
}

func TestMembersKeepJoinTime(t *testing.T) {
	d := newTestDir()
	g := GroupKey{ID: [32]byte{5}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := member(1)
	m.Joined = at
	d.join(g, m)
	ms, sum, ok := d.Members(g, 10)
	if !ok || len(ms) != 1 || !ms[0].Joined.Equal(at) || !sum.Since.Equal(at) {
		t.Fatalf("%+v", ms)
	}
	if k := d.Keys(1); len(k) != 1 || !k[0].Groups[0].Since.Equal(at) {
		t.Fatalf("%+v", k)
	}
}
