// Package ratelimit holds the server's per-source budgets that must cost
// fixed memory whatever the traffic: before a client has proved its
// address (the cookie round trip), any per-source table would let a
// spoofer with random source addresses grow it without bound.
package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Prefix is the budget of one source prefix (an IPv4 /24 or an IPv6 /48),
// kept in a fixed array of token buckets that prefixes are hashed into:
// two rows, each prefix in one bucket of each row, and a request is
// allowed while either of its buckets has a token (then both pay). An
// unlucky prefix that shares a bucket with a flooding one in one row still
// has its own bucket in the other, with a keyed hash nobody outside can
// aim at; one that shared both would be limited with the flooder, never
// left unlimited. Nothing is allocated per request or per source.
type Prefix struct {
	rate  float64 // tokens per second
	burst float32
	seeds [rows]maphash.Seed
	epoch time.Time

	mu    sync.Mutex
	cells [rows][]cell
}

const rows = 2

// cell is one token bucket: tokens left at the last update, and that
// update's time in milliseconds since epoch.
type cell struct {
	tokens float32
	at     uint32
}

// NewPrefix makes a budget of rate requests per second per prefix, with
// bursts of burst, in 2 × buckets buckets (rounded up to a power of two;
// 8 bytes each). A rate below zero allows everything.
func NewPrefix(rate float64, burst, buckets int) *Prefix {
	n := 1
	for n < buckets {
		n <<= 1
	}
	p := &Prefix{rate: rate, burst: float32(max(burst, 1)), epoch: time.Now()}
	for i := range p.seeds {
		p.seeds[i] = maphash.MakeSeed()
		p.cells[i] = make([]cell, n)
	}
	for i := range p.cells {
		for j := range p.cells[i] {
			p.cells[i][j].tokens = p.burst
		}
	}
	return p
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
	if p == nil || p.rate < 0 {
		return true
	}
	key := Key(src).Addr().As16()
	ms := uint32(now.Sub(p.epoch) / time.Millisecond)
	var idx [rows]int
	for i := range idx {
		idx[i] = int(maphash.Bytes(p.seeds[i], key[:]) & uint64(len(p.cells[i])-1))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best := float32(0)
	for i, j := range idx {
		c := &p.cells[i][j]
		c.tokens = min(p.burst, c.tokens+float32(float64(ms-c.at)*p.rate/1000))
		c.at = ms
		best = max(best, c.tokens)
	}
	if best < 1 {
		return false
	}
	for i, j := range idx {
		p.cells[i][j].tokens = max(p.cells[i][j].tokens-1, 0)
	}
	return true
}

// Bytes is the memory the buckets take.
func (p *Prefix) Bytes() int { return rows * len(p.cells[0]) * 8 }
