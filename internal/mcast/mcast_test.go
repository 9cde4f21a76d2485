package mcast

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
)

// sim runs streams against each other on simulated time: every Sink call
// becomes a message on a queue (through the real codecs), delivered in
// order, some of them lost.
type sim struct {
	t     *testing.T
	now   time.Time
	nodes map[PeerID]*node
	queue []msg
	rnd   *rand.Rand
	loss  float64 // of fragments sent
	drop  func(m msg) bool
}

type node struct {
	id  PeerID
	s   *Stream
	sim *sim
	got []Message
}

type msg struct {
	from, to PeerID
	b        []byte
	pulled   bool // a fragment sent in answer to a pull
}

func newSim(t *testing.T) *sim {
	return &sim{t: t, now: time.Unix(1000, 0), nodes: map[PeerID]*node{}, rnd: rand.New(rand.NewPCG(1, 2))}
}

func pid(i int) PeerID { return PeerID{byte(i), byte(i >> 8), 0xaa} }

func (x *sim) add(i int, cfg Config) *node {
	cfg.Rand = rand.New(rand.NewPCG(uint64(i), 9))
	n := &node{id: pid(i), s: New(cfg), sim: x}
	x.nodes[n.id] = n
	return n
}

// link makes two nodes neighbours in the stream.
func (x *sim) link(a, b *node) {
	a.s.AddPeer(b.id, false)
	b.s.AddPeer(a.id, false)
}

func (n *node) SendFragment(to PeerID, f *groupmedia.Fragment, pulled bool) {
	n.sim.queue = append(n.sim.queue, msg{n.id, to, groupmedia.AppendFragment(nil, *f), pulled})
}
func (n *node) SendMap(to PeerID, m []byte) {
	n.sim.queue = append(n.sim.queue, msg{from: n.id, to: to, b: m})
}
func (n *node) SendPush(to PeerID, mask byte) {
	n.sim.queue = append(n.sim.queue, msg{from: n.id, to: to, b: groupmedia.AppendPush(nil, mask)})
}
func (n *node) SendPull(to PeerID, id uint64) {
	n.sim.queue = append(n.sim.queue, msg{from: n.id, to: to, b: groupmedia.AppendPull(nil, id)})
}
func (n *node) Deliver(m Message) { n.got = append(n.got, m) }

// flush delivers the queue until it is empty.
func (x *sim) flush() {
	for len(x.queue) > 0 {
		m := x.queue[0]
		x.queue = x.queue[1:]
		to := x.nodes[m.to]
		if to == nil || x.drop != nil && x.drop(m) {
			continue
		}
		switch m.b[0] {
		case groupmedia.TypeMap:
			mp, err := groupmedia.ParseMap(m.b)
			if err != nil {
				x.t.Fatal(err)
			}
			to.s.OnMap(x.now, m.from, mp)
		case groupmedia.TypePush:
			mask, _ := groupmedia.ParsePush(m.b)
			to.s.OnPush(m.from, mask)
		case groupmedia.TypePull:
			id, _ := groupmedia.ParsePull(m.b)
			to.s.OnPull(x.now, m.from, id, to)
		default:
			if x.loss > 0 && x.rnd.Float64() < x.loss {
				continue
			}
			f, err := groupmedia.ParseFragment(m.b)
			if err != nil {
				x.t.Fatal(err)
			}
			to.s.OnFragment(x.now, m.from, f, to)
		}
	}
}

// fragmentID is the ID of the fragment m carries (false if m is a map,
// a push or a pull request).
func fragmentID(m msg) (uint64, bool) {
	switch m.b[0] {
	case groupmedia.TypeMap, groupmedia.TypePush, groupmedia.TypePull:
		return 0, false
	}
	f, err := groupmedia.ParseFragment(m.b)
	return f.ID, err == nil
}

// run advances time in steps of d for total, ticking every node.
func (x *sim) run(total, d time.Duration, each func()) {
	for end := x.now.Add(total); x.now.Before(end); x.now = x.now.Add(d) {
		if each != nil {
			each()
		}
		for _, n := range x.nodes {
			n.s.Tick(x.now, n)
		}
		x.flush()
	}
}

// stream runs the sim for d with src publishing.
func (x *sim) stream(src *source, d time.Duration) {
	x.run(d, 20*time.Millisecond, func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
	})
}

// source publishes a message every 40 ms: every 25th a keyframe-sized
// one (3 fragments), the rest one fragment each.
type source struct {
	pub *node
	k   int
	out []Message
}

func (src *source) step() {
	size := 300
	if src.k%25 == 0 {
		size = 2500
	}
	payload := bytes.Repeat([]byte{byte(src.k)}, size)
	payload[0] = byte(src.k >> 8)
	if err := src.pub.s.Publish(src.pub.sim.now, 0x09, uint32(src.k*40), payload, src.pub); err != nil {
		panic(err)
	}
	src.out = append(src.out, Message{Type: 0x09, Time: uint32(src.k * 40), Payload: payload})
	src.k++
}

// checkInOrder: the source's messages in got are intact and in order,
// and at least minFrac of those sent; it returns how many messages in got
// were not sent at all (a hostile member's).
func checkInOrder(t *testing.T, who string, got, sent []Message, minFrac float64) (foreign int) {
	t.Helper()
	idx := map[string]int{}
	for i, m := range sent {
		idx[string(m.Payload)] = i
	}
	prev, real := -1, 0
	for _, m := range got {
		i, ok := idx[string(m.Payload)]
		if !ok {
			foreign++
			continue
		}
		if i <= prev || m.Time != sent[i].Time {
			t.Fatalf("%s: message %d after %d", who, i, prev)
		}
		prev = i
		real++
	}
	if frac := float64(real) / float64(len(sent)); frac < minFrac {
		t.Fatalf("%s got %d of %d messages (%.2f)", who, real, len(sent), frac)
	}
	return foreign
}

func TestPublisherToPlayers(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	var players []*node
	for i := 1; i <= 6; i++ {
		players = append(players, x.add(i, Config{}))
	}
	// A mesh: the publisher knows 2 players; every player knows 3 others.
	x.link(pub, players[0])
	x.link(pub, players[1])
	for i, p := range players {
		x.link(p, players[(i+1)%6])
		x.link(p, players[(i+3)%6])
	}
	src := &source{pub: pub}
	x.stream(src, 8*time.Second)
	x.run(3*time.Second, 20*time.Millisecond, nil) // drain
	for i, p := range players {
		checkInOrder(t, fmt.Sprint("player ", i), p.got, src.out, 0.97)
	}
	ps := pub.s.Stats()
	if ps.FragmentsPushedOut == 0 {
		t.Fatal("publisher pushed nothing")
	}
	// Each fragment left the publisher at most PushLimit (2) times by push.
	if frags := pub.s.NextID() - 1; ps.FragmentsPushedOut > 2*frags {
		t.Fatalf("publisher pushed %d times for %d fragments", ps.FragmentsPushedOut, frags)
	}
}

func TestLossIsRepaired(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a, b, c := x.add(1, Config{FetchPeriod: 500 * time.Millisecond}), x.add(2, Config{FetchPeriod: 500 * time.Millisecond}), x.add(3, Config{FetchPeriod: 500 * time.Millisecond})
	x.link(pub, a)
	x.link(pub, b)
	x.link(a, b)
	x.link(b, c)
	x.link(a, c)
	x.loss = 0.10
	src := &source{pub: pub}
	x.stream(src, 6*time.Second)
	x.run(4*time.Second, 20*time.Millisecond, nil)
	for i, n := range []*node{a, b, c} {
		checkInOrder(t, fmt.Sprint("player ", i), n.got, src.out, 0.97)
		if n.s.Stats().FragmentsPulledIn == 0 {
			t.Errorf("player %d pulled nothing despite losses", i)
		}
	}
}

// A fragment near the end of the stream is pushed to nobody: the
// publisher's neighbours pull it from the publisher after the stream
// has stopped, and a player that is no neighbour of the publisher learns
// that they hold it only from maps whose last fragment did not move
// (their maps must say what changed, and such maps must be taken). It
// gets every message; before, it skipped that one after HoleTimeout.
func TestTailHoleFilledAfterTheStreamStops(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a, b, c := x.add(1, Config{}), x.add(2, Config{}), x.add(3, Config{})
	x.link(pub, a)
	x.link(pub, b)
	x.link(a, b)
	x.link(a, c)
	x.link(b, c)
	src := &source{pub: pub}
	x.stream(src, 6*time.Second)
	hole := pub.s.NextID() + 2 // in the stream's last messages, not the last one
	x.drop = func(m msg) bool {
		id, ok := fragmentID(m)
		return ok && id == hole && !m.pulled
	}
	last := src.k + 6
	x.run(2*time.Second, 20*time.Millisecond, func() { // the stream's last messages
		if x.now.UnixMilli()%40 == 0 && src.k < last {
			src.step()
		}
	})
	x.run(6*time.Second, 20*time.Millisecond, nil)
	for i, n := range []*node{a, b, c} {
		if n.s.frags[hole] == nil {
			t.Errorf("player %d never got fragment %d", i, hole)
		}
		checkInOrder(t, fmt.Sprint("player ", i), n.got, src.out, 1)
	}
}

// A hole whose fragment a neighbour advertises is waited for up to the
// window, not skipped after HoleTimeout: when members are slow, pull
// answers come late, not never. (Answers are lost here for 6 s, past
// HoleTimeout's 4.5 s.)
func TestAdvertisedHoleWaitsForTheWindow(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a := x.add(1, Config{})
	x.link(pub, a)
	src := &source{pub: pub}
	x.stream(src, 2*time.Second)
	hole, until := pub.s.NextID()+2, x.now.Add(6*time.Second)
	x.drop = func(m msg) bool {
		id, ok := fragmentID(m)
		return ok && id == hole && x.now.Before(until)
	}
	x.stream(src, 6*time.Second)
	x.run(4*time.Second, 20*time.Millisecond, nil)
	if st := a.s.Stats(); st.HolesSkipped != 0 {
		t.Fatalf("%d holes skipped", st.HolesSkipped)
	}
	checkInOrder(t, "player", a.got, src.out, 1)
}

// A hole nobody advertises is skipped after HoleTimeout.
func TestUnadvertisedHoleIsSkipped(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a := x.add(1, Config{})
	x.link(pub, a)
	src := &source{pub: pub}
	x.stream(src, 2*time.Second)
	hole := pub.s.NextID() + 2
	// The publisher loses the fragment before anyone has it.
	x.drop = func(m msg) bool {
		id, ok := fragmentID(m)
		return ok && id == hole
	}
	x.stream(src, 100*time.Millisecond)
	delete(pub.s.frags, hole)
	start := x.now
	var skipped time.Time
	x.run(8*time.Second, 20*time.Millisecond, func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
		if skipped.IsZero() && a.s.Stats().HolesSkipped > 0 {
			skipped = x.now
		}
	})
	if skipped.IsZero() {
		t.Fatal("the hole was never skipped")
	}
	if d := skipped.Sub(start); d > a.s.Config().HoleTimeout+time.Second {
		t.Fatalf("skipped after %v, HoleTimeout is %v", d, a.s.Config().HoleTimeout)
	}
}

// A publisher's pull budgets go on filling once it stops publishing, at
// the stream's rate: pulls of the stream's last fragments, which come
// after the last one is published, are answered.
func TestPublisherAnswersPullsAfterItStops(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a := x.add(1, Config{})
	x.link(pub, a)
	src := &source{pub: pub}
	x.stream(src, 4*time.Second)
	pull := func() uint64 {
		before := pub.s.Stats().PullsAnswered
		for id := uint64(1); id < pub.s.NextID(); id++ {
			pub.s.OnPull(x.now, a.id, id, pub)
		}
		x.queue = nil
		return pub.s.Stats().PullsAnswered - before
	}
	// Spend the budget and the start pool (a second between rounds
	// refills the neighbour's pull rate, not the budget).
	for round := 0; ; round++ {
		if round == 20 {
			t.Fatal("the pull budget never ran out")
		}
		x.now = x.now.Add(time.Second)
		if pull() == 0 {
			break
		}
	}
	x.now = x.now.Add(3 * time.Second)
	pub.s.Tick(x.now, pub)
	x.queue = nil
	if n := pull(); n == 0 {
		t.Fatal("no pull answered 3 s after the publisher stopped")
	}
}

// A relay leaves: the players it pushed to reassign its classes and pull
// what it owed at once, so delivery never stops for long.
func TestRelayLeaves(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	relay, a, b := x.add(1, Config{}), x.add(2, Config{}), x.add(3, Config{})
	x.link(pub, relay)
	x.link(relay, a)
	x.link(relay, b)
	x.link(pub, a)
	x.link(a, b)
	src := &source{pub: pub}
	gap := map[*node]time.Duration{}
	last := map[*node]int{}
	lastAt := map[*node]time.Time{}
	watch := func() {
		for _, n := range []*node{a, b} {
			if len(n.got) != last[n] {
				last[n], lastAt[n] = len(n.got), x.now
			} else if !lastAt[n].IsZero() {
				gap[n] = max(gap[n], x.now.Sub(lastAt[n]))
			}
		}
	}
	x.run(3*time.Second, 20*time.Millisecond, func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
		watch()
	})
	// The relay goes.
	delete(x.nodes, relay.id)
	for _, n := range []*node{pub, a, b} {
		n.s.RemovePeer(x.now, relay.id)
	}
	x.run(4*time.Second, 20*time.Millisecond, func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
		watch()
	})
	for _, n := range []*node{a, b} {
		if gap[n] > 2*time.Second {
			t.Errorf("delivery stalled %v", gap[n])
		}
		checkInOrder(t, "player", n.got, src.out, 0.9)
	}
}

// A late joiner starts near the live point (not from the oldest
// fragment its neighbours hold), within moments of joining; one that
// comes while the stream has just begun gets it from the start.
func TestLateJoiner(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a := x.add(1, Config{})
	x.link(pub, a)
	src := &source{pub: pub}
	tick := func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
	}
	x.run(12*time.Second, 20*time.Millisecond, tick) // the stream's start has left the window
	late := x.add(2, Config{})
	x.link(a, late)
	live := uint32(src.k * 40)
	var firstAt time.Duration
	start := x.now
	x.run(3*time.Second, 20*time.Millisecond, func() {
		tick()
		if firstAt == 0 && len(late.got) > 0 {
			firstAt = x.now.Sub(start)
		}
	})
	if len(late.got) == 0 || late.got[0].Time+200 < live {
		t.Fatalf("the late joiner started at %d ms, live was %d ms", late.got[0].Time, live)
	}
	if firstAt > time.Second {
		t.Fatalf("first message %v after joining", firstAt)
	}
	checkInOrder(t, "late joiner", late.got, src.out[len(src.out)-len(late.got):], 0.95)

	y := newSim(t)
	pub2 := y.add(0, Config{Publisher: true})
	src2 := &source{pub: pub2}
	for range 5 {
		src2.step() // published before anyone listens
	}
	early := y.add(1, Config{})
	y.link(pub2, early)
	y.run(2*time.Second, 20*time.Millisecond, nil)
	if len(early.got) != 5 {
		t.Fatalf("an early player got %d of the first 5 messages", len(early.got))
	}
	checkInOrder(t, "early player", early.got, src2.out, 1)
}

// Bounds: a stream never holds more fragments or bytes than configured.
func TestBounds(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true, MaxFragments: 100, MaxBytes: 50000})
	src := &source{pub: pub}
	for range 500 {
		src.step()
		if st := pub.s.Stats(); st.Held > 100 || st.HeldBytes > 50000 {
			t.Fatalf("%+v", st)
		}
	}
}

// hostile is a member that sends garbage: bogus fragment IDs, fragments
// nobody asked for, huge and never-ending maps, floods of pulls.
func TestHostileMember(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	a, b := x.add(1, Config{}), x.add(2, Config{})
	evil := x.add(66, Config{})
	x.link(pub, a)
	x.link(pub, b)
	x.link(a, b)
	x.link(evil, a)
	x.link(evil, b)
	x.link(evil, pub)
	src := &source{pub: pub}
	r := rand.New(rand.NewPCG(5, 5))
	x.run(6*time.Second, 20*time.Millisecond, func() {
		if x.now.UnixMilli()%40 == 0 {
			src.step()
		}
		for _, v := range []*node{a, b, pub} {
			// Bogus fragments, pushed whether asked or not.
			for range 20 {
				id := r.Uint64()>>r.IntN(64) + 1
				f := groupmedia.Fragment{Marker: groupmedia.MarkerWhole, ID: id, Type: 9, Payload: []byte("garbage")}
				v.s.OnFragment(x.now, evil.id, f, v)
			}
			// A map claiming a huge horizon, and an oversized one.
			v.s.OnMap(x.now, evil.id, groupmedia.Map{Last: 1 << 50, Bits: bytes.Repeat([]byte{0xff}, 64)})
			v.s.OnMap(x.now, evil.id, groupmedia.Map{Last: 1<<50 + 1, Bits: make([]byte, 1<<20)})
			// A flood of pulls.
			for range 200 {
				v.s.OnPull(x.now, evil.id, r.Uint64N(2000)+1, v)
			}
		}
	})
	x.run(3*time.Second, 20*time.Millisecond, nil)
	// Nothing in the protocol authenticates content, so a member with
	// plausible maps could push plausible garbage; this one, whose maps
	// claim far ahead and whose fragments do not match them, gets none of
	// its garbage delivered, cannot stop the stream, nor make the others
	// hold more than their bounds.
	for i, n := range []*node{a, b} {
		foreign := checkInOrder(t, fmt.Sprint("player ", i), n.got, src.out, 0.95)
		if foreign != 0 {
			t.Errorf("player %d: %d of the hostile member's messages delivered", i, foreign)
		}
		st := n.s.Stats()
		if st.Held > n.s.cfg.MaxFragments || st.MapsRejected == 0 || st.Unrequested+st.OutOfRange == 0 {
			t.Fatalf("player %d: %+v", i, st)
		}
		t.Logf("player %d: %d foreign messages delivered; %d fragments refused as unrequested, %d out of range; %d maps rejected",
			i, foreign, st.Unrequested, st.OutOfRange, st.MapsRejected)
	}
	if st := pub.s.Stats(); st.PullsRefused == 0 {
		t.Fatalf("the pull flood was not limited: %+v", st)
	}
}

// A publisher's first map goes to a neighbour with its first fragment, not
// at the next update: librtmfp players start where their first map says
// the stream is. One whole message in fragment 1 is the map `22 01`; the
// next message does not send that neighbour another map before the update.
func TestPublisherFirstMapWithFirstFragment(t *testing.T) {
	x := newSim(t)
	pub := x.add(0, Config{Publisher: true})
	player := x.add(1, Config{})
	x.link(pub, player)
	if err := pub.s.Publish(x.now, 0x12, 0, []byte("onMetaData"), pub); err != nil {
		t.Fatal(err)
	}
	var maps [][]byte
	for _, m := range x.queue {
		if m.b[0] == groupmedia.TypeMap {
			maps = append(maps, m.b)
		}
	}
	if len(maps) != 1 || !bytes.Equal(maps[0], []byte{0x22, 0x01}) {
		t.Fatalf("maps after the first fragment: % x, want [22 01]", maps)
	}
	x.queue = nil
	if err := pub.s.Publish(x.now, 0x09, 0, []byte{0x17, 0, 0, 0, 0}, pub); err != nil {
		t.Fatal(err)
	}
	for _, m := range x.queue {
		if m.b[0] == groupmedia.TypeMap {
			t.Fatalf("another map before the update period: % x", m.b)
		}
	}
}

// A neighbour's fragments must match its own map: a pull answer for a
// fragment its map does not have (a member answering pulls sent to
// others), and a push far behind the end of its map (a member whose map
// alone, far ahead, made it the pusher at the start) are refused; the
// same fragments from the neighbour whose map has them are taken.
func TestFragmentsMustMatchTheSendersMap(t *testing.T) {
	x := newSim(t)
	player := x.add(1, Config{})
	honest, liar := x.add(2, Config{}), x.add(3, Config{})
	x.link(player, honest)
	x.link(player, liar)
	garbage := func(id uint64) groupmedia.Fragment {
		return groupmedia.Fragment{Marker: groupmedia.MarkerWhole, ID: id, Type: 9, Payload: []byte("garbage")}
	}

	// Alone, the liar's map makes it the pusher of every class.
	player.s.OnMap(x.now, liar.id, groupmedia.Map{Last: 1 << 40, Bits: bytes.Repeat([]byte{0xff}, 8)})
	player.s.Tick(x.now, player)
	if player.s.peers[liar.id].pushIn != 0xff {
		t.Fatalf("the liar pushes classes %08b, want all (the setting this test is about)", player.s.peers[liar.id].pushIn)
	}
	if player.s.OnFragment(x.now, liar.id, garbage(3), player) {
		t.Fatal("a push far behind the pusher's own map was taken")
	}

	// The honest neighbour's map (a stream just begun) makes the player
	// pull fragments 1 to 10 from it, the only one whose map has them.
	x.now = x.now.Add(20 * time.Millisecond)
	player.s.OnMap(x.now, honest.id, groupmedia.Map{Last: 10, Bits: []byte{0xff, 0xff}})
	x.queue = nil
	player.s.Tick(x.now, player)
	pulled := map[uint64]bool{}
	for _, m := range x.queue {
		if m.to == honest.id && m.b[0] == groupmedia.TypePull {
			id, err := groupmedia.ParsePull(m.b)
			if err != nil {
				t.Fatal(err)
			}
			pulled[id] = true
		}
	}
	if !pulled[4] || !pulled[5] {
		t.Fatalf("pulls to the honest neighbour: %v, want 4 and 5 among them", pulled)
	}
	if player.s.peers[liar.id].pushIn&(1<<4) != 0 {
		t.Fatal("the liar still pushes class 4 beside a plausible map")
	}
	before := player.s.Stats().Unrequested
	if player.s.OnFragment(x.now, liar.id, garbage(4), player) {
		t.Fatal("an answer to a pull sent to another, from a neighbour whose map lacks the fragment, was taken")
	}
	if player.s.Stats().Unrequested != before+1 {
		t.Fatalf("the refused answer was not counted: %+v", player.s.Stats())
	}
	real := groupmedia.Fragment{Marker: groupmedia.MarkerWhole, ID: 5, Type: 9, Payload: []byte{0x27, 1, 0, 0, 0}}
	if !player.s.OnFragment(x.now, honest.id, real, player) {
		t.Fatal("the answer from the neighbour that was asked was refused")
	}
	if st := player.s.Stats(); st.Held != 1 {
		t.Fatalf("held %d fragments, want the honest one only: %+v", st.Held, st)
	}
}
