package server

import (
	"net/netip"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Group members learn about each other from the server and from each
// other's group reports, and keep a peer they heard of for 5 minutes
// (librtmfp's NETGROUP_PEER_TIMEOUT). A member that dials a peer whose
// session has ended would retry for over a minute; MonaServer 2 answers
// such a lookup with a Redirect holding one unspecified address
// (0.0.0.0:0, location 0), which librtmfp reads as "this peer is gone"
// and drops it from its heard list (research notes §2.4 step 7).
//
// deadPeers remembers the peer IDs of recently ended sessions that were
// group members, for as long as others may still have them in their
// lists, so that a lookup for one of them gets that answer at once.
// Peers never seen get the usual silence.
type deadPeers struct {
	mu   sync.Mutex
	byID map[[32]byte]deadPeer
	// queue[head:] is every death still remembered, oldest first, for
	// expiry and the size bound. Expiring advances head; the slice is
	// compacted only once the expired prefix is as long as what is left,
	// so each entry is copied at most once per entry expired since the
	// last compaction: O(1) amortized per add, however full the table.
	// (The lookup path takes mu for every unknown peer ID.)
	queue []deadEntry
	head  int
	limit int // entries kept at most (maxDeadPeers)
}

type deadPeer struct {
	key string // developer key: the answer respects key isolation
	at  time.Time
}

type deadEntry struct {
	id [32]byte
	at time.Time
}

const (
	deadPeerLifetime = 5 * time.Minute
	maxDeadPeers     = 1 << 16
)

func newDeadPeers(limit int) *deadPeers {
	return &deadPeers{byID: map[[32]byte]deadPeer{}, limit: limit}
}

// expire drops what is too old or too many; d.mu held.
func (d *deadPeers) expire(now time.Time) {
	for d.head < len(d.queue) && (now.Sub(d.queue[d.head].at) > deadPeerLifetime || len(d.queue)-d.head > d.limit) {
		e := d.queue[d.head]
		if p, ok := d.byID[e.id]; ok && p.at.Equal(e.at) {
			delete(d.byID, e.id)
		}
		d.head++
	}
	if d.head > 0 && d.head >= len(d.queue)-d.head {
		d.queue = d.queue[:copy(d.queue, d.queue[d.head:])]
		d.head = 0
	}
}

func (d *deadPeers) add(id [32]byte, key string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byID[id] = deadPeer{key: key, at: now}
	d.queue = append(d.queue, deadEntry{id, now})
	d.expire(now)
}

// key returns the developer key of a recently dead member.
func (d *deadPeers) key(id [32]byte, now time.Time) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	p, ok := d.byID[id]
	return p.key, ok
}

// signalDead answers a lookup for a peer that is no longer connected: if
// it was a group member that died recently, the initiator gets a
// Redirect with one unspecified address. initKey is the initiator's
// developer key, or "" for an initiator with no connected session
// (served only when anonymous lookups are).
func (s *Server) signalDead(e *engine.Engine, src netip.AddrPort, tag []byte, id [32]byte, initKey string, anonymous bool) bool {
	if anonymous && s.cfg.RefuseAnonymousLookups {
		return false
	}
	now := time.Now()
	key, ok := s.dead.key(id, now)
	if !ok || !anonymous && key != initKey {
		return false
	}
	if anonymous && !s.prefix.Allow(src.Addr(), now) {
		return false // an unproven source pays its prefix's budget, as for introductions
	}
	e.Redirect(src, tag, []wire.Address{{AddrPort: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), Origin: wire.OriginUnknown}})
	return true
}
