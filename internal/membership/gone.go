package membership

import (
	"sync"
	"time"
)

// Group members learn about each other from the server and from each
// other's group reports, and keep a peer they heard of for 5 minutes
// (librtmfp's NETGROUP_PEER_TIMEOUT). A member that dials a peer whose
// session has ended would retry for over a minute; MonaServer 2 answers
// such a lookup with a Redirect holding one unspecified address, which
// librtmfp reads as "this peer is gone" (research notes §2.4 step 7).
//
// goneTable remembers the peers that left a group recently, for as long
// as others may still have them in their lists, so that the server can
// give that answer at once to a lookup of one with no session.
type goneTable struct {
	mu   sync.Mutex
	byID map[[32]byte]gonePeer
	// queue[head:] is every departure still remembered, oldest first, for
	// expiry and the size bound. Expiring advances head; the slice is
	// compacted only once the expired prefix is as long as what is left,
	// so each entry is copied at most once per entry expired since the
	// last compaction: O(1) amortized per add, however full the table.
	// (The server's receive goroutine asks for every unknown peer ID.)
	queue []goneEntry
	head  int
	limit int // entries kept at most
}

type gonePeer struct {
	key string // developer key: the answer respects key isolation
	at  time.Time
}

type goneEntry struct {
	id [32]byte
	at time.Time
}

func newGoneTable(limit int) *goneTable {
	return &goneTable{byID: map[[32]byte]gonePeer{}, limit: limit}
}

// expire drops what is too old or too many; t.mu held.
func (t *goneTable) expire(now time.Time) {
	for t.head < len(t.queue) && (now.Sub(t.queue[t.head].at) > GoneLifetime || len(t.queue)-t.head > t.limit) {
		e := t.queue[t.head]
		if p, ok := t.byID[e.id]; ok && p.at.Equal(e.at) {
			delete(t.byID, e.id)
		}
		t.head++
	}
	if t.head > 0 && t.head >= len(t.queue)-t.head {
		t.queue = t.queue[:copy(t.queue, t.queue[t.head:])]
		t.head = 0
	}
}

// add remembers that peer id of developer key key left at now.
func (t *goneTable) add(id [32]byte, key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[id] = gonePeer{key: key, at: now}
	t.queue = append(t.queue, goneEntry{id, now})
	t.expire(now)
}

// get returns the developer key of a peer that left recently.
func (t *goneTable) get(id [32]byte, now time.Time) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	p, ok := t.byID[id]
	return p.key, ok
}
