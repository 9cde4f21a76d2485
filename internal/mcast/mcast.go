// Package mcast is one member's part in a NetGroup multicast stream, as a
// state machine: the fragments it holds (a window bounded in time, count
// and bytes), the availability maps it sends and reads, which neighbour
// pushes it which eighth of the fragments, what it pulls and from whom,
// what it pushes on, and the in-order reassembly of media messages. It
// does no I/O: callers pass the time and a Sink that queues the writes.
// docs/netgroup-media.md describes the protocol and these policies.
package mcast

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
)

// Misbehaviour: what a neighbour did wrong decays with strikeDecay; past
// strikeLimit it is reported by Misbehaving.
const (
	strikeDecay = 10 * time.Second
	strikeLimit = 300
)

// A publisher's pull answers: what it may save up, and what it starts
// with (early players pull the first fragments from it).
const (
	maxPullBudget   = 256 << 10
	startPullBudget = 32 << 10
	mapRefresh      = time.Second // every neighbour gets a changed map at least this often
	// startDelay: a player waits this long after its first fragment
	// before it starts delivering, unless a map showed the stream's start.
	startDelay = 300 * time.Millisecond
	// pullsPerTick bounds the pulls sent at one Tick.
	pullsPerTick = 64
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
	// PullBudget bounds what a publisher answers to pulls, as a fraction
	// of what it publishes (default 0.35): its upload stays near
	// PushLimit + PullBudget times the stream however many ask. Pulls
	// beyond go unanswered and are retried elsewhere.
	PullBudget float64
	// SendToAll sends maps to every neighbour each update period rather
	// than to one in turn (multicastAvailabilitySendToAll).
	SendToAll bool
	// PushTimeout: a neighbour pushing a class that brings nothing useful
	// for this long while the class goes on elsewhere loses it
	// (default 1 s).
	PushTimeout time.Duration
	// HoleTimeout: a missing fragment that no neighbour advertises blocks
	// delivery at most this long once later messages are there (default
	// FetchPeriod + 2 s); one that a neighbour advertises, at most
	// Window.
	HoleTimeout time.Duration
	// StartBacklog: a player whose first map shows at most this many
	// fragments since the stream's start takes the stream from its
	// start (it was there early); otherwise it starts live, at the first
	// message pushed to it (default 256).
	StartBacklog int
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
	if c.PullBudget <= 0 {
		c.PullBudget = 0.35
	}
	if c.PushLimit <= 0 {
		c.PushLimit = 4
		if c.Publisher {
			c.PushLimit = 2
		}
	}
	ints := []*int{&c.MaxFragments, &c.MaxBytes, &c.MaxPending, &c.PullRate, &c.MaxMapBytes, &c.StartBacklog}
	for i, v := range []int{1 << 14, 32 << 20, 512, 500, 4 << 10, 256} {
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
	BytesIn, BytesPushedIn, BytesPulledIn                uint64
	BytesOut, BytesPushedOut, BytesPulledOut             uint64
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
	pushOut   byte   // classes it asked us to push
	pushIn    byte   // classes we asked it to push (last sent)
	sentMap   uint64 // last fragment of the last map sent (0: none yet)
	sentVer   uint64 // our holdings' version when it was sent
	mapSentAt time.Time
	tokens    float64
	tokensAt  time.Time
	pending   int
	banned    [8]time.Time // not asked for this class again before
	fromPeer  uint64       // useful fragments it sent
	bytesFrom uint64
	budget    float64 // publisher: bytes it may still send this neighbour in answer to pulls
	// unbudgeted: pulls answered beyond the publisher's pull budget (a
	// neighbour of another implementation, whose players rely on pulls)
	unbudgeted bool
	strikes    float64 // misbehaviour, decaying (see Misbehaving)
	strikesAt  time.Time
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
	from  PeerID
	at    time.Time
	tries int // pulls of this fragment before this one
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

	next      uint64  // publisher: next fragment ID
	startPool float64 // publisher: pull answers any neighbour may use, at first
	// publisher: when publishing began and last went on, and the bytes
	// published (the stream's rate, which keeps the pull budgets filling
	// once publishing stops: the tail's late pulls are answered)
	pubFirst, pubLast time.Time
	pubBytes          float64
	budgetAt          time.Time
	ver               uint64 // our holdings' version: it moves at each fragment stored

	cur       uint64 // player: last fragment delivered (0: not started)
	started   bool
	floor     uint64    // player: where it starts if it came early (0: live)
	firstAt   time.Time // player: when the first fragment came
	holeSince time.Time
	pulls     map[uint64]*pull
	asked     map[uint64]int  // fragments pulled and not received yet: how many times (answers count from anyone)
	urgent    map[uint64]bool // missing fragments to pull without waiting
	classes   [8]class
	knownQ    []known
	end       uint64
	lastIn    time.Time
	mapAt     time.Time
	mapTurn   int // order of the neighbour that got the last map
	// The neighbours' part of horizon, recomputed only after a map or a
	// departure (it sorts, and is asked many times per fragment).
	peersHorizon uint64
	horizonStale bool
	st           Stats
	notes        []string // the last turns of delivery (starts, restarts, skips), for State
}

// note keeps a line about a rare turn of delivery (at most 16 are kept).
func (s *Stream) note(now time.Time, format string, args ...any) {
	if len(s.notes) == 40 {
		s.notes = append(s.notes[:0], s.notes[1:]...)
	}
	s.notes = append(s.notes, now.Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

// State describes where delivery stands, for diagnostics.
func (s *Stream) State(now time.Time) string {
	h := s.horizon()
	var b strings.Builder
	fmt.Fprintf(&b, "started=%v cur=%d floor=%d high=%d horizon=%d end=%d held=%d next-start=%d pulls=%d asked=%d urgent=%d",
		s.started, s.cur, s.floor, s.high, h, s.end, len(s.frags), s.nextStart(s.cur+1), len(s.pulls), len(s.asked), len(s.urgent))
	if !s.holeSince.IsZero() {
		fmt.Fprintf(&b, " hole-for=%v", now.Sub(s.holeSince).Round(time.Millisecond))
	}
	for _, p := range s.peers {
		fmt.Fprintf(&b, " [%x last=%d pending=%d push-in=%02x push-out=%02x]", p.id[:3], p.last, p.pending, p.pushIn, p.pushOut)
	}
	for _, n := range s.notes {
		b.WriteString("\n  " + n)
	}
	return b.String()
}

// New makes a stream's state.
func New(cfg Config) *Stream {
	cfg.defaults()
	s := &Stream{cfg: cfg, frags: map[uint64]*entry{}, peers: map[PeerID]*peer{}, pulls: map[uint64]*pull{}, urgent: map[uint64]bool{}, asked: map[uint64]int{}, next: 1,
		startPool: startPullBudget}
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

// Strike counts one misbehaviour of a neighbour: a malformed message, an
// oversized or implausible map, a fragment it was not asked for or that
// cannot be right, pulls beyond its rate.
func (s *Stream) Strike(now time.Time, id PeerID) {
	if p := s.peers[id]; p != nil {
		s.strike(now, p)
	}
}

func (s *Stream) strike(now time.Time, p *peer) {
	if !p.strikesAt.IsZero() {
		p.strikes *= math.Exp(-now.Sub(p.strikesAt).Seconds() / strikeDecay.Seconds())
	}
	p.strikesAt = now
	p.strikes++
}

// Misbehaving lists the neighbours whose recent misbehaviour passed the
// limit (the caller ends its neighbourship with them).
func (s *Stream) Misbehaving(now time.Time) []PeerID {
	var out []PeerID
	for id, p := range s.peers {
		if p.strikes*math.Exp(-now.Sub(p.strikesAt).Seconds()/strikeDecay.Seconds()) > strikeLimit {
			out = append(out, id)
		}
	}
	return out
}

// BytesFrom returns the media bytes each neighbour gave us (new
// fragments only, pushed or pulled).
func (s *Stream) BytesFrom() map[PeerID]uint64 {
	out := make(map[PeerID]uint64, len(s.peers))
	for id, p := range s.peers {
		out[id] = p.bytesFrom
	}
	return out
}

// AddPeer takes a neighbour into the stream (both announcements
// exchanged). It gets our map at the next update. A publisher answers
// the pulls of an unbudgeted neighbour beyond its pull budget: Flash and
// librtmfp players get much of a stream by pulling (they ask for pushes
// one class every 2 s), and PullBudget is for members that push first.
func (s *Stream) AddPeer(id PeerID, unbudgeted bool) {
	if s.peers[id] != nil {
		return
	}
	s.seq++
	s.peers[id] = &peer{id: id, order: s.seq, unbudgeted: unbudgeted}
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
	s.horizonStale = true
	for c := range s.classes {
		if s.classes[c].assigned && s.classes[c].pusher == id {
			s.dropClass(c)
		}
	}
	for fid, pl := range s.pulls {
		if pl.from == id {
			delete(s.pulls, fid)
			s.markUrgent(fid)
		}
	}
}

// dropClass forgets a class's pusher; the fragments of the class that are
// missing up to the horizon are pulled at once.
func (s *Stream) dropClass(c int) {
	s.classes[c].assigned = false
	from := max(s.cur+1, s.classes[c].lastID+1)
	h := s.horizon()
	for id := from; id <= h && id < from+uint64(s.cfg.MaxPending)*8; id++ {
		if int(id%8) == c && s.frags[id] == nil {
			s.markUrgent(id)
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
	// A map with the same last fragment is taken: once the stream
	// stops moving, a neighbour's later maps say which holes it filled.
	if m.Last < p.last || len(m.Bits) > s.cfg.MaxMapBytes {
		s.st.MapsRejected++
		if len(m.Bits) > s.cfg.MaxMapBytes {
			s.strike(now, p)
		}
		return
	}
	if h := s.horizon(); h > 0 && m.Last > h+uint64(s.cfg.MaxFragments) {
		s.strike(now, p) // claims far more than the others (taken, but it counts)
	}
	s.st.MapsIn++
	p.last, p.mapAt = m.Last, now
	s.horizonStale = true
	p.bits = append(p.bits[:0], m.Bits...)
	if m.Last <= s.horizon()+s.slack() {
		s.young(m.Last)
	}
	if h := s.horizon(); len(s.knownQ) == 0 || h > s.knownQ[len(s.knownQ)-1].last {
		s.knownQ = append(s.knownQ, known{now, h})
	}
}

// young notes that the stream has reached fragment last: while the player
// has not started and last is within StartBacklog, the stream has just
// begun, and the player takes it from its first fragment, pulling what
// was published before it was pushed anything.
func (s *Stream) young(last uint64) {
	if s.started || s.floor != 0 || last > uint64(s.cfg.StartBacklog) {
		return
	}
	s.floor = 1
	for id := uint64(1); id <= last; id++ {
		if s.frags[id] == nil {
			s.markUrgent(id)
		}
	}
}

// OnEnd records the end of the stream (last fragment + 1).
func (s *Stream) OnEnd(end uint64) {
	if end > 0 && (s.end == 0 || end < s.end) {
		s.end = end
	}
}

// horizon is the highest fragment ID the stream is believed to have
// reached, from what neighbours advertise: the highest claim that is not
// far above the median one (with fewer than three, the lowest), so that a
// broken or hostile member cannot drag the window ahead. Without any map
// it is our own highest.
func (s *Stream) horizon() uint64 {
	if s.horizonStale {
		s.horizonStale = false
		s.peersHorizon = s.computeHorizon()
	}
	if s.peersHorizon == 0 {
		return s.high
	}
	return s.peersHorizon
}

// computeHorizon is horizon from the neighbours' maps (0 without any).
func (s *Stream) computeHorizon() uint64 {
	var lasts []uint64
	for _, p := range s.peers {
		if p.last > 0 {
			lasts = append(lasts, p.last)
		}
	}
	if len(lasts) == 0 {
		return 0
	}
	slices.Sort(lasts)
	ref := lasts[(len(lasts)-1)/2]
	if len(lasts) < 3 {
		ref = lasts[0]
	}
	var h uint64
	for _, l := range lasts {
		if l <= ref+uint64(s.cfg.MaxFragments) {
			h = max(h, l)
		}
	}
	return h
}

// slack is how far beyond the horizon a fragment may be: pushes arrive
// before the maps that advertise them.
func (s *Stream) slack() uint64 { return uint64(s.cfg.MaxFragments) / 16 }

// markUrgent asks for a fragment to be pulled at once (a bounded set).
func (s *Stream) markUrgent(id uint64) {
	if len(s.urgent) < 4*s.cfg.MaxPending {
		s.urgent[id] = true
	}
}

// OnPull answers a neighbour's pull if the fragment is held (within the
// neighbour's pull rate).
func (s *Stream) OnPull(now time.Time, id PeerID, fid uint64, sink Sink) {
	p := s.peers[id]
	if p == nil {
		return
	}
	// Pulls per second: twice the stream's fragment rate (what a
	// neighbour catching up could need from us alone), at least 50, at
	// most PullRate.
	rate := float64(len(s.frags)) / (s.cfg.Window + s.cfg.RelayMargin).Seconds() * 2
	rate = min(max(rate, 50), float64(s.cfg.PullRate))
	p.tokens = min(p.tokens+now.Sub(p.tokensAt).Seconds()*rate, 2*rate)
	p.tokensAt = now
	if p.tokens < 1 {
		s.st.PullsRefused++
		s.strike(now, p)
		return
	}
	p.tokens--
	e := s.frags[fid]
	if e == nil {
		return
	}
	if s.cfg.Publisher && !p.unbudgeted {
		n := float64(len(e.f.Payload))
		switch {
		case p.budget >= n:
			p.budget -= n
		case s.startPool >= n: // early players pull the first fragments
			s.startPool -= n
		default:
			s.st.PullsRefused++
			return
		}
	}
	s.st.PullsAnswered++
	s.send(sink, id, &e.f, true)
}

func (s *Stream) send(sink Sink, to PeerID, f *groupmedia.Fragment, pulled bool) {
	n := uint64(len(f.Payload))
	s.st.FragmentsOut++
	s.st.BytesOut += n
	if pulled {
		s.st.FragmentsPulledOut++
		s.st.BytesPulledOut += n
	} else {
		s.st.FragmentsPushedOut++
		s.st.BytesPushedOut += n
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
	if s.pubFirst.IsZero() {
		s.pubFirst = now
	}
	s.pubLast, s.budgetAt = now, now
	s.pubBytes += float64(len(payload))
	s.addBudget(float64(len(payload)))
	for i := range frags {
		f := frags[i]
		f.Payload = append([]byte(nil), f.Payload...)
		s.store(now, f)
		s.pushOn(&s.frags[f.ID].f, nil, sink)
	}
	s.sendFirstMaps(now, sink)
	return nil
}

// addBudget shares out the pull budget earned by n bytes of the stream:
// each neighbour gets its part (one that pulls without end cannot starve
// the others).
func (s *Stream) addBudget(n float64) {
	if k := float64(len(s.peers)); k > 0 {
		add, top := s.cfg.PullBudget*n/k, maxPullBudget/k
		for _, p := range s.peers {
			p.budget = min(p.budget+add, top)
		}
	}
}

// idleBudget goes on filling the pull budgets at the stream's rate once
// publishing pauses or stops: the players' last holes are pulled after
// the last fragment, and a publisher that answered none of those pulls
// would leave the tail of the stream missing for good.
func (s *Stream) idleBudget(now time.Time) {
	if !s.cfg.Publisher || s.pubFirst.IsZero() || now.Sub(s.pubLast) < s.cfg.UpdatePeriod {
		return
	}
	span := s.pubLast.Sub(s.pubFirst).Seconds()
	if span < 1 {
		span = 1
	}
	rate := s.pubBytes / span
	if dt := now.Sub(s.budgetAt).Seconds(); dt > 0 {
		s.addBudget(rate * dt)
	}
	s.budgetAt = now
}

// sendFirstMaps sends our map at once to the neighbours that never had
// one, when we publish or take in fragments. A librtmfp player starts
// where the first map it got said the stream was (it pulls from that
// map's last fragment − 1, never before), so a first map sent with the
// stream's first fragments rather than at the next update lets it take
// the stream from the start.
func (s *Stream) sendFirstMaps(now time.Time, sink Sink) {
	var m []byte
	for _, p := range s.peers {
		if p.sentMap != 0 {
			continue
		}
		first, last := s.mapRange()
		if last == 0 {
			return
		}
		if m == nil {
			m = groupmedia.AppendMap(nil, first, last, func(id uint64) bool { return s.frags[id] != nil })
		}
		p.sentMap, p.sentVer, p.mapSentAt = last, s.ver, now
		s.st.MapsOut++
		sink.SendMap(p.id, m)
	}
}

// NextID is the ID the publisher's next fragment takes.
func (s *Stream) NextID() uint64 { return s.next }

// store keeps a fragment, evicting the oldest past the bounds.
func (s *Stream) store(now time.Time, f groupmedia.Fragment) {
	s.frags[f.ID] = &entry{f: f, at: now}
	s.ver++
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
		if p != nil {
			s.strike(now, p)
		}
		return false
	}
	c := int(f.ID % 8)
	_, asked := s.asked[f.ID]
	// A pull answer counts from any neighbour whose map has the fragment:
	// pulls go only to those, and an earlier pull that timed out may be
	// answered late, by another neighbour than the last one asked.
	pulled := asked && p.pushIn&(1<<c) == 0
	if !asked && p.pushIn&(1<<c) == 0 {
		s.st.Unrequested++
		s.strike(now, p)
		return false
	}
	if pulled && !p.has(f.ID) {
		// Not something we could have asked it for: a member answering
		// pulls sent to others, with content of its own.
		s.st.Unrequested++
		return false
	}
	if !pulled && f.ID+uint64(s.cfg.MaxFragments) < p.last {
		// A pusher sends what it has just received, near the end of its
		// own map; a push far behind it is made up. (It matters most at
		// the start, while one neighbour's map, however far ahead, is all
		// a player knows and makes that neighbour its pusher.)
		s.st.OutOfRange++
		s.strike(now, p)
		return false
	}
	if pl := s.pulls[f.ID]; pl != nil {
		delete(s.pulls, f.ID)
		if q := s.peers[pl.from]; q != nil {
			q.pending--
		}
	}
	delete(s.asked, f.ID)
	slack := s.slack()
	if f.ID > s.horizon()+slack || !pulled && p.last > 0 && f.ID > p.last+slack || f.ID == 0 || s.started && f.ID <= s.cur {
		s.st.OutOfRange++
		if f.ID > s.horizon()+slack || f.ID == 0 {
			s.strike(now, p)
		}
		return false
	}
	if s.frags[f.ID] != nil {
		s.st.Duplicates++
		return false
	}
	s.lastIn = now
	if s.firstAt.IsZero() {
		s.firstAt = now
	}
	s.young(f.ID)
	s.st.FragmentsIn++
	s.st.BytesIn += uint64(len(f.Payload))
	p.fromPeer++
	p.bytesFrom += uint64(len(f.Payload))
	if pulled {
		s.st.FragmentsPulledIn++
		s.st.BytesPulledIn += uint64(len(f.Payload))
	} else {
		s.st.FragmentsPushedIn++
		s.st.BytesPushedIn += uint64(len(f.Payload))
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
				s.markUrgent(id)
			}
		}
	}
	f.Payload = append([]byte(nil), f.Payload...)
	s.store(now, f)
	s.pushOn(&s.frags[f.ID].f, p, sink)
	s.sendFirstMaps(now, sink)
	s.deliver(now, sink)
	return true
}

// Tick runs the periodic work: retention, maps, push requests, pulls and
// delivery.
func (s *Stream) Tick(now time.Time, sink Sink) {
	s.retain(now)
	s.idleBudget(now)
	if now.Sub(s.mapAt) >= s.cfg.UpdatePeriod {
		s.mapAt = now
		s.sendMaps(now, sink)
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
	h := s.horizon() + s.slack()
	for id := range s.urgent {
		if s.started && id <= s.cur || id > h {
			delete(s.urgent, id)
		}
	}
	if s.started && s.cur > h && !s.cfg.Publisher {
		// We started on something beyond what the group has reached:
		// start again from what is plausible.
		s.note(now, "restart: delivered up to %d, beyond horizon %d", s.cur, h)
		s.started, s.cur, s.floor = false, 0, 0
	}
}

// mapRange is what our map describes: up to 8 s... of IDs below our
// highest, bounded so that a bitmap stays small.
func (s *Stream) mapRange() (first, last uint64) {
	last = s.high
	if h := s.horizon() + s.slack(); last > h && !s.cfg.Publisher {
		// Do not advertise what lies beyond the group's horizon (a
		// bogus fragment we took before we knew better).
		last = 0
		for id := range s.frags {
			if id <= h {
				last = max(last, id)
			}
		}
	}
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

// sendMaps sends our map, when what we hold changed (new fragments, or
// holes filled after the stream stopped moving), to every neighbour with
// SendToAll, else to the next neighbour in turn (what Flash does by
// default: one map per update period).
func (s *Stream) sendMaps(now time.Time, sink Sink) {
	first, last := s.mapRange()
	if last == 0 || len(s.peers) == 0 {
		return
	}
	peers := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		if p.sentMap != last || p.sentVer != s.ver {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].order < peers[j].order })
	if !s.cfg.SendToAll {
		// The next one after the last served, in subscription order;
		// and any that never had a map (a new neighbour learns at once
		// what we hold) or had none for a second (so that neighbours
		// know where to pull from).
		k := sort.Search(len(peers), func(i int) bool { return peers[i].order > s.mapTurn })
		turn := peers[k%len(peers)]
		s.mapTurn = turn.order
		var to []*peer
		for _, p := range peers {
			if p == turn || p.sentMap == 0 || now.Sub(p.mapSentAt) >= mapRefresh {
				to = append(to, p)
			}
		}
		peers = to
	}
	m := groupmedia.AppendMap(nil, first, last, func(id uint64) bool { return s.frags[id] != nil })
	for _, p := range peers {
		p.sentMap, p.sentVer, p.mapSentAt = last, s.ver, now
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
	reach := max(h, min(s.high, h+s.slack())) // what the group has reached, our pushes included
	for c := range s.classes {
		cl := &s.classes[c]
		if !cl.assigned {
			continue
		}
		if _, ok := s.peers[cl.pusher]; !ok {
			s.dropClass(c)
			continue
		}
		// Silent while the class went on elsewhere: four rounds of it
		// missed in half of PushTimeout, or one round in PushTimeout.
		quiet := now.Sub(maxTime(cl.since, cl.useful))
		silent := quiet > s.cfg.PushTimeout && reach > cl.lastID+8 || quiet > s.cfg.PushTimeout/2 && reach > cl.lastID+32
		if silent || s.peers[cl.pusher].last > h+s.slack() {
			s.peers[cl.pusher].banned[c] = now.Add(3 * s.cfg.PushTimeout)
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
		// A pusher's map must be current and plausible: neither behind
		// the group nor claiming far more than it. One lately found
		// wanting for this class is taken only when no other is left
		// (when everything is slow, everyone looks wanting).
		var cands []*peer
		slack := s.slack()
		for pass := 0; pass < 2 && len(cands) == 0; pass++ {
			least := 9
			for _, p := range s.peers {
				if p.last == 0 || p.last+slack < h || p.last > h+slack || pass == 0 && now.Before(p.banned[c]) {
					continue
				}
				switch l := load[p.id]; {
				case l < least:
					least, cands = l, []*peer{p}
				case l == least:
					cands = append(cands, p)
				}
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
	// An unanswered pull goes to another neighbour after a second,
	// then after twice as long each time (a loaded member answers late,
	// and late answers are still taken), up to a quarter of the window.
	// At most a quarter of the window, so that a hole delivery waits for
	// is asked again several times before the window gives it up.
	base := max(s.cfg.FetchPeriod/2, time.Second)
	top := max(base, s.cfg.Window/4)
	for fid, pl := range s.pulls {
		if now.Sub(pl.at) > min(base<<min(pl.tries, 3), top) {
			delete(s.pulls, fid)
			if p := s.peers[pl.from]; p != nil {
				p.pending--
			}
			s.st.PullsTimeout++
			s.markUrgent(fid)
		}
	}
	low := s.startID()
	for fid := range s.asked {
		if s.frags[fid] != nil || fid < low && s.started {
			delete(s.asked, fid)
		}
	}
	if !s.started && len(s.frags) == 0 && s.floor == 0 {
		return // pull nothing before the first fragment sets where we start
	}
	var ripe uint64 // highest ID known for FetchPeriod
	for _, k := range s.knownQ {
		if now.Sub(k.at) >= s.cfg.FetchPeriod {
			ripe = max(ripe, k.last)
		}
	}
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
	for n, id := range ids {
		if len(s.pulls) >= s.cfg.MaxPending || n >= pullsPerTick {
			break
		}
		// Spread the pulls over the neighbours that have the fragment;
		// one that failed to push its class (the publisher serving
		// others first, say) is asked only if no other has it.
		c := int(id % 8)
		for pass := 0; pass < 2; pass++ {
			sent := false
			for k := range peers {
				p := peers[(rot+k)%len(peers)]
				if !p.has(id) || p.pending >= s.cfg.MaxPending/4 || pass == 0 && now.Before(p.banned[c]) {
					continue
				}
				if len(s.asked) >= 4*s.cfg.MaxPending {
					break
				}
				tries := s.asked[id]
				s.asked[id] = tries + 1
				if tries > 0 && (id <= s.cur+16 || !s.started) && id <= s.startID()+16 {
					s.note(now, "pull %d again (try %d) from %x (pending %d)", id, tries+1, p.id[:3], p.pending)
				}
				s.pulls[id] = &pull{from: p.id, at: now, tries: tries}
				p.pending++
				delete(s.urgent, id)
				s.st.PullsSent++
				sink.SendPull(p.id, id)
				rot = (rot + k + 1) % len(peers)
				sent = true
				break
			}
			if sent {
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
	if s.floor > 0 {
		return s.floor
	}
	first, h := uint64(0), s.horizon()+s.slack()
	for id, e := range s.frags {
		if e.f.Starts() && id <= h && (first == 0 || id < first) {
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
		// A moment for the neighbours' maps to say whether the stream has
		// just begun (then it is taken from its start).
		if s.floor == 0 && (s.firstAt.IsZero() || now.Sub(s.firstAt) < startDelay) {
			return
		}
		first := s.startID()
		if first == 0 {
			return
		}
		s.started, s.cur = true, first-1
		s.note(now, "start at %d (floor %d, horizon %d)", first, s.floor, s.horizon())
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
		// A hole some neighbour says it holds is waited for up to the
		// reassembly window (what multicastWindowDuration means in
		// Flash): its pulls are late, not lost, when members are slow.
		// One nobody holds is skipped after HoleTimeout.
		waited := now.Sub(s.holeSince)
		if waited < s.cfg.HoleTimeout || waited < s.cfg.Window && s.advertised(s.cur+1, next) {
			return
		}
		s.note(now, "skip %d..%d (horizon %d)", s.cur+1, next-1, s.horizon())
		s.st.HolesSkipped++
		s.st.FragmentsSkipped += next - 1 - s.cur
		s.cur = next - 1
		s.holeSince = time.Time{}
	}
}

// advertised reports whether a neighbour's map has the first fragment
// missing in [from, to) (the one delivery waits for).
func (s *Stream) advertised(from, to uint64) bool {
	id := from
	for id < to && s.frags[id] != nil {
		id++
	}
	for _, p := range s.peers {
		if p.has(id) {
			return true
		}
	}
	return false
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
