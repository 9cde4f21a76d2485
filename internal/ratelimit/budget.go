// Package ratelimit holds budgets that must cost fixed memory whatever the
// traffic: per source network (Prefix: the server's handshake replies and
// anonymous lookups, where, before a client has proved its address with
// the cookie round trip, any per-source table would let a spoofer with
// random source addresses grow it without bound; the portal's sign-ups
// and sign-ins) and per any other key (Budget: the portal's key edits per
// developer account).
package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Budget is a rate budget per key, kept in a fixed array of token buckets
// that keys are hashed into: two rows, each key in one bucket of each
// row, and a request is allowed while either of its buckets has a token
// (then both pay). An unlucky key that shares a bucket with a flooding one
// in one row still has its own bucket in the other, with a keyed hash
// nobody outside can aim at; one that shared both would be limited with
// the flooder, never left unlimited. Nothing is allocated per request or
// per key.
type Budget struct {
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

// NewBudget makes a budget of rate requests per second per key, with
// bursts of burst, in 2 × buckets buckets (rounded up to a power of two;
// 8 bytes each). A rate below zero allows everything.
func NewBudget(rate float64, burst, buckets int) *Budget {
	n := 1
	for n < buckets {
		n <<= 1
	}
	b := &Budget{rate: rate, burst: float32(max(burst, 1)), epoch: time.Now()}
	for i := range b.seeds {
		b.seeds[i] = maphash.MakeSeed()
		b.cells[i] = make([]cell, n)
	}
	for i := range b.cells {
		for j := range b.cells[i] {
			b.cells[i][j].tokens = b.burst
		}
	}
	return b
}

// Allow spends one token of key's budget at now, or reports false when it
// has none left.
func (b *Budget) Allow(key string, now time.Time) bool {
	if b == nil || b.rate < 0 {
		return true
	}
	var idx [rows]int
	for i := range idx {
		idx[i] = int(maphash.String(b.seeds[i], key) & uint64(len(b.cells[i])-1))
	}
	return b.spend(idx, now)
}

// spend takes a token from the buckets idx, if either has one.
func (b *Budget) spend(idx [rows]int, now time.Time) bool {
	ms := uint32(now.Sub(b.epoch) / time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	best := float32(0)
	for i, j := range idx {
		c := &b.cells[i][j]
		c.tokens = min(b.burst, c.tokens+float32(float64(ms-c.at)*b.rate/1000))
		c.at = ms
		best = max(best, c.tokens)
	}
	if best < 1 {
		return false
	}
	for i, j := range idx {
		b.cells[i][j].tokens = max(b.cells[i][j].tokens-1, 0)
	}
	return true
}

// Bytes is the memory the buckets take.
func (b *Budget) Bytes() int { return rows * len(b.cells[0]) * 8 }
