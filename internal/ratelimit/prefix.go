package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// Prefix is a Budget per source prefix (an IPv4 /24 or an IPv6 /48).
type Prefix struct{ b *Budget }

// NewPrefix makes a budget of rate requests per second per prefix, as
// NewBudget.
func NewPrefix(rate float64, burst, buckets int) *Prefix {
	return &Prefix{NewBudget(rate, burst, buckets)}
}

// Key is the prefix a source address is counted under: the IPv4 /24 or
// the IPv6 /48 (what one site or one victim network gets).
func Key(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// Allow spends one token of src's prefix at now, or reports false when the
// prefix has none left.
func (p *Prefix) Allow(src netip.Addr, now time.Time) bool {
	if p == nil || p.b.rate < 0 {
		return true
	}
	key := Key(src).Addr().As16()
	var idx [rows]int
	for i := range idx {
		idx[i] = int(maphash.Bytes(p.b.seeds[i], key[:]) & uint64(len(p.b.cells[i])-1))
	}
	return p.b.spend(idx, now)
}

// Bytes is the memory the buckets take.
func (p *Prefix) Bytes() int { return p.b.Bytes() }
