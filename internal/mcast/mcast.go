// Package mcast is one member's part in a NetGroup multicast stream, as a
// state machine: the fragments it holds (a window bounded in time, count
// and bytes), the availability maps it sends and reads, which neighbour
// pushes it which eighth of the fragments, what it pulls and from whom,
// what it pushes on, and the in-order reassembly of media messages. It
// does no I/O: callers pass the time and a Sink that queues the writes.
// docs/netgroup-media.md describes the protocol and these policies.
package mcast

import (
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
)

// PeerID names a neighbour.
type PeerID = [32]byte

// Config tunes a stream. Zero values take the defaults.
type Config struct {
	Publisher bool
	// Window is how long fragments are kept and advertised
	// (multicastWindowDuration, default 8 s), plus RelayMargin
	// (multicastRelayMarginDuration, default 2 s).
	Window, RelayMargin time.Duration
	// UpdatePeriod is how often maps go out (multicastAvailabilityUpdatePeriod,
	// default 100 ms).
	UpdatePeriod time.Duration
	// FetchPeriod is how long a fragment known to exist may be missing
	// before it is pulled (multicastFetchPeriod, default 2.5 s). Fragments
	// a departed or silent pusher owed are pulled at once.
	FetchPeriod time.Duration
	// PushLimit bounds the neighbours a fragment is pushed to
	// (multicastPushNeighborLimit; default 4, 2 for a publisher).
	PushLimit int
	// PushTimeout: a neighbour pushing a class that brings nothing useful
	// for this long while the class goes on elsewhere loses it
	// (default 1 s).
	PushTimeout time.Duration
	// HoleTimeout: a missing fragment blocks delivery at most this long
	// once later messages are there (default FetchPeriod + 2 s).
	HoleTimeout time.Duration
	// Bounds: fragments and bytes held, pulls in flight, pulls answered
	// per neighbour and second, bitmap bytes kept per neighbour.
	MaxFragments, MaxBytes, MaxPending, PullRate, MaxMapBytes int
	Rand                                                      *rand.Rand
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Window, 8*time.Second)
	def(&c.RelayMargin, 2*time.Second)
	def(&c.UpdatePeriod, 100*time.Millisecond)
	def(&c.FetchPeriod, 2500*time.Millisecond)
	def(&c.PushTimeout, time.Second)
	def(&c.HoleTimeout, c.FetchPeriod+2*time.Second)
	if c.PushLimit <= 0 {
		c.PushLimit = 4
		if c.Publisher {
			c.PushLimit = 2
		}
	}
	ints := []*int{&c.MaxFragments, &c.MaxBytes, &c.MaxPending, &c.PullRate, &c.MaxMapBytes}
	for i, v := range []int{1 << 14, 32 << 20, 512, 500, 4 << 10} {
		if *ints[i] <= 0 {
			*ints[i] = v
		}
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
}

// Sink receives what the stream wants sent or delivered. Its methods
// queue; they must not block or call back into the stream.
type Sink interface {
	SendFragment(to PeerID, f *groupmedia.Fragment, pulled bool)
	SendMap(to PeerID, m []byte)
	SendPush(to PeerID, mask byte)
	SendPull(to PeerID, id uint64)
	Deliver(m Message)
}

// Message is a reassembled media message.
type Message struct {
	Type    byte
	Time    uint32
	Payload []byte
	First   uint64 // ID of its first fragment
}

// Stats counts what the stream did.
type Stats struct {
	FragmentsIn, FragmentsPushedIn, FragmentsPulledIn    uint64
	FragmentsOut, FragmentsPushedOut, FragmentsPulledOut uint64
	BytesIn, BytesOut                                    uint64
	Duplicates, Unrequested, OutOfRange, Evicted         uint64
	PullsSent, PullsAnswered, PullsRefused, PullsTimeout uint64
	MapsIn, MapsOut, MapsRejected                        uint64
	MessagesDelivered, HolesSkipped, FragmentsSkipped    uint64
	Held, HeldBytes                                      int
}

type entry struct {
	f  groupmedia.Fragment
	at time.Time
}

type peer struct {
	id        PeerID
	order     int // subscription order: pushes go out in it
	last      uint64
	bits      []byte
	mapAt     time.Time
	pushOut   byte // classes it asked us to push
	pushIn    byte // classes we asked it to push (last sent)
	sentMap   uint64
	tokens    float64
	tokensAt  time.Time
	pending   int
	banned    [8]time.Time // not asked for this class again before
	fromPeer  uint64       // useful fragments it sent
	bytesFrom uint64
}

func (p *peer) has(id uint64) bool {
	return groupmedia.Map{Last: p.last, Bits: p.bits}.Has(id)
}

type class struct {
	pusher   PeerID
	assigned bool
	since    time.Time
	useful   time.Time // last fragment of this class that was new to us
	lastID   uint64
}

type pull struct {
	from PeerID
	at   time.Time
}

type known struct {
	at   time.Time
	last uint64
}

// Stream is one member's state for one multicast stream.
type Stream struct {
	cfg   Config
	frags map[uint64]*entry
	queue []uint64 // held IDs in arrival order (eviction)
	bytes int
	high  uint64 // highest ID held
	peers map[PeerID]*peer
	seq   int

	next uint64 // publisher: next fragment ID

	cur       uint64 // player: last fragment delivered (0: not started)
	started   bool
	holeSince time.Time
	pulls     map[uint64]*pull
	urgent    map[uint64]bool // missing fragments to pull without waiting
	classes   [8]class
	knownQ    []known
	end       uint64
	lastIn    time.Time
	mapAt     time.Time
	st        Stats
}

// New makes a stream's state.
func New(cfg Config) *Stream {
	cfg.defaults()
	s := &Stream{cfg: cfg, frags: map[uint64]*entry{}, peers: map[PeerID]*peer{}, pulls: map[uint64]*pull{}, urgent: map[uint64]bool{}, next: 1}
	return s
}

// Config returns the effective configuration.
func (s *Stream) Config() Config { return s.cfg }

// SetFetchPeriod changes the fetch period (a player's local override).
func (s *Stream) SetFetchPeriod(d time.Duration) {
	if d > 0 {
		s.cfg.FetchPeriod = d
	}
}

// Stats returns the counters.
func (s *Stream) Stats() Stats {
	st := s.st
	st.Held, st.HeldBytes = len(s.frags), s.bytes
	return st
}

// LastReceived is when a fragment last arrived (zero if never).
func (s *Stream) LastReceived() time.Time { return s.lastIn }

// Ended reports the end counter of a stream its publisher closed (0 if
// open).
func (s *Stream) Ended() uint64 { return s.end }

// AddPeer takes a neighbour into the stream (both announcements
// exchanged). It gets our map at the next update.
func (s *Stream) AddPeer(id PeerID) {
	if s.peers[id] != nil {
		return
	}
	s.seq++
	s.peers[id] = &peer{id: id, order: s.seq}
}

// Peers lists the neighbours in the stream.
func (s *Stream) Peers() []PeerID {
	out := make([]PeerID, 0, len(s.peers))
	for id := range s.peers {
		out = append(out, id)
	}
	return out
}

// RemovePeer drops a neighbour: the classes it pushed are given to
// others, and what it owed us is pulled from others at once.
func (s *Stream) RemovePeer(now time.Time, id PeerID) {
	p := s.peers[id]
	if p == nil {
		return
	}
	delete(s.peers, id)
	for c := range s.classes {
		if s.classes[c].assigned && s.classes[c].pusher == id {
			s.dropClass(c)
		}
	}
	for fid, pl := range s.pulls {
		if pl.from == id {
			delete(s.pulls, fid)
			s.urgent[fid] = true
		}
	}
}

// dropClass forgets a class's pusher; the fragments of the class that are
// missing up to the horizon are pulled at once.
func (s *Stream) dropClass(c int) {
	s.classes[c].assigned = false
	from := max(s.cur+1, s.classes[c].lastID+1)
	for id := from; id <= s.horizon() && id < from+uint64(s.cfg.MaxPending)*8; id++ {
		if int(id%8) == c && s.frags[id] == nil {
			s.urgent[id] = true
		}
	}
}

// OnPush records a neighbour's push request.
func (s *Stream) OnPush(id PeerID, mask byte) {
	if p := s.peers[id]; p != nil {
		p.pushOut = mask
	}
}

// OnMap records a neighbour's availability map. Maps that do not move
// forward, and those whose bitmap is larger than MaxMapBytes, are
// ignored.
func (s *Stream) OnMap(now time.Time, id PeerID, m groupmedia.Map) {
	p := s.peers[id]
	if p == nil || s.cfg.Publisher {
		return
	}
	if m.Last <= p.last || len(m.Bits) > s.cfg.MaxMapBytes {
		s.st.MapsRejected++
		return
	}
	s.st.MapsIn++
	p.last, p.mapAt = m.Last, now
	p.bits = append(p.bits[:0], m.Bits...)
	if h := s.horizon(); len(s.knownQ) == 0 || h > s.knownQ[len(s.knownQ)-1].last {
		s.knownQ = append(s.knownQ, known{now, h})
	}
}

// OnEnd records the end of the stream (last fragment + 1).
func (s *Stream) OnEnd(end uint64) {
	if end > 0 && (s.end == 0 || end < s.end) {
		s.end = end
	}
}

// horizon is the highest fragment ID the stream is believed to have
// reached: our own highest, or what neighbours advertise, leaving out a
// neighbour that claims much more than the others (a broken or hostile
// member cannot drag the window far ahead).
func (s *Stream) horizon() uint64 {
	var lasts []uint64
	for _, p := range s.peers {
		if p.last > 0 {
			lasts = append(lasts, p.last)
		}
	}
	h := s.high
	if len(lasts) == 0 {
		return h
	}
	slices.Sort(lasts)
	limit := uint64(s.cfg.MaxFragments)
	// The reference is the median claim (the lower one of two), or with
	// fewer than three, the lowest claim or our own highest.
	ref := lasts[(len(lasts)-1)/2]
	if len(lasts) < 3 {
		ref = max(lasts[0], s.high)
	}
	for _, l := range lasts {
		if l <= ref+limit && l > h {
			h = l
		}
	}
	return h
}

// OnPull answers a neighbour's pull if the fragment is held (within the
// neighbour's pull rate).
func (s *Stream) OnPull(now time.Time, id PeerID, fid uint64, sink Sink) {
	p := s.peers[id]
	if p == nil {
		return
	}
	rate := float64(s.cfg.PullRate)
	p.tokens = min(p.tokens+now.Sub(p.tokensAt).Seconds()*rate, 2*rate)
	p.tokensAt = now
	if p.tokens < 1 {
		s.st.PullsRefused++
		return
	}
	p.tokens--
	e := s.frags[fid]
	if e == nil {
		return
	}
	s.st.PullsAnswered++
	s.send(sink, id, &e.f, true)
}

func (s *Stream) send(sink Sink, to PeerID, f *groupmedia.Fragment, pulled bool) {
	s.st.FragmentsOut++
	s.st.BytesOut += uint64(len(f.Payload))
	if pulled {
		s.st.FragmentsPulledOut++
	} else {
		s.st.FragmentsPushedOut++
	}
	sink.SendFragment(to, f, pulled)
}

// Publish cuts a media message into fragments, keeps them and pushes
// them to the neighbours that asked (publisher).
func (s *Stream) Publish(now time.Time, typ byte, t uint32, payload []byte, sink Sink) error {
	frags, err := groupmedia.Split(typ, t, payload, s.next)
	if err != nil {
		return err
	}
	s.next += uint64(len(frags))
	for i := range frags {
		f := frags[i]
		f.Payload = append([]byte(nil), f.Payload...)
		s.store(now, f)
		s.pushOn(&s.frags[f.ID].f, nil, sink)
	}
	return nil
}

// NextID is the ID the publisher's next fragment takes.
func (s *Stream) NextID() uint64 { return s.next }

// store keeps a fragment, evicting the oldest past the bounds.
func (s *Stream) store(now time.Time, f groupmedia.Fragment) {
	s.frags[f.ID] = &entry{f: f, at: now}
	s.queue = append(s.queue, f.ID)
	s.bytes += len(f.Payload)
	s.high = max(s.high, f.ID)
	for len(s.frags) > s.cfg.MaxFragments || s.bytes > s.cfg.MaxBytes {
		s.evictOldest()
	}
}

func (s *Stream) evictOldest() {
	for len(s.queue) > 0 {
		id := s.queue[0]
		s.queue = s.queue[1:]
		if e := s.frags[id]; e != nil {
			s.bytes -= len(e.f.Payload)
			delete(s.frags, id)
			s.st.Evicted++
			return
		}
	}
}

// pushOn pushes a new fragment to the neighbours whose push requests
// cover its class, in the order they joined, at most PushLimit of them,
// never back to where it came from.
func (s *Stream) pushOn(f *groupmedia.Fragment, from *peer, sink Sink) {
	bit := byte(1) << (f.ID % 8)
	var to []*peer
	for _, p := range s.peers {
		if p != from && p.pushOut&bit != 0 {
			to = append(to, p)
		}
	}
	sort.Slice(to, func(i, j int) bool { return to[i].order < to[j].order })
	for i, p := range to {
		if i == s.cfg.PushLimit {
			break
		}
		s.send(sink, p.id, f, false)
	}
}

// OnFragment takes a fragment from a neighbour. It is kept only if it was
// asked for (a class this neighbour pushes us, or a pull sent to it),
// plausible (not beyond what the group has reached, not already
// delivered) and new; then it is pushed on and delivery goes on.
func (s *Stream) OnFragment(now time.Time, from PeerID, f groupmedia.Fragment, sink Sink) bool {
	p := s.peers[from]
	if p == nil || s.cfg.Publisher {
		s.st.Unrequested++
		return false
	}
	c := int(f.ID % 8)
	pl := s.pulls[f.ID]
	pulled := pl != nil && pl.from == from
	if !pulled && p.pushIn&(1<<c) == 0 {
		s.st.Unrequested++
		return false
	}
	if pulled {
		delete(s.pulls, f.ID)
		p.pending--
	}
	slack := uint64(s.cfg.MaxFragments) / 16
	if f.ID > s.horizon()+slack || !pulled && p.last > 0 && f.ID > p.last+slack || f.ID == 0 || s.started && f.ID <= s.cur {
		s.st.OutOfRange++
		return false
	}
	if s.frags[f.ID] != nil {
		s.st.Duplicates++
		return false
	}
	s.lastIn = now
	s.st.FragmentsIn++
	s.st.BytesIn += uint64(len(f.Payload))
	p.fromPeer++
	p.bytesFrom += uint64(len(f.Payload))
	if pulled {
		s.st.FragmentsPulledIn++
	} else {
		s.st.FragmentsPushedIn++
		cl := &s.classes[c]
		if cl.assigned && cl.pusher == from {
			cl.useful = now
		}
	}
	s.classes[c].lastID = max(s.classes[c].lastID, f.ID)
	delete(s.urgent, f.ID)
	if !pulled {
		// A pusher sends a class in order on one flow: the fragments of
		// this class below this one that we lack were never sent to us
		// (pushed before we asked, or given up by the transport). Pull
		// them now rather than after FetchPeriod.
		low := s.startID()
		for id, k := f.ID, 0; id > 8 && k < 64; k++ {
			id -= 8
			if id < low || s.frags[id] != nil {
				break
			}
			if s.pulls[id] == nil {
				s.urgent[id] = true
			}
		}
	}
	f.Payload = append([]byte(nil), f.Payload...)
	s.store(now, f)
	s.pushOn(&s.frags[f.ID].f, p, sink)
	s.deliver(now, sink)
	return true
}

// Tick runs the periodic work: retention, maps, push requests, pulls and
// delivery.
func (s *Stream) Tick(now time.Time, sink Sink) {
	s.retain(now)
	if now.Sub(s.mapAt) >= s.cfg.UpdatePeriod {
		s.mapAt = now
		s.sendMaps(sink)
	}
	if !s.cfg.Publisher {
		s.managePush(now, sink)
		s.managePulls(now, sink)
		s.deliver(now, sink)
	}
}

// retain drops fragments that arrived more than Window + RelayMargin ago
// (by arrival, not ID: a fragment with a bogus ID ages out like any).
func (s *Stream) retain(now time.Time) {
	keep := s.cfg.Window + s.cfg.RelayMargin
	for len(s.queue) > 0 {
		e := s.frags[s.queue[0]]
		if e != nil && now.Sub(e.at) <= keep {
			break
		}
		if e != nil {
			s.bytes -= len(e.f.Payload)
			delete(s.frags, s.queue[0])
		}
		s.queue = s.queue[1:]
	}
	for len(s.knownQ) > 1 && now.Sub(s.knownQ[0].at) > keep {
		s.knownQ = s.knownQ[1:]
	}
	for id := range s.urgent {
		if s.started && id <= s.cur {
			delete(s.urgent, id)
		}
	}
}

// mapRange is what our map describes: up to 8 s... of IDs below our
// highest, bounded so that a bitmap stays small.
func (s *Stream) mapRange() (first, last uint64) {
	last = s.high
	if s.end > 0 && s.end > last {
		last = s.end - 1
	}
	if last == 0 {
		return 0, 0
	}
	first = last
	for id := range s.frags {
		if id < first && last-id < uint64(s.cfg.MaxMapBytes)*8 {
			first = id
		}
	}
	return first, last
}

func (s *Stream) sendMaps(sink Sink) {
	first, last := s.mapRange()
	if last == 0 {
		return
	}
	var m []byte
	for _, p := range s.peers {
		if p.sentMap == last {
			continue
		}
		if m == nil {
			m = groupmedia.AppendMap(nil, first, last, func(id uint64) bool { return s.frags[id] != nil })
		}
		p.sentMap = last
		s.st.MapsOut++
		sink.SendMap(p.id, m)
	}
}

// managePush gives every class a pusher: a random neighbour whose map is
// recent and that was not found wanting for that class lately, spread so
// that no neighbour takes two classes while another has none; and takes
// a class back from a pusher that brings nothing new for PushTimeout
// while the class goes on elsewhere.
func (s *Stream) managePush(now time.Time, sink Sink) {
	h := s.horizon()
	if h == 0 {
		return
	}
	for c := range s.classes {
		cl := &s.classes[c]
		if !cl.assigned {
			continue
		}
		if _, ok := s.peers[cl.pusher]; !ok {
			s.dropClass(c)
			continue
		}
		quiet := now.Sub(maxTime(cl.since, cl.useful))
		slack := uint64(s.cfg.MaxFragments) / 16
		if quiet > s.cfg.PushTimeout && h > cl.lastID+8 || s.peers[cl.pusher].last > h+slack {
			s.peers[cl.pusher].banned[c] = now.Add(10 * s.cfg.PushTimeout)
			s.dropClass(c)
		}
	}
	load := map[PeerID]int{}
	for c := range s.classes {
		if s.classes[c].assigned {
			load[s.classes[c].pusher]++
		}
	}
	for c := range s.classes {
		cl := &s.classes[c]
		if cl.assigned {
			continue
		}
		var cands []*peer
		least := 9
		slack := uint64(s.cfg.MaxFragments) / 16
		for _, p := range s.peers {
			// A pusher's map must be current and plausible: neither
			// behind the group nor claiming far more than it.
			if p.last == 0 || p.last+slack < h || p.last > h+slack || now.Before(p.banned[c]) {
				continue
			}
			switch l := load[p.id]; {
			case l < least:
				least, cands = l, []*peer{p}
			case l == least:
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			continue
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].order < cands[j].order })
		p := cands[s.cfg.Rand.IntN(len(cands))]
		*cl = class{pusher: p.id, assigned: true, since: now, lastID: cl.lastID}
		load[p.id]++
	}
	for _, p := range s.peers {
		var mask byte
		for c := range s.classes {
			if s.classes[c].assigned && s.classes[c].pusher == p.id {
				mask |= 1 << c
			}
		}
		if mask != p.pushIn {
			p.pushIn = mask
			sink.SendPush(p.id, mask)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// managePulls asks for missing fragments: those known to exist for
// FetchPeriod (or owed by a departed or silent pusher), from a neighbour
// whose map has them, spreading the requests; a request unanswered for a
// second goes to another neighbour.
func (s *Stream) managePulls(now time.Time, sink Sink) {
	timeout := max(s.cfg.FetchPeriod/2, time.Second)
	for fid, pl := range s.pulls {
		if now.Sub(pl.at) > timeout {
			delete(s.pulls, fid)
			if p := s.peers[pl.from]; p != nil {
				p.pending--
			}
			s.st.PullsTimeout++
			s.urgent[fid] = true
		}
	}
	if !s.started && len(s.frags) == 0 {
		return // pull nothing before the first fragment sets where we start
	}
	var ripe uint64 // highest ID known for FetchPeriod
	for _, k := range s.knownQ {
		if now.Sub(k.at) >= s.cfg.FetchPeriod {
			ripe = max(ripe, k.last)
		}
	}
	low := s.startID()
	want := func(id uint64) bool { return id >= low && s.frags[id] == nil && s.pulls[id] == nil }
	var ids []uint64
	for id := range s.urgent {
		if want(id) {
			ids = append(ids, id)
		}
	}
	for id, n := max(low, 1), 0; id <= ripe && len(ids) < s.cfg.MaxPending && n < 4*s.cfg.MaxFragments; id, n = id+1, n+1 {
		if want(id) && !s.urgent[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	peers := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].order < peers[j].order })
	if len(peers) == 0 {
		return
	}
	rot := s.cfg.Rand.IntN(len(peers))
	for _, id := range ids {
		if len(s.pulls) >= s.cfg.MaxPending {
			break
		}
		for k := range peers {
			p := peers[(rot+k)%len(peers)]
			if p.has(id) && p.pending < s.cfg.MaxPending/4 {
				s.pulls[id] = &pull{from: p.id, at: now}
				p.pending++
				delete(s.urgent, id)
				s.st.PullsSent++
				sink.SendPull(p.id, id)
				rot = (rot + k + 1) % len(peers)
				break
			}
		}
	}
}

// startID is the first fragment the player wants: after what it
// delivered, or from the first message start it got.
func (s *Stream) startID() uint64 {
	if s.started {
		return s.cur + 1
	}
	first := uint64(0)
	for id, e := range s.frags {
		if e.f.Starts() && (first == 0 || id < first) {
			first = id
		}
	}
	return first
}

// deliver hands over every message that is complete at the head, starting
// at the first message start held; a hole that blocks for HoleTimeout
// while later messages wait is skipped.
func (s *Stream) deliver(now time.Time, sink Sink) {
	if s.cfg.Publisher {
		return
	}
	if !s.started {
		first := s.startID()
		if first == 0 {
			return
		}
		s.started, s.cur = true, first-1
	}
	for {
		m, n, st := s.assemble(s.cur + 1)
		switch st {
		case ready:
			s.cur += n
			s.holeSince = time.Time{}
			s.st.MessagesDelivered++
			sink.Deliver(m)
			continue
		case stray:
			s.cur++ // a piece whose message start was lost
			s.st.FragmentsSkipped++
			continue
		}
		// Blocked: skip a hole that lasted too long, to the next start.
		next := s.nextStart(s.cur + 1)
		if next == 0 {
			return
		}
		if s.holeSince.IsZero() {
			s.holeSince = now
			return
		}
		if now.Sub(s.holeSince) < s.cfg.HoleTimeout {
			return
		}
		s.st.HolesSkipped++
		s.st.FragmentsSkipped += next - 1 - s.cur
		s.cur = next - 1
		s.holeSince = time.Time{}
	}
}

// nextStart is the lowest held message start after from (0 if none),
// within reach of the window.
func (s *Stream) nextStart(from uint64) uint64 {
	best := uint64(0)
	for id, e := range s.frags {
		if id > from && e.f.Starts() && id-from < uint64(s.cfg.MaxFragments) && (best == 0 || id < best) {
			best = id
		}
	}
	return best
}

type assembly int

const (
	wait  assembly = iota // not all there yet
	ready                 // a whole message
	stray                 // a middle or last piece where a message should start
)

// assemble returns the message starting at id if all its fragments are
// held, and how many fragments it takes.
func (s *Stream) assemble(id uint64) (Message, uint64, assembly) {
	e := s.frags[id]
	if e == nil {
		return Message{}, 0, wait
	}
	f := &e.f
	switch f.Marker {
	case groupmedia.MarkerWhole:
		return Message{Type: f.Type, Time: f.Time, Payload: f.Payload, First: id}, 1, ready
	case groupmedia.MarkerFirst:
		n := uint64(f.Remaining) + 1
		size := len(f.Payload)
		for k := uint64(1); k < n; k++ {
			g := s.frags[id+k]
			if g == nil {
				return Message{}, 0, wait
			}
			size += len(g.f.Payload)
		}
		payload := make([]byte, 0, size)
		for k := uint64(0); k < n; k++ {
			payload = append(payload, s.frags[id+k].f.Payload...)
		}
		return Message{Type: f.Type, Time: f.Time, Payload: payload, First: id}, n, ready
	}
	return Message{}, 1, stray
}
