package portal

import (
	"testing"
	"time"
)

// When the session table is full, the oldest session goes (it would
// expire first anyway), never an arbitrary one.
func TestSessionsEvictOldestFirst(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ss := newSessions(func() time.Time { return now }, 3)
	var ids []string
	for range 3 {
		id, _ := ss.start("acct", false)
		ids = append(ids, id)
		now = now.Add(time.Second)
	}
	for round := range 20 {
		id, _ := ss.start("acct", false)
		now = now.Add(time.Second)
		if ss.lookup(ids[0]) != nil {
			t.Fatalf("round %d: the oldest session survived", round)
		}
		for _, kept := range ids[1:] {
			if ss.lookup(kept) == nil {
				t.Fatalf("round %d: a newer session was evicted", round)
			}
		}
		ids = append(ids[1:], id)
	}
	// Ended sessions free their place: nothing live is evicted for them.
	ss.end(ids[1])
	id, _ := ss.start("acct", false)
	if ss.lookup(ids[0]) == nil || ss.lookup(ids[2]) == nil || ss.lookup(id) == nil {
		t.Fatal("a live session was evicted while there was room")
	}
	// Expired sessions go before live ones.
	now = now.Add(sessionTTL - 2*time.Second) // ids[0] has expired
	id2, _ := ss.start("acct", false)
	if ss.lookup(ids[2]) == nil || ss.lookup(id) == nil || ss.lookup(id2) == nil {
		t.Fatal("a live session was evicted while an expired one was there")
	}
	if len(ss.m) != ss.order.Len() {
		t.Fatalf("%d sessions, %d in the order", len(ss.m), ss.order.Len())
	}
}
