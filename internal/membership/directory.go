// Package membership keeps NetGroup membership for the rendezvous server:
// each group's members on a ring ordered by group address, the bootstrap
// policy that decides whom to tell about whom (Policy), and the Directory
// that holds every group, scoped by developer key. It does no I/O: the
// server sends the announcements it returns.
package membership

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// GroupKey names a group: developer keys isolate applications, so the same
// group ID under two keys is two groups.
type GroupKey struct {
	DevKey string
	ID     [32]byte
}

// Directory is where group membership lives. The server calls it from its
// event handlers without holding any lock of its own, then delivers the
// announcements it returns (those whose To.Local is set; an
// implementation that also knows members served by other nodes, such as
// a cluster's, carries theirs itself). Implementations are safe for
// concurrent use, and each call costs O(log n) in the group's size.
type Directory interface {
	// Join adds m to group g and appends to out the announcements it calls
	// for. If the peer is a member already (the same group address) it
	// stays where it is: ok is false when it is the same membership (the
	// same Local handle), otherwise the newer handle takes over, without
	// announcements (the group knows the peer already), as a peer ID's
	// newest session wins in the server's registry.
	Join(g GroupKey, m Member, out []Announcement) (_ []Announcement, ok bool)
	// Leave removes m (found by its group address, and only if its Local
	// handle is still m's) from g, deleting the group with its last
	// member, and appends the repair announcement; ok is false if m was
	// not there.
	Leave(g GroupKey, m Member, out []Announcement) (_ []Announcement, ok bool)
	// Totals counts groups and memberships.
	Totals() (groups, members int)
	// Keys summarises each developer key's groups, by key.
	Keys() []KeySummary
	// Groups lists the groups with a given ID (one per developer key).
	Groups(id [32]byte) []GroupKey
	// Members lists up to limit members of g in ring order (without
	// their Local handles), with the group's summary; ok is false if the
	// group has no members.
	Members(g GroupKey, limit int) (_ []Member, _ GroupSummary, ok bool)
}

// KeySummary is one developer key's groups.
type KeySummary struct {
	DevKey  string
	Members int
	Groups  []GroupSummary // largest first
}

// GroupSummary is one group's size.
type GroupSummary struct {
	ID      [32]byte
	Members int
	Since   time.Time // when the group was created (its first member joined)
}

// shards spreads groups over independently locked maps, so that joins in
// different groups do not wait for each other.
const shards = 64

// Local is the Directory of a single server: every member is connected
// to this process.
type Local struct {
	policy  Policy
	shard   [shards]shard
	groups  atomic.Int64
	members atomic.Int64
}

type shard struct {
	mu     sync.Mutex
	groups map[GroupKey]*group
	rnd    *rand.Rand
}

type group struct {
	ring  Ring
	since time.Time
}

// NewLocal returns an empty directory with the given bootstrap policy
// (DefaultPolicy if zero). It panics on a policy that asks for more than
// 16 announcements per join.
func NewLocal(p Policy) *Local {
	if p == (Policy{}) {
		p = DefaultPolicy
	}
	if p.MaxMessages() > 16 || p.Successors < 0 || p.Predecessors < 0 || p.Random < 0 {
		panic("membership: policy out of range")
	}
	d := &Local{policy: p}
	for i := range d.shard {
		d.shard[i].groups = map[GroupKey]*group{}
		d.shard[i].rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return d
}

// Policy is the directory's bootstrap policy.
func (d *Local) Policy() Policy { return d.policy }

func (d *Local) shardOf(id [32]byte) *shard { return &d.shard[id[0]%shards] } // group IDs are hashes

// Join implements Directory.
func (d *Local) Join(g GroupKey, m Member, out []Announcement) ([]Announcement, bool) {
	s := d.shardOf(g.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	gr := s.groups[g]
	if gr == nil {
		gr = &group{since: m.Joined}
		s.groups[g] = gr
		d.groups.Add(1)
	} else if old := gr.ring.Find(m.Addr); old != nil {
		if old.Local == m.Local {
			return out, false
		}
		old.Local, old.Joined = m.Local, m.Joined
		return out, true
	}
	out = d.policy.planJoin(&gr.ring, &m, s.rnd.IntN, out)
	gr.ring.Insert(m, s.rnd.Uint64())
	d.members.Add(1)
	return out, true
}

// Leave implements Directory.
func (d *Local) Leave(g GroupKey, m Member, out []Announcement) ([]Announcement, bool) {
	s := d.shardOf(g.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	gr := s.groups[g]
	if gr == nil {
		return out, false
	}
	addr := m.Addr
	if old := gr.ring.Find(addr); old == nil || old.Local != m.Local {
		return out, false
	}
	gr.ring.Delete(addr)
	d.members.Add(-1)
	if gr.ring.Len() == 0 {
		delete(s.groups, g)
		d.groups.Add(-1)
		return out, true
	}
	return planLeave(&gr.ring, gr.ring.Rank(addr), out), true
}

// Totals implements Directory.
func (d *Local) Totals() (groups, members int) {
	return int(d.groups.Load()), int(d.members.Load())
}

// Keys implements Directory. It visits every group: for the admin API,
// not for the join path.
func (d *Local) Keys() []KeySummary {
	byKey := map[string]*KeySummary{}
	for i := range d.shard {
		s := &d.shard[i]
		s.mu.Lock()
		for g, gr := range s.groups {
			k := byKey[g.DevKey]
			if k == nil {
				k = &KeySummary{DevKey: g.DevKey}
				byKey[g.DevKey] = k
			}
			n := gr.ring.Len()
			k.Members += n
			k.Groups = append(k.Groups, GroupSummary{ID: g.ID, Members: n, Since: gr.since})
		}
		s.mu.Unlock()
	}
	out := make([]KeySummary, 0, len(byKey))
	for _, k := range byKey {
		sort.Slice(k.Groups, func(i, j int) bool {
			a, b := k.Groups[i], k.Groups[j]
			if a.Members != b.Members {
				return a.Members > b.Members
			}
			return bytes.Compare(a.ID[:], b.ID[:]) < 0
		})
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DevKey < out[j].DevKey })
	return out
}

// Groups implements Directory.
func (d *Local) Groups(id [32]byte) []GroupKey {
	s := d.shardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []GroupKey
	for g := range s.groups {
		if g.ID == id {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DevKey < out[j].DevKey })
	return out
}

// Members implements Directory.
func (d *Local) Members(g GroupKey, limit int) ([]Member, GroupSummary, bool) {
	s := d.shardOf(g.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	gr := s.groups[g]
	if gr == nil {
		return nil, GroupSummary{}, false
	}
	out := make([]Member, 0, min(limit, gr.ring.Len()))
	gr.ring.Walk(func(m *Member) bool {
		if len(out) >= limit {
			return false
		}
		mm := *m
		mm.Local = nil // the handle stays inside the server
		out = append(out, mm)
		return true
	})
	return out, GroupSummary{ID: g.ID, Members: gr.ring.Len(), Since: gr.since}, true
}
