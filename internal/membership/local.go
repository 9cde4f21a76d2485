package membership

import (
	"bytes"
	"container/heap"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// shards spreads groups over independently locked maps, so that joins in
// different groups do not wait for each other.
const shards = 64

// Local is the Directory of a single server: every member is connected
// to this process, and every announcement goes to its Handler.
type Local struct {
	policy  Policy
	h       Handler
	seed    maphash.Seed
	shard   [shards]shard
	groups  atomic.Int64
	members atomic.Int64
	gone    *goneTable
}

var _ Directory = (*Local)(nil)

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
// (DefaultPolicy if zero) that hands announcements to h. It panics on a
// policy that asks for more than 16 announcements per join.
func NewLocal(p Policy, h Handler) *Local {
	if p == (Policy{}) {
		p = DefaultPolicy
	}
	if p.MaxMessages() > 16 || p.Successors < 0 || p.Predecessors < 0 || p.Random < 0 {
		panic("membership: policy out of range")
	}
	d := &Local{policy: p, h: h, seed: maphash.MakeSeed(), gone: newGoneTable(MaxGone)}
	for i := range d.shard {
		d.shard[i].groups = map[GroupKey]*group{}
		d.shard[i].rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return d
}

// Policy is the directory's bootstrap policy.
func (d *Local) Policy() Policy { return d.policy }

// shardOf picks a group's shard by its ID alone (Groups looks an ID up
// under every key), with a keyed hash: kind-0x15 group IDs are chosen by
// the client, so a plain byte of the ID would let one pile every group it
// makes onto one lock.
func (d *Local) shardOf(id [32]byte) *shard {
	return &d.shard[maphash.Bytes(d.seed, id[:])%shards]
}

// deliver hands announcements to the Handler, with no lock held.
func (d *Local) deliver(plan []Announcement) {
	for _, a := range plan {
		d.h.Announce(a.To.Local, a)
	}
}

// Join implements Directory.
func (d *Local) Join(g GroupKey, m Member) (JoinResult, int) {
	var buf [16]Announcement
	plan, res := d.join(g, m, buf[:0])
	d.deliver(plan)
	return res, len(plan)
}

func (d *Local) join(g GroupKey, m Member, out []Announcement) ([]Announcement, JoinResult) {
	s := d.shardOf(g.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	gr := s.groups[g]
	if gr == nil {
		gr = &group{since: m.Joined}
		s.groups[g] = gr
		d.groups.Add(1)
	} else if old := gr.ring.Find(m.Addr); old != nil {
		switch {
		case old.Local == m.Local:
			return out, Already
		case m.Since.Before(old.Since):
			return out, Superseded
		}
		old.Local, old.Joined, old.Since = m.Local, m.Joined, m.Since
		return out, Replaced
	}
	out = d.policy.planJoin(&gr.ring, &m, s.rnd.IntN, out)
	for i := range out {
		out[i].Group = g
	}
	gr.ring.Insert(m, s.rnd.Uint64())
	d.members.Add(1)
	return out, Joined
}

// Leave implements Directory.
func (d *Local) Leave(g GroupKey, m Member, now time.Time) bool {
	var buf [1]Announcement
	plan, ok := d.leave(g, m, buf[:0])
	if !ok {
		return false
	}
	d.gone.add(m.Peer, g.DevKey, now)
	d.deliver(plan)
	return true
}

func (d *Local) leave(g GroupKey, m Member, out []Announcement) ([]Announcement, bool) {
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
	out = planLeave(&gr.ring, gr.ring.Rank(addr), out)
	for i := range out {
		out[i].Group = g
	}
	return out, true
}

// Gone implements Directory.
func (d *Local) Gone(peer [32]byte, now time.Time) (string, bool) { return d.gone.get(peer, now) }

// Totals implements Directory.
func (d *Local) Totals() (groups, members int) {
	return int(d.groups.Load()), int(d.members.Load())
}

// Keys implements Directory. Each shard is copied under its lock (a
// summary per group, no sorting there); the largest groups of each key
// are picked afterwards, in O(n log limit).
func (d *Local) Keys(limit int) []KeySummary {
	limit = max(limit, 0)
	byKey := map[string]*keyTop{}
	var snap []groupEntry
	for i := range d.shard {
		s := &d.shard[i]
		s.mu.Lock()
		for g, gr := range s.groups {
			snap = append(snap, groupEntry{g.DevKey, GroupSummary{ID: g.ID, Members: gr.ring.Len(), Since: gr.since}})
		}
		s.mu.Unlock()
		for _, e := range snap {
			k := byKey[e.key]
			if k == nil {
				k = &keyTop{sum: KeySummary{DevKey: e.key}}
				byKey[e.key] = k
			}
			k.sum.GroupCount++
			k.sum.Members += e.g.Members
			k.offer(e.g, limit)
		}
		snap = snap[:0]
	}
	out := make([]KeySummary, 0, len(byKey))
	for _, k := range byKey {
		k.sum.Groups = k.sorted()
		out = append(out, k.sum)
	}
	slices.SortFunc(out, func(a, b KeySummary) int { return strings.Compare(a.DevKey, b.DevKey) })
	return out
}

type groupEntry struct {
	key string
	g   GroupSummary
}

// larger orders groups largest first, then by ID.
func larger(a, b GroupSummary) bool {
	if a.Members != b.Members {
		return a.Members > b.Members
	}
	return bytes.Compare(a.ID[:], b.ID[:]) < 0
}

// keyTop keeps one key's largest groups: a min-heap (by larger) of at
// most the limit.
type keyTop struct {
	sum KeySummary
	top []GroupSummary
}

func (k *keyTop) Len() int           { return len(k.top) }
func (k *keyTop) Less(i, j int) bool { return larger(k.top[j], k.top[i]) }
func (k *keyTop) Swap(i, j int)      { k.top[i], k.top[j] = k.top[j], k.top[i] }
func (k *keyTop) Push(x any)         { k.top = append(k.top, x.(GroupSummary)) }
func (k *keyTop) Pop() any {
	x := k.top[len(k.top)-1]
	k.top = k.top[:len(k.top)-1]
	return x
}

func (k *keyTop) offer(g GroupSummary, limit int) {
	switch {
	case len(k.top) < limit:
		heap.Push(k, g)
	case limit > 0 && larger(g, k.top[0]):
		k.top[0] = g
		heap.Fix(k, 0)
	}
}

func (k *keyTop) sorted() []GroupSummary {
	out := slices.Clone(k.top)
	slices.SortFunc(out, func(a, b GroupSummary) int {
		if larger(a, b) {
			return -1
		}
		if larger(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// Groups implements Directory.
func (d *Local) Groups(id [32]byte) []GroupKey {
	s := d.shardOf(id)
	s.mu.Lock()
	var out []GroupKey
	for g := range s.groups {
		if g.ID == id {
			out = append(out, g)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b GroupKey) int { return strings.Compare(a.DevKey, b.DevKey) })
	return out
}

// Members implements Directory.
func (d *Local) Members(g GroupKey, limit int) ([]Member, GroupSummary, bool) {
	limit = max(limit, 0)
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
