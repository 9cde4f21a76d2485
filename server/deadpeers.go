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
	mu    sync.Mutex
	byID  map[[32]byte]deadPeer
	queue []deadEntry // in order of death, for expiry and the size bound
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

func newDeadPeers() *deadPeers { return &deadPeers{byID: map[[32]byte]deadPeer{}} }

// expire drops what is too old or too many; d.mu held.
func (d *deadPeers) expire(now time.Time) {
	n := 0
	for n < len(d.queue) && (now.Sub(d.queue[n].at) > deadPeerLifetime || len(d.queue)-n > maxDeadPeers) {
		e := d.queue[n]
		if p, ok := d.byID[e.id]; ok && p.at.Equal(e.at) {
			delete(d.byID, e.id)
		}
		n++
	}
	if n > 0 {
		d.queue = append(d.queue[:0], d.queue[n:]...)
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
