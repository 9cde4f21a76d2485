package membership

import (
	"bytes"
	"time"
)

// Member is one peer in one group.
type Member struct {
	Peer   [32]byte // peer ID
	Addr   [32]byte // group address, flash.GroupAddress(Peer): the ring order
	Joined time.Time
	// Since is when the member's session connected: of two sessions of
	// one peer ID, the newer one is the member (the peer reconnected).
	Since time.Time
	// Local is the server's handle on a member connected to this process
	// (where its bootstrap messages go); nil for a member that another
	// node serves.
	Local any
}

// Ring is one group's members ordered by group address: an
// order-statistics treap, so that insert, delete, rank and "the i-th
// member" are all O(log n) and a random member is one rank away.
// Priorities come from the caller's random source. Not safe for
// concurrent use.
type Ring struct {
	root *node
}

type node struct {
	m           Member
	left, right *node
	prio        uint64
	size        int32
}

func (n *node) sz() int {
	if n == nil {
		return 0
	}
	return int(n.size)
}

func (n *node) fix() { n.size = int32(1 + n.left.sz() + n.right.sz()) }

func cmp(a, b *[32]byte) int { return bytes.Compare(a[:], b[:]) }

// Len is the number of members.
func (r *Ring) Len() int { return r.root.sz() }

// Rank is the number of members whose address is below addr: the index
// addr has, or would have, in ring order.
func (r *Ring) Rank(addr [32]byte) int {
	rank := 0
	for n := r.root; n != nil; {
		switch c := cmp(&addr, &n.m.Addr); {
		case c < 0:
			n = n.left
		case c > 0:
			rank += n.left.sz() + 1
			n = n.right
		default:
			return rank + n.left.sz()
		}
	}
	return rank
}

// Find returns the member with address addr, or nil.
func (r *Ring) Find(addr [32]byte) *Member {
	for n := r.root; n != nil; {
		switch c := cmp(&addr, &n.m.Addr); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return &n.m
		}
	}
	return nil
}

// Has reports whether a member has address addr.
func (r *Ring) Has(addr [32]byte) bool { return r.Find(addr) != nil }

// At returns the member of rank i, 0 <= i < Len().
func (r *Ring) At(i int) *Member {
	for n := r.root; n != nil; {
		l := n.left.sz()
		switch {
		case i < l:
			n = n.left
		case i > l:
			i -= l + 1
			n = n.right
		default:
			return &n.m
		}
	}
	return nil
}

// Insert adds m with the given random priority; false if a member with
// its address is already there.
func (r *Ring) Insert(m Member, prio uint64) bool {
	if r.Has(m.Addr) {
		return false
	}
	r.root = insert(r.root, &node{m: m, prio: prio, size: 1})
	return true
}

func insert(t, n *node) *node {
	if t == nil {
		return n
	}
	if n.prio > t.prio {
		n.left, n.right = split(t, &n.m.Addr)
		n.fix()
		return n
	}
	if cmp(&n.m.Addr, &t.m.Addr) < 0 {
		t.left = insert(t.left, n)
	} else {
		t.right = insert(t.right, n)
	}
	t.fix()
	return t
}

// split cuts t into the members below addr and the rest.
func split(t *node, addr *[32]byte) (lo, hi *node) {
	if t == nil {
		return nil, nil
	}
	if cmp(&t.m.Addr, addr) < 0 {
		t.right, hi = split(t.right, addr)
		t.fix()
		return t, hi
	}
	lo, t.left = split(t.left, addr)
	t.fix()
	return lo, t
}

// merge joins two treaps whose every address in a is below every one in b.
func merge(a, b *node) *node {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = merge(a.right, b)
		a.fix()
		return a
	default:
		b.left = merge(a, b.left)
		b.fix()
		return b
	}
}

// Delete removes the member with address addr and returns it.
func (r *Ring) Delete(addr [32]byte) (Member, bool) {
	if !r.Has(addr) {
		return Member{}, false
	}
	var out Member
	r.root = del(r.root, &addr, &out)
	return out, true
}

func del(t *node, addr *[32]byte, out *Member) *node {
	switch c := cmp(addr, &t.m.Addr); {
	case c < 0:
		t.left = del(t.left, addr, out)
	case c > 0:
		t.right = del(t.right, addr, out)
	default:
		*out = t.m
		return merge(t.left, t.right)
	}
	t.fix()
	return t
}

// Walk calls fn for each member in ring order until fn returns false.
func (r *Ring) Walk(fn func(*Member) bool) { walk(r.root, fn) }

func walk(n *node, fn func(*Member) bool) bool {
	if n == nil {
		return true
	}
	return walk(n.left, fn) && fn(&n.m) && walk(n.right, fn)
}
