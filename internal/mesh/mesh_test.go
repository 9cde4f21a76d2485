package mesh

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func ids(n int, seed uint64) []ID {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]ID, n)
	for i := range out {
		for j := range out[i] {
			out[i][j] = byte(r.UintN(256))
		}
	}
	return out
}

func newMesh(self ID) *Mesh {
	return New(self, Config{Rand: rand.New(rand.NewPCG(1, 2))})
}

var t0 = time.Unix(1_000_000, 0)

func TestSmallGroupConnectsToAll(t *testing.T) {
	all := ids(6, 1)
	m := newMesh(all[0])
	for _, id := range all[1:] {
		if !m.Hear(t0, id, 0, nil) {
			t.Fatal("not new")
		}
	}
	m.Hear(t0, all[0], 0, nil) // itself: ignored
	if m.Heard() != 5 {
		t.Fatal(m.Heard())
	}
	dial, _, ask := m.Plan(t0)
	if len(dial) != 5 || len(ask) != 0 {
		t.Fatal(dial, ask)
	}
	for _, id := range dial {
		m.Dialing(id)
	}
	if dial, _, _ := m.Plan(t0); len(dial) != 0 {
		t.Fatal("dialled twice")
	}
}

func TestBestHasRingNeighboursAndTarget(t *testing.T) {
	all := ids(200, 2)
	m := newMesh(all[0])
	for _, id := range all[1:] {
		m.Hear(t0, id, 0, nil)
	}
	est := m.EstimatedMemberCount()
	if est < 50 || est > 800 {
		t.Fatalf("estimate %v for 200 members", est)
	}
	best := m.Best(t0)
	want := TargetNeighbors(est)
	if len(best) != want {
		t.Fatalf("%d neighbours, target %d (estimate %v)", len(best), want, est)
	}
	// The 3 nearest members on each side of the ring are in.
	ring := append([]ID(nil), all...)
	sort.Slice(ring, func(i, j int) bool { return group.AddressOf(ring[i]).Compare(group.AddressOf(ring[j])) < 0 })
	var at int
	for i, id := range ring {
		if id == all[0] {
			at = i
		}
	}
	for d := 1; d <= 3; d++ {
		for _, j := range []int{at + d, at - d} {
			if id := ring[mod(j, len(ring))]; !best[id] {
				t.Errorf("ring neighbour at %+d missing", j-at)
			}
		}
	}
	// Long links: some chosen member is far away on the ring.
	far := 0
	for id := range best {
		pos := 0
		for i, x := range ring {
			if x == id {
				pos = i
			}
		}
		if d := min(mod(pos-at, 200), mod(at-pos, 200)); d > 40 {
			far++
		}
	}
	if far < 2 {
		t.Fatalf("%d long links", far)
	}
}

func TestTargetNeighbors(t *testing.T) {
	for _, c := range []struct {
		n    float64
		want int
	}{{1, 13}, {2, 14}, {20, 17}, {101, 19}, {1000, 22}} {
		if got := TargetNeighbors(c.n); got != c.want {
			t.Errorf("%v: %d", c.n, got)
		}
	}
}

func TestPlanReplacesAndAsksSurplusToLeave(t *testing.T) {
	all := ids(40, 3)
	m := newMesh(all[0])
	for _, id := range all[1:] {
		m.Hear(t0, id, 0, nil)
	}
	// Everyone is connected (they all dialled us).
	for _, id := range all[1:] {
		m.Connected(t0, id, 10*time.Millisecond)
	}
	dial, drop, ask := m.Plan(t0)
	if len(dial) != 0 || len(ask) != 0 || len(drop) != 0 {
		t.Fatal("asked too early", dial, ask)
	}
	later := t0.Add(AskCloseDelay + time.Second)
	_, _, ask = m.Plan(later)
	if len(ask) != 39-len(m.best) {
		t.Fatalf("asked %d to leave, %d surplus", len(ask), 39-len(m.best))
	}
	if _, _, again := m.Plan(later.Add(time.Second)); len(again) != 0 {
		t.Fatal("asked again within the delay")
	}
	for _, id := range ask {
		if m.best[id] {
			t.Fatal("asked a wanted neighbour")
		}
		if !m.AcceptClose(later, id) {
			t.Fatal("a surplus neighbour's request would be refused")
		}
	}
	// A wanted neighbour leaves: it is out of the choice and replaced.
	gone := m.order[0] // its successor on the ring
	for _, id := range ask {
		m.Disconnected(later, id, false)
	}
	m.Disconnected(later, gone, true)
	best := m.Best(later)
	if best[gone] {
		t.Fatal("departed member still wanted")
	}
	dial, _, _ = m.Plan(later)
	if len(dial) == 0 {
		t.Fatal("no replacement dialled")
	}
	for _, id := range dial {
		if id == gone || !m.best[id] {
			t.Fatal("dialled the wrong member")
		}
	}
	// Later it is tried again; while that dial runs it holds no place.
	retry := later.Add(3 * time.Second)
	if !m.Best(retry)[gone] {
		t.Fatal("not tried again after its retry time")
	}
	m.Dialing(gone)
	if m.Best(retry)[gone] {
		t.Fatal("a retried member holds a place while dialled")
	}
	m.DialFailed(retry, gone)
	if m.Best(retry.Add(3 * time.Second))[gone] {
		t.Fatal("the retry delay did not double")
	}
}

func TestDialBackoffAndLimits(t *testing.T) {
	all := ids(30, 4)
	m := New(all[0], Config{MaxDialing: 3, MaxNeighbors: 5, RetryBase: time.Second})
	for _, id := range all[1:] {
		m.Hear(t0, id, 0, nil)
	}
	dial, _, _ := m.Plan(t0)
	if len(dial) != 3 {
		t.Fatal(len(dial))
	}
	for _, id := range dial {
		m.Dialing(id)
	}
	m.DialFailed(t0, dial[0])
	next, _, _ := m.Plan(t0)
	for _, id := range next {
		if id == dial[0] {
			t.Fatal("retried at once")
		}
	}
	if len(m.Best(t0)) > 5 {
		t.Fatal("best list above MaxNeighbors")
	}
}

func TestReportsAndTimeouts(t *testing.T) {
	all := ids(10, 5)
	m := newMesh(all[0])
	addrs := []wire.Address{{AddrPort: netip.MustParseAddrPort("10.0.0.1:1935"), Origin: group.OriginHost},
		{AddrPort: netip.MustParseAddrPort("192.0.2.1:5000"), Origin: group.OriginPublic}}
	m.Hear(t0, all[1], 12*time.Second, addrs)
	p := m.Peer(all[1])
	if p.Host != addrs[0].AddrPort || len(p.Addrs) != 1 || !p.Heard.Equal(t0.Add(-12*time.Second)) {
		t.Fatalf("%+v", p)
	}
	if m.Hear(t0, all[2], PeerTimeout, nil) {
		t.Fatal("stale news accepted")
	}
	for _, id := range all[2:] {
		m.Hear(t0, id, 0, nil)
	}
	rep := m.BestFor(t0, all[3])
	for _, p := range rep {
		if p.ID == all[3] {
			t.Fatal("report lists its receiver")
		}
	}
	if len(rep) != 8 {
		t.Fatalf("report lists %d of 8", len(rep))
	}
	if gone := m.Clean(t0.Add(PeerTimeout)); len(gone) != 9 {
		t.Fatal(len(gone))
	}
}

func TestNearestAndNext(t *testing.T) {
	all := ids(12, 6)
	m := newMesh(all[0])
	for _, id := range all[1:] {
		m.Connected(t0, id, time.Millisecond)
	}
	yes := func(ID) bool { return true }
	for _, target := range all[1:] {
		id, self := m.Nearest(group.AddressOf(target), yes)
		if self || id != target {
			t.Fatal("nearest to a neighbour's own address is that neighbour")
		}
	}
	if _, self := m.Nearest(m.Self(), yes); !self {
		t.Fatal("nearest to my address is me")
	}
	up, ok1 := m.NextNeighbor(true, yes)
	down, ok2 := m.NextNeighbor(false, yes)
	if !ok1 || !ok2 || up == down {
		t.Fatal("next neighbours")
	}
	for _, id := range all[1:] {
		a := group.AddressOf(id)
		// nothing lies strictly between me and up going up
		if a.Compare(m.Self()) > 0 && a.Compare(group.AddressOf(up)) < 0 {
			t.Fatal("not the next one up")
		}
	}
}

// At MaxNeighbors, a wanted member still gets in: an unwanted neighbour
// makes room.
func TestBoundAndMakingRoom(t *testing.T) {
	all := ids(30, 7)
	m := New(all[0], Config{MaxNeighbors: 8, Rand: rand.New(rand.NewPCG(1, 2))})
	for _, id := range all[1:] {
		m.Hear(t0, id, 0, nil)
	}
	best := m.Best(t0)
	if len(best) != 6 { // a quarter of the bound kept for others
		t.Fatal(len(best))
	}
	// Eight members it does not want connect first.
	var unwanted, wanted []ID
	for _, id := range all[1:] {
		if best[id] {
			wanted = append(wanted, id)
		} else {
			unwanted = append(unwanted, id)
		}
	}
	for _, id := range unwanted[:8] {
		if ok, evict := m.CanAccept(t0, id); !ok || evict != nil {
			t.Fatal("refused under the bound")
		}
		m.Connected(t0, id, time.Millisecond)
	}
	if ok, _ := m.CanAccept(t0, unwanted[8]); ok {
		t.Fatal("accepted an unwanted member at the bound")
	}
	ok, evict := m.CanAccept(t0, wanted[0])
	if !ok || evict == nil || m.best[*evict] {
		t.Fatal("no room made for a wanted member")
	}
	// The plan swaps unwanted neighbours for wanted ones (the fastest
	// connected ones became wanted themselves) and stays within the bound.
	dial, drop, _ := m.Plan(t0)
	if len(dial) == 0 || len(dial) != len(drop) {
		t.Fatalf("dial %d, drop %d", len(dial), len(drop))
	}
	for _, id := range dial {
		if !m.best[id] {
			t.Fatal("dialled an unwanted member")
		}
	}
	for _, id := range drop {
		if m.best[id] {
			t.Fatal("dropped a wanted neighbour")
		}
	}
}

// One neighbour's reports (made-up members, news always fresh) cannot
// fill the heard list: it gets a quarter of it. Members the server
// announces, or met directly, always get in (the stalest reported member
// makes room), and become neighbours within the bound.
func TestHeardListResistsOneReporter(t *testing.T) {
	all := ids(200, 9)
	self, liar := all[0], all[1]
	m := New(self, Config{MaxHeard: 40, MaxNeighbors: 4, Rand: rand.New(rand.NewPCG(1, 2))})
	m.Hear(t0, liar, 0, nil)
	m.Connected(t0, liar, time.Millisecond)
	fake := ids(100, 10)
	n := 0
	for i, id := range fake {
		if m.HearReported(t0.Add(time.Duration(i)*time.Millisecond), liar, id, 0, nil) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("one reporter placed %d members, want 10 (a quarter of 40)", n)
	}
	// Other neighbours' reports fill the list; then the server announces
	// more members: each still gets in, in place of reported ones.
	for i, id := range all[2:40] {
		m.HearReported(t0, all[2+i%3], id, 0, nil)
	}
	if m.Heard() != 40 {
		t.Fatalf("heard %d", m.Heard())
	}
	for _, id := range all[100:110] {
		if !m.Hear(t0.Add(time.Second), id, 0, nil) {
			t.Fatal("a member the server announced was dropped")
		}
	}
	if m.Heard() != 40 {
		t.Fatalf("heard %d, bound 40", m.Heard())
	}
	// Fresher reported news replaces staler reported news; older news
	// does not.
	if !m.HearReported(t0.Add(2*time.Second), all[2], all[150], 0, nil) {
		t.Fatal("fresh news not taken")
	}
	if m.HearReported(t0.Add(2*time.Second), all[2], all[151], time.Hour/60*4, nil) {
		t.Fatal("stale news replaced fresher")
	}
	// Neighbours are recorded as such (and count against the bound).
	for _, id := range all[100:103] {
		if ok, _ := m.CanAccept(t0, id); !ok {
			t.Fatal("not accepted")
		}
		m.Connected(t0.Add(time.Second), id, time.Millisecond)
	}
	if got := len(m.Neighbors()); got != 4 {
		t.Fatalf("%d neighbours", got)
	}
	if ok, evict := m.CanAccept(t0, all[104]); ok && evict == nil {
		t.Fatal("accepted past the bound")
	}
}

// A member's own addresses come first and replace those it gave before;
// second-hand ones take the places left, newest first, the oldest making
// room; IHellos go to its own ones, or to two second-hand ones.
func TestAddressesRefresh(t *testing.T) {
	all := ids(2, 11)
	m := newMesh(all[0])
	addr := func(i int) wire.Address {
		return wire.Address{AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1935), Origin: group.OriginPublic}
	}
	for i := 1; i <= 9; i++ {
		m.HearReported(t0, all[0], all[1], 0, []wire.Address{addr(i)})
	}
	p := m.Peer(all[1])
	if len(p.Addrs) != MaxAddrs || p.Addrs[0] != addr(9) || p.Addrs[MaxAddrs-1] != addr(3) {
		t.Fatalf("%v", p.Addrs)
	}
	if d := p.DialAddrs(); len(d) != 2 || d[0] != addr(9) {
		t.Fatalf("dial %v", d)
	}
	m.Hear(t0, all[1], 0, []wire.Address{addr(20), addr(21)})
	if p.Addrs[0] != addr(20) || p.Addrs[1] != addr(21) || p.Addrs[2] != addr(9) || len(p.Addrs) != MaxAddrs {
		t.Fatalf("%v", p.Addrs)
	}
	m.HearReported(t0, all[0], all[1], 0, []wire.Address{addr(30)})
	if p.Addrs[2] != addr(30) || p.Addrs[0] != addr(20) {
		t.Fatalf("%v", p.Addrs)
	}
	if d := p.DialAddrs(); len(d) != 2 || d[0] != addr(20) || d[1] != addr(21) {
		t.Fatalf("dial %v", d)
	}
	m.Hear(t0, all[1], 0, []wire.Address{addr(22)})
	if p.Addrs[0] != addr(22) || p.Addrs[1] != addr(30) {
		t.Fatalf("own addresses not replaced: %v", p.Addrs)
	}
}

// A member the server says is gone leaves the heard list; reports of it
// are ignored for PeerTimeout, first-hand news brings it back.
func TestGoneMember(t *testing.T) {
	all := ids(4, 12)
	m := newMesh(all[0])
	m.Hear(t0, all[1], 0, nil)
	m.Gone(t0, all[1])
	if m.Peer(all[1]) != nil {
		t.Fatal("still heard")
	}
	if m.HearReported(t0.Add(time.Minute), all[2], all[1], 0, nil) || m.Peer(all[1]) != nil {
		t.Fatal("a report brought it back")
	}
	if !m.HearReported(t0.Add(PeerTimeout+time.Second), all[2], all[1], 0, nil) {
		t.Fatal("reports ignored for ever")
	}
	m.Gone(t0, all[3])
	if !m.Hear(t0, all[3], 0, nil) {
		t.Fatal("the server's announcement ignored")
	}
}

// A disconnect request (0c) is accepted from a neighbour this member does
// not want while it has surplus neighbours, and refused from one it wants.
func TestAcceptClose(t *testing.T) {
	all := ids(40, 3)
	m := newMesh(all[0])
	for _, id := range all[1:] {
		m.Hear(t0, id, 0, nil)
		m.Connected(t0, id, 10*time.Millisecond)
	}
	best := m.Best(t0)
	var wanted, unwanted ID
	for _, id := range all[1:] {
		if best[id] {
			wanted = id
		} else {
			unwanted = id
		}
	}
	if m.AcceptClose(t0, wanted) {
		t.Fatal("a wanted neighbour let go")
	}
	if !m.AcceptClose(t0, unwanted) {
		t.Fatal("a surplus neighbour kept")
	}
	small := newMesh(all[0])
	for _, id := range all[1:4] {
		small.Hear(t0, id, 0, nil)
		small.Connected(t0, id, 10*time.Millisecond)
	}
	if small.AcceptClose(t0, all[1]) {
		t.Fatal("a small group lets a neighbour go")
	}
}
