// Package mesh is a NetGroup member's view of its group and the choice of
// its neighbours: the heard list (every member it knows of, with their
// addresses and how fresh the news is), the ring of group addresses, the
// estimate of the group's size, and the neighbour set it wants (the
// nearest members on the ring, the lowest-latency ones, one random one
// and long links across the ring, as Flash and librtmfp choose them). It
// is a pure state machine: callers pass the current time and carry out
// the dials and disconnect requests it plans. docs/netgroup.md §6.
package mesh

import (
	"bytes"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// ID is a peer ID.
type ID = [32]byte

// Defaults (docs/netgroup.md §7).
const (
	// PeerTimeout: news older than this is ignored, and members without
	// news for this long leave the heard list.
	PeerTimeout = 300 * time.Second
	// AskCloseDelay: no disconnect request to a peer within this long of
	// its session opening or of the previous request.
	AskCloseDelay = 90 * time.Second
	// MaxAddrs is how many addresses are kept per member.
	MaxAddrs = 7
	// smallGroup: with this many heard members or fewer, connect to all.
	smallGroup    = 6
	ringEachSide  = 3
	lowLatency    = 6
	baseNeighbors = 13
)

// Config tunes a Mesh.
type Config struct {
	// MaxNeighbors bounds the connected neighbours (dials stop there and
	// incoming neighbours are refused). Default 64.
	MaxNeighbors int
	// MaxHeard bounds the heard list. Past it, a member met directly or
	// announced by the server takes the place of the stalest one only
	// reports named; a reported member takes the place of a staler
	// reported one, or is dropped. No neighbour reports more than a
	// quarter of it. Default 4096.
	MaxHeard int
	// MaxDialing bounds dials in progress. Default 8.
	MaxDialing int
	// RetryBase is the first wait after a failed dial; it doubles up to
	// RetryMax (defaults 2 s and 60 s).
	RetryBase, RetryMax time.Duration
	// Rand picks the random neighbour (default: a random source).
	Rand *rand.Rand
}

// Peer is what the mesh knows of one member.
type Peer struct {
	ID    ID
	Addr  group.Addr
	Addrs []wire.Address // public and local addresses, at most MaxAddrs: its own first, newest first
	Host  netip.AddrPort // its server, where a rendezvous through it works
	Heard time.Time      // last news of it

	Connected bool
	Since     time.Time // when the neighbourship started
	RTT       time.Duration
	Dialing   bool

	own      int  // leading Addrs the member gave itself
	reported bool // known only from reports (reporter's)
	reporter ID

	askedAt  time.Time
	failures int       // failed dials, refusals and drops since the last lasting neighbourship
	retryAt  time.Time // no dial before
	banned   time.Time // refused as a neighbour before
}

// Mesh is one member's view of its group.
type Mesh struct {
	cfg        Config
	self       ID
	selfAddr   group.Addr
	peers      map[ID]*Peer
	ring       []*Peer // heard members by group address; nil when stale
	best       map[ID]bool
	order      []ID // best, most wanted first (ring neighbours, then the rest)
	random     ID
	hasRand    bool
	byReporter map[ID]int       // members known only from each neighbour's reports
	gone       map[ID]time.Time // members the server says are gone: reports of them ignored until then
}

// New returns the view of member self.
func New(self ID, cfg Config) *Mesh {
	if cfg.MaxNeighbors <= 0 {
		cfg.MaxNeighbors = 64
	}
	if cfg.MaxHeard <= 0 {
		cfg.MaxHeard = 4096
	}
	if cfg.MaxDialing <= 0 {
		cfg.MaxDialing = 8
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 60 * time.Second
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Mesh{cfg: cfg, self: self, selfAddr: group.AddressOf(self), peers: map[ID]*Peer{}, best: map[ID]bool{}, byReporter: map[ID]int{}, gone: map[ID]time.Time{}}
}

// Self is this member's address on the ring.
func (m *Mesh) Self() group.Addr { return m.selfAddr }

// Peer returns what is known of id, or nil.
func (m *Mesh) Peer(id ID) *Peer { return m.peers[id] }

// Heard is the number of members known (not counting this one).
func (m *Mesh) Heard() int { return len(m.peers) }

// Hear records first-hand news of a member: announced by the server, met
// directly, or given by the application; addrs are the member's own. It
// reports whether the member was new. A full heard list makes room for
// it (the stalest member only reports named goes). News of this member
// itself is ignored.
func (m *Mesh) Hear(now time.Time, id ID, age time.Duration, addrs []wire.Address) bool {
	if id == m.self || age >= PeerTimeout {
		return false
	}
	delete(m.gone, id)
	p, isNew := m.peers[id], false
	if p == nil {
		if len(m.peers) >= m.cfg.MaxHeard && !m.evictReported() {
			return false // every place is taken by members met first-hand
		}
		p, isNew = m.add(id, now.Add(-age)), true
	}
	if p.reported {
		m.unreport(p)
	}
	m.heardAt(p, now.Add(-age))
	m.setOwnAddrs(p, addrs)
	return isNew
}

// HearReported records news of a member from a neighbour's report (from:
// that neighbour), age seconds old, with the addresses the report gives.
// Such news is second-hand: it takes the place of staler second-hand
// news when the heard list is full, and no neighbour fills more than a
// quarter of the list.
func (m *Mesh) HearReported(now time.Time, from, id ID, age time.Duration, addrs []wire.Address) bool {
	if id == m.self || age >= PeerTimeout {
		return false
	}
	at := now.Add(-age)
	if until, ok := m.gone[id]; ok {
		if now.Before(until) {
			return false // others still report it; the server said it is gone
		}
		delete(m.gone, id)
	}
	p, isNew := m.peers[id], false
	if p == nil {
		if m.byReporter[from] >= max(m.cfg.MaxHeard/4, 1) {
			return false
		}
		if len(m.peers) >= m.cfg.MaxHeard {
			v := m.stalestReported()
			if v == nil || !v.Heard.Before(at) {
				return false
			}
			m.Remove(v.ID)
		}
		p, isNew = m.add(id, at), true
		p.reported, p.reporter = true, from
		m.byReporter[from]++
	}
	m.heardAt(p, at)
	for _, a := range addrs {
		m.addAddr(p, a)
	}
	return isNew
}

func (m *Mesh) add(id ID, at time.Time) *Peer {
	p := &Peer{ID: id, Addr: group.AddressOf(id), Heard: at}
	m.peers[id] = p
	m.ring = nil
	return p
}

func (m *Mesh) heardAt(p *Peer, at time.Time) {
	if at.After(p.Heard) {
		p.Heard = at
	}
}

func (m *Mesh) unreport(p *Peer) {
	if p.reported {
		p.reported = false
		if m.byReporter[p.reporter]--; m.byReporter[p.reporter] <= 0 {
			delete(m.byReporter, p.reporter)
		}
	}
}

// stalestReported is the member with the oldest news among those known
// only from reports and neither connected nor being dialled, or nil.
func (m *Mesh) stalestReported() *Peer {
	var v *Peer
	for _, p := range m.peers {
		if p.reported && !p.Connected && !p.Dialing && (v == nil || p.Heard.Before(v.Heard)) {
			v = p
		}
	}
	return v
}

func (m *Mesh) evictReported() bool {
	v := m.stalestReported()
	if v == nil {
		return false
	}
	m.Remove(v.ID)
	return true
}

// setOwnAddrs puts the addresses a member gave itself first (they replace
// the ones it gave before); second-hand ones fill the places left.
func (m *Mesh) setOwnAddrs(p *Peer, addrs []wire.Address) {
	var own []wire.Address
	for _, a := range addrs {
		if !usable(a) {
			continue
		}
		if a.Origin == group.OriginHost {
			p.Host = a.AddrPort
			continue
		}
		if len(own) < MaxAddrs && !slices.ContainsFunc(own, func(x wire.Address) bool { return x.AddrPort == a.AddrPort }) {
			own = append(own, a)
		}
	}
	if len(own) == 0 {
		return
	}
	rest := p.Addrs[p.own:]
	p.Addrs = own
	for _, a := range rest {
		if len(p.Addrs) < MaxAddrs && !slices.ContainsFunc(p.Addrs, func(x wire.Address) bool { return x.AddrPort == a.AddrPort }) {
			p.Addrs = append(p.Addrs, a)
		}
	}
	p.own = len(own)
}

func usable(a wire.Address) bool {
	return a.AddrPort.IsValid() && a.AddrPort.Port() != 0 && !a.AddrPort.Addr().IsUnspecified()
}

// addAddr records a second-hand address: the newest go first after the
// member's own, and the oldest second-hand one makes room.
func (m *Mesh) addAddr(p *Peer, a wire.Address) {
	if !usable(a) {
		return
	}
	if a.Origin == group.OriginHost {
		if !p.Host.IsValid() {
			p.Host = a.AddrPort
		}
		return
	}
	if i := slices.IndexFunc(p.Addrs, func(x wire.Address) bool { return x.AddrPort == a.AddrPort }); i >= 0 {
		if i < p.own {
			return
		}
		p.Addrs = slices.Delete(p.Addrs, i, i+1)
	}
	if p.own >= MaxAddrs {
		return
	}
	p.Addrs = slices.Insert(p.Addrs, p.own, a)
	if len(p.Addrs) > MaxAddrs {
		p.Addrs = p.Addrs[:MaxAddrs]
	}
}

// DialAddrs is where to send a member IHellos besides the server: its
// own addresses, or, while it has given none, the two newest second-hand
// ones (so that a lying report makes members knock on few doors).
func (p *Peer) DialAddrs() []wire.Address {
	if p.own > 0 {
		return p.Addrs[:p.own]
	}
	return p.Addrs[:min(len(p.Addrs), 2)]
}

// Connected records that the member became a neighbour (both group inits
// exchanged).
func (m *Mesh) Connected(now time.Time, id ID, rtt time.Duration) {
	m.Hear(now, id, 0, nil)
	p := m.peers[id]
	if p == nil {
		return
	}
	p.Connected, p.Dialing, p.Since, p.RTT = true, false, now, rtt
}

// SetRTT updates a neighbour's round-trip time.
func (m *Mesh) SetRTT(id ID, rtt time.Duration) {
	if p := m.peers[id]; p != nil {
		p.RTT = rtt
	}
}

// Disconnected records that the neighbourship with id ended. byPeer says
// the member ended it (it left the group, dropped us, or its session
// died): it is then left out of the neighbour choice for a while, as
// after a failed dial, so that another member takes its place; whether it
// left or only dropped us, a later dial tells.
func (m *Mesh) Disconnected(now time.Time, id ID, byPeer bool) {
	p := m.peers[id]
	if p == nil {
		return
	}
	if p.Connected && now.Sub(p.Since) > m.cfg.RetryMax {
		p.failures = 0 // it was a lasting neighbourship
	}
	p.Connected = false
	if byPeer {
		m.backOff(now, p)
	}
}

// Dialing marks a dial as started.
func (m *Mesh) Dialing(id ID) {
	if p := m.peers[id]; p != nil {
		p.Dialing = true
	}
}

// DialFailed records a failed dial (or a refused group handshake): the
// next try waits, twice as long after each failure.
func (m *Mesh) DialFailed(now time.Time, id ID) {
	if p := m.peers[id]; p != nil {
		p.Dialing = false
		m.backOff(now, p)
	}
}

func (m *Mesh) backOff(now time.Time, p *Peer) {
	p.failures++
	wait := m.cfg.RetryBase << min(p.failures-1, 10)
	p.retryAt = now.Add(min(wait, m.cfg.RetryMax))
}

// Ban keeps a member out of the neighbour choice and refused as a
// neighbour for d (it misbehaved).
func (m *Mesh) Ban(now time.Time, id ID, d time.Duration) {
	if p := m.peers[id]; p != nil {
		p.Dialing = false
		p.retryAt = now.Add(d)
		p.banned = now.Add(d)
	}
}

// Remove forgets a member (the server said it is gone).
func (m *Mesh) Remove(id ID) {
	if p, ok := m.peers[id]; ok {
		m.unreport(p)
		delete(m.peers, id)
		delete(m.best, id)
		m.ring = nil
		if m.hasRand && m.random == id {
			m.hasRand = false
		}
	}
}

// Gone records that the server says the member has no session: it
// leaves the heard list, and reports of it are ignored for PeerTimeout
// (members that have not heard keep reporting it), unless it is heard of
// first-hand again.
func (m *Mesh) Gone(now time.Time, id ID) {
	if p := m.peers[id]; p != nil && p.Connected {
		return
	}
	m.Remove(id)
	if len(m.gone) >= m.cfg.MaxHeard {
		for g, until := range m.gone {
			if !now.Before(until) || len(m.gone) >= m.cfg.MaxHeard {
				delete(m.gone, g)
			}
		}
	}
	m.gone[id] = now.Add(PeerTimeout)
}

// Clean drops members without news for PeerTimeout (neighbours are kept:
// their session is the news) and returns them.
func (m *Mesh) Clean(now time.Time) []ID {
	var out []ID
	for id, p := range m.peers {
		if !p.Connected && !p.Dialing && now.Sub(p.Heard) >= PeerTimeout {
			out = append(out, id)
		}
	}
	for _, id := range out {
		m.Remove(id)
	}
	return out
}

// Neighbors lists the connected neighbours by peer ID.
func (m *Mesh) Neighbors() []ID {
	var out []ID
	for id, p := range m.peers {
		if p.Connected {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func (m *Mesh) connectedCount() int {
	n := 0
	for _, p := range m.peers {
		if p.Connected {
			n++
		}
	}
	return n
}

// CanAccept decides on a member that wants to become a neighbour: yes
// under MaxNeighbors; at the bound, yes only for a member the neighbour
// choice wants, in exchange for a connected neighbour it does not want
// (evict, which the caller drops). ok false: refuse.
func (m *Mesh) CanAccept(now time.Time, id ID) (ok bool, evict *ID) {
	if p := m.peers[id]; p != nil && p.Connected {
		return true, nil
	} else if p != nil && now.Before(p.banned) {
		return false, nil
	}
	if m.connectedCount() < m.cfg.MaxNeighbors {
		return true, nil
	}
	if !m.Best(now)[id] {
		return false, nil
	}
	if v := m.unwanted(); v != nil {
		return true, &v.ID
	}
	return false, nil
}

// unwanted is the connected neighbour outside the neighbour set that
// became one last (the least settled), or nil.
func (m *Mesh) unwanted() *Peer { return m.unwantedExcept(nil) }

// sortedRing returns the heard members by group address.
func (m *Mesh) sortedRing() []*Peer {
	if m.ring == nil {
		m.ring = make([]*Peer, 0, len(m.peers))
		for _, p := range m.peers {
			m.ring = append(m.ring, p)
		}
		sort.Slice(m.ring, func(i, j int) bool { return m.ring[i].Addr.Compare(m.ring[j].Addr) < 0 })
	}
	return m.ring
}

// EstimatedMemberCount estimates the group's size, this member included,
// from how densely the members nearest on the ring are packed (the gaps
// of up to 8 neighbours around this member's address are taken as
// typical of the ring), and never less than the members known.
func (m *Mesh) EstimatedMemberCount() float64 {
	ring := m.sortedRing()
	n := len(ring)
	known := float64(n + 1)
	if n < 4 {
		return known
	}
	gaps := min(8, n)
	start := m.firstAbove(ring, m.selfAddr) - gaps/2
	first := ring[mod(start, n)].Addr
	last := ring[mod(start+gaps, n)].Addr
	if gaps == n { // all the ring: the span is the whole circle
		return known
	}
	span := prefix64(last) - prefix64(first) // wraps mod 2^64 as wanted
	if span == 0 {
		return known
	}
	est := float64(gaps) * math.Exp2(64) / float64(span)
	return max(est, known)
}

func prefix64(a group.Addr) uint64 {
	var v uint64
	for _, b := range a[:8] {
		v = v<<8 | uint64(b)
	}
	return v
}

func mod(i, n int) int { return ((i % n) + n) % n }

// firstAbove is the index of the first ring entry above a (n if none).
func (m *Mesh) firstAbove(ring []*Peer, a group.Addr) int {
	return sort.Search(len(ring), func(i int) bool { return ring[i].Addr.Compare(a) > 0 })
}

// wantLimit bounds the neighbour set: a quarter of MaxNeighbors stays
// free for members whose own choice includes this one, so that a member
// that loses a neighbour finds others with room.
func (m *Mesh) wantLimit() int { return max(m.cfg.MaxNeighbors-m.cfg.MaxNeighbors/4, 1) }

// TargetNeighbors is how many neighbours a member of a group of the
// estimated size aims for: ⌊log2 N⌋ + 13.
func TargetNeighbors(estimate float64) int {
	if estimate < 1 {
		estimate = 1
	}
	return bits.Len64(uint64(estimate)) - 1 + baseNeighbors
}

// eligible: a member the neighbour choice may pick now: not one whose
// last dial failed, that refused us or that ended our neighbourship,
// until its retry time, so that another takes its place meanwhile (nor
// while that retry is under way: it may have left the group).
func (m *Mesh) eligible(p *Peer, now time.Time) bool {
	if p.Connected || p.Dialing && p.failures == 0 {
		return true
	}
	return !p.Dialing && !now.Before(p.retryAt)
}

// Best computes the neighbour set this member wants (and remembers it for
// Plan): all members when there are at most 6, otherwise the 3 nearest on
// each side on the ring, the 6 lowest-latency neighbours, one random
// member, and long links at 1/2, 1/4, 1/8... of the ring, up to
// TargetNeighbors(estimate), never more than three quarters of
// MaxNeighbors.
func (m *Mesh) Best(now time.Time) map[ID]bool {
	var cands []*Peer
	for _, p := range m.sortedRing() {
		if m.eligible(p, now) {
			cands = append(cands, p)
		}
	}
	best := map[ID]bool{}
	m.order = m.order[:0]
	limit := m.wantLimit()
	add := func(p *Peer) bool {
		if best[p.ID] || len(best) >= limit {
			return false
		}
		best[p.ID] = true
		m.order = append(m.order, p.ID)
		return true
	}
	if len(cands) <= smallGroup {
		for _, p := range cands {
			add(p)
		}
		m.best = best
		return best
	}
	m.ringPicks(cands, m.selfAddr, add)
	// Lowest latency among the connected.
	var conn []*Peer
	for _, p := range cands {
		if p.Connected && p.RTT > 0 {
			conn = append(conn, p)
		}
	}
	sort.Slice(conn, func(i, j int) bool { return conn[i].RTT < conn[j].RTT })
	for i := 0; i < len(conn) && i < lowLatency; i++ {
		add(conn[i])
	}
	// One random member, kept while it stays eligible.
	if rp := m.peers[m.random]; !m.hasRand || rp == nil || !m.eligible(rp, now) || best[m.random] {
		var pool []*Peer
		for _, p := range cands {
			if !best[p.ID] {
				pool = append(pool, p)
			}
		}
		m.hasRand = len(pool) > 0
		if m.hasRand {
			m.random = pool[m.cfg.Rand.IntN(len(pool))].ID
		}
	}
	if m.hasRand {
		add(m.peers[m.random])
	}
	target := min(TargetNeighbors(m.EstimatedMemberCount()), len(cands))
	m.fingers(cands, m.selfAddr, target, best, add)
	m.best = best
	return best
}

// ringPicks adds the ringEachSide members before and after a on the ring.
func (m *Mesh) ringPicks(cands []*Peer, a group.Addr, add func(*Peer) bool) {
	n := len(cands)
	up := sort.Search(n, func(i int) bool { return cands[i].Addr.Compare(a) > 0 })
	for i := range ringEachSide {
		add(cands[mod(up+i, n)])
		add(cands[mod(up-1-i, n)])
	}
}

// fingers adds long links: with k links missing, the cursor advances by
// n/2^k positions, then to the next member not yet chosen, so that the
// links land near 1/2, 1/4, 1/8... of the ring away.
func (m *Mesh) fingers(cands []*Peer, a group.Addr, target int, chosen map[ID]bool, add func(*Peer) bool) {
	n := len(cands)
	cur := sort.Search(n, func(i int) bool { return cands[i].Addr.Compare(a) >= 0 })
	for guard := 0; len(chosen) < target && guard < 4*n; guard++ {
		missing := target - len(chosen)
		step := n >> min(missing, 62)
		cur += max(step, 1)
		for j := 0; j < n && chosen[cands[mod(cur, n)].ID]; j++ {
			cur++
		}
		if !add(cands[mod(cur, n)]) {
			break
		}
	}
}

// BestFor lists, for a report to member id, the members it should know:
// those its own neighbour choice would pick from what this member has
// heard (ring neighbours and long links around its address), by peer ID.
func (m *Mesh) BestFor(now time.Time, id ID) []*Peer {
	addr := group.AddressOf(id)
	var cands []*Peer
	for _, p := range m.sortedRing() {
		if p.ID != id && m.eligible(p, now) && now.Sub(p.Heard) < PeerTimeout {
			cands = append(cands, p)
		}
	}
	chosen := map[ID]bool{}
	var out []*Peer
	add := func(p *Peer) bool {
		if chosen[p.ID] || len(out) >= group.MaxReportPeers {
			return false
		}
		chosen[p.ID] = true
		out = append(out, p)
		return true
	}
	if len(cands) <= smallGroup {
		for _, p := range cands {
			add(p)
		}
	} else {
		m.ringPicks(cands, addr, add)
		target := min(TargetNeighbors(m.EstimatedMemberCount()), len(cands))
		m.fingers(cands, addr, target, chosen, add)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	return out
}

// Plan computes the neighbour set and what to do about it: members of the
// set to dial (not connected, not being dialled, not waiting to retry),
// most wanted first, within MaxDialing and MaxNeighbors; at the bound,
// connected neighbours outside the set to drop to make room for wanted
// ones; and neighbours outside the set to ask to disconnect, as many as
// exceed the set, each at most once per AskCloseDelay and not in the
// first AskCloseDelay of the neighbourship.
func (m *Mesh) Plan(now time.Time) (dial, drop, askClose []ID) {
	best := m.Best(now)
	dialing, connected := 0, 0
	for _, p := range m.peers {
		if p.Dialing {
			dialing++
		}
		if p.Connected {
			connected++
		}
	}
	dropped := map[ID]bool{}
	for _, id := range m.order {
		p := m.peers[id]
		if p.Connected || p.Dialing || now.Before(p.retryAt) {
			continue
		}
		if dialing >= m.cfg.MaxDialing {
			break
		}
		if connected+dialing >= m.cfg.MaxNeighbors {
			v := m.unwantedExcept(dropped)
			if v == nil {
				break
			}
			dropped[v.ID] = true
			drop = append(drop, v.ID)
			connected--
		}
		dial = append(dial, id)
		dialing++
	}
	excess := connected - len(best)
	var extra []*Peer
	for _, p := range m.peers {
		if p.Connected && !best[p.ID] && !dropped[p.ID] {
			extra = append(extra, p)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return bytes.Compare(extra[i].ID[:], extra[j].ID[:]) < 0 })
	for _, p := range extra {
		if excess <= 0 {
			break
		}
		if now.Sub(p.Since) < AskCloseDelay || (!p.askedAt.IsZero() && now.Sub(p.askedAt) < AskCloseDelay) {
			continue
		}
		p.askedAt = now
		askClose = append(askClose, p.ID)
		excess--
	}
	return dial, drop, askClose
}

func (m *Mesh) unwantedExcept(skip map[ID]bool) *Peer {
	var v *Peer
	for _, p := range m.peers {
		if p.Connected && !m.best[p.ID] && !skip[p.ID] && (v == nil || p.Since.After(v.Since) || p.Since.Equal(v.Since) && bytes.Compare(p.ID[:], v.ID[:]) > 0) {
			v = p
		}
	}
	return v
}

// AcceptClose decides on a neighbour's disconnect request: yes when this
// member has more neighbours than it wants and the requester is not one
// it wants.
func (m *Mesh) AcceptClose(now time.Time, id ID) bool {
	if len(m.best) == 0 {
		m.Best(now)
	}
	return len(m.best) > 0 && m.connectedCount() > len(m.best) && !m.best[id]
}

// Nearest returns, among the connected neighbours for which ok holds,
// the one nearest dest on the ring, and whether this member itself is
// nearer than all of them (then it is the destination).
func (m *Mesh) Nearest(dest group.Addr, ok func(ID) bool) (ID, bool) {
	bestD := group.Distance(m.selfAddr, dest)
	var bestID ID
	self := true
	for id, p := range m.peers {
		if !p.Connected || !ok(id) {
			continue
		}
		d := group.Distance(p.Addr, dest)
		if c := d.Cmp(bestD); c < 0 || c == 0 && !self && bytes.Compare(id[:], bestID[:]) < 0 {
			bestD, bestID, self = d, id, false
		}
	}
	return bestID, self
}

// NextNeighbor returns the connected neighbour right after (increasing)
// or before this member on the ring, among those for which ok holds.
func (m *Mesh) NextNeighbor(increasing bool, ok func(ID) bool) (ID, bool) {
	var ring []*Peer
	for _, p := range m.sortedRing() {
		if p.Connected && ok(p.ID) {
			ring = append(ring, p)
		}
	}
	if len(ring) == 0 {
		return ID{}, false
	}
	up := m.firstAbove(ring, m.selfAddr)
	if increasing {
		return ring[mod(up, len(ring))].ID, true
	}
	return ring[mod(up-1, len(ring))].ID, true
}
