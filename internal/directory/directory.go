// Package directory says where a connected peer lives: the rendezvous
// server asks it for a peer ID's session (to introduce someone to it, to
// relay a message to it) instead of keeping its own map of clients. Local
// is the directory of a single server, in memory; a cluster's directory
// (internal/cluster) also knows the peers that other nodes hold and
// carries introductions and relays to them. Both pass the conformance
// suite in package directorytest, so the server behaves the same on one
// node and on many.
package directory

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Errors a Relay can end with.
var (
	// ErrGone: the peer is no longer connected where the directory said.
	ErrGone = errors.New("directory: peer not connected")
	// ErrBehind: the peer is not keeping up with its messages.
	ErrBehind = errors.New("directory: peer is not keeping up")
	// ErrUnreachable: the node that holds the peer did not answer.
	ErrUnreachable = errors.New("directory: the peer's node did not answer")
)

// Peer is one connected client: where it is and what the server needs to
// introduce others to it.
type Peer struct {
	ID       [32]byte
	Key      string           // developer key: peers of different keys never meet
	Observed netip.AddrPort   // the address its session comes from
	Addrs    []netip.AddrPort // the addresses it reported (setPeerInfo); never modified after Put
	// Since is when this session connected: of two sessions of one peer
	// ID, the newer one is the peer (it reconnected).
	Since time.Time
	// Node is the name of the node that holds the session (a cluster's
	// node; empty in a single server's directory).
	Node string
	// Local is this node's handle on the session; nil for a peer another
	// node holds.
	Local any
}

// Introduction asks the node that holds Target to send it Forwarded
// IHellos, one per reply address, on behalf of an initiator that wrote to
// another node (RFC 7016 §3.5.1.4).
type Introduction struct {
	Target [32]byte
	EPD    []byte // the initiator's endpoint discriminator, as received
	Tag    []byte
	Reply  []Address // where the target should answer the initiator
}

// Address is an address with its RTMFP origin (reported by its owner or
// observed by the server).
type Address struct {
	AddrPort netip.AddrPort
	Origin   byte
}

// Relay is a message for a peer's NetConnection (an onRelay command, already
// encoded) from a peer of developer key Key.
type Relay struct {
	Target [32]byte
	Key    string
	Msg    []byte
}

// Handler is what the server does with introductions and relays for the
// sessions it holds; the directory calls it for peers whose Local handle is
// set (here or, in a cluster, when another node asks).
type Handler interface {
	// Introduce sends the Forwarded IHellos to the session local.
	Introduce(local any, in Introduction)
	// Relay writes the message to the session local; ErrGone or
	// ErrBehind when it cannot.
	Relay(local any, r Relay) error
}

// Directory is where peers live. Implementations are safe for concurrent
// use. Lookup is on the path of every introduction, so it must not block
// on anything but a short lock; Introduce and Relay never wait for a
// network round trip.
type Directory interface {
	// Put records a session this node holds (p.Local set) or updates its
	// addresses. Of the sessions of one peer ID (the same identity
	// reconnected before its old session timed out), the newest (Since;
	// of equal ones the last recorded) is the peer; the others are kept,
	// and updated, but not found until the newer ones are removed.
	Put(p Peer)
	// Remove forgets the session local of peer id; when that was the
	// peer, the next newest session still recorded, if any, is the peer
	// again. It reports whether local was the peer.
	Remove(id [32]byte, local any) bool
	// Lookup returns the newest session of a peer, wherever it lives.
	Lookup(id [32]byte) (Peer, bool)
	// RemoteSessions counts the sessions of developer key key that other
	// nodes hold (0 in a single server).
	RemoteSessions(key string) int
	// Introduce hands an introduction to the node that holds p (from a
	// Lookup), which sends the Forwarded IHellos. It does not wait.
	Introduce(p Peer, in Introduction)
	// Relay delivers r to p (from a Lookup) and calls done with the
	// result, once: at once for a local peer, when the holding node
	// answers (or fails to, ErrUnreachable) for a remote one. done must
	// not block.
	Relay(p Peer, r Relay, done func(error))
	// Range calls fn for every peer, newest session of each, until fn
	// returns false (for the admin API, not for packet paths).
	Range(fn func(Peer) bool)
}

// Sessions is one peer ID's sessions on one node, oldest first: the last
// is the peer. A peer ID rarely has more than one.
type Sessions []Peer

// Put records p, or updates its session (the same Local handle) in place;
// it reports whether the peer, the last session, is p now.
func (ss Sessions) Put(p Peer) (Sessions, bool) {
	for i := range ss {
		if ss[i].Local == p.Local {
			ss[i] = p
			return ss, i == len(ss)-1
		}
	}
	i := len(ss)
	for i > 0 && p.Since.Before(ss[i-1].Since) {
		i--
	}
	return slices.Insert(ss, i, p), i == len(ss)
}

// Remove forgets the session local; it reports whether it was the peer.
func (ss Sessions) Remove(local any) (Sessions, bool) {
	for i := range ss {
		if ss[i].Local == local {
			return slices.Delete(ss, i, i+1), i == len(ss)-1
		}
	}
	return ss, false
}

// Peer is the newest session.
func (ss Sessions) Peer() (Peer, bool) {
	if len(ss) == 0 {
		return Peer{}, false
	}
	return ss[len(ss)-1], true
}

// Local is the directory of a single server: every peer is connected to
// this process.
type Local struct {
	h  Handler
	mu sync.RWMutex
	m  map[[32]byte]Sessions
}

var _ Directory = (*Local)(nil)

// NewLocal returns an empty directory that hands introductions and relays
// to h.
func NewLocal(h Handler) *Local { return &Local{h: h, m: map[[32]byte]Sessions{}} }

// Put implements Directory.
func (d *Local) Put(p Peer) {
	d.mu.Lock()
	d.m[p.ID], _ = d.m[p.ID].Put(p)
	d.mu.Unlock()
}

// Remove implements Directory.
func (d *Local) Remove(id [32]byte, local any) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	ss, was := d.m[id].Remove(local)
	if len(ss) == 0 {
		delete(d.m, id)
	} else {
		d.m[id] = ss
	}
	return was
}

// Lookup implements Directory.
func (d *Local) Lookup(id [32]byte) (Peer, bool) {
	d.mu.RLock()
	p, ok := d.m[id].Peer()
	d.mu.RUnlock()
	return p, ok
}

// RemoteSessions implements Directory: a single server has none.
func (d *Local) RemoteSessions(string) int { return 0 }

// current returns the handle of p's session if it is still the one
// recorded.
func (d *Local) current(p Peer) (any, bool) {
	d.mu.RLock()
	cur, ok := d.m[p.ID].Peer()
	d.mu.RUnlock()
	return cur.Local, ok && p.Local != nil && cur.Local == p.Local
}

// Introduce implements Directory.
func (d *Local) Introduce(p Peer, in Introduction) {
	if local, ok := d.current(p); ok {
		d.h.Introduce(local, in)
	}
}

// Relay implements Directory.
func (d *Local) Relay(p Peer, r Relay, done func(error)) {
	local, ok := d.current(p)
	if !ok {
		done(ErrGone)
		return
	}
	done(d.h.Relay(local, r))
}

// Range implements Directory.
func (d *Local) Range(fn func(Peer) bool) {
	d.mu.RLock()
	all := make([]Peer, 0, len(d.m))
	for _, ss := range d.m {
		p, _ := ss.Peer()
		all = append(all, p)
	}
	d.mu.RUnlock()
	for _, p := range all {
		if !fn(p) {
			return
		}
	}
}

// Len is the number of peers recorded.
func (d *Local) Len() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.m)
}
