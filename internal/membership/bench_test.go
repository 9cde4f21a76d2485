package membership

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// discard is a Handler that drops what it is handed.
type discard struct{}

func (discard) Announce(any, Announcement) {}

// fill joins n members spread over groups groups of one key.
func fill(d *Local, n, groups int, rnd *rand.Rand) [][2]any {
	out := make([][2]any, 0, n)
	for i := range n {
		g := GroupKey{DevKey: "k"}
		binary.BigEndian.PutUint64(g.ID[:], uint64(i%groups+1))
		a := randAddr(rnd)
		d.Join(g, Member{Peer: a, Addr: a})
		out = append(out, [2]any{g, a})
	}
	return out
}

// BenchmarkJoinLeave: one join and one leave in a group of 100,000 that
// keeps its size, with the announcements the policy asks for.
func BenchmarkJoinLeave(b *testing.B) {
	for _, c := range []struct {
		name           string
		members, group int
	}{{"100000x1", 100000, 1}, {"100x1000", 100000, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(1, 1))
			d := NewLocal(Policy{}, discard{})
			ms := fill(d, c.members, c.group, rnd)
			now := time.Now()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := i % len(ms)
				g, a := ms[k][0].(GroupKey), ms[k][1].([32]byte)
				d.Leave(g, Member{Peer: a, Addr: a}, now)
				a = randAddr(rnd)
				d.Join(g, Member{Peer: a, Addr: a})
				ms[k][1] = a
			}
		})
	}
}

// BenchmarkMemoryPerMember reports the directory's heap per membership
// (the server adds its per-flow state on top).
func BenchmarkMemoryPerMember(b *testing.B) {
	const n = 100000
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		d := NewLocal(Policy{}, discard{})
		fill(d, n, 1000, rand.New(rand.NewPCG(2, 2)))
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/member")
		runtime.KeepAlive(d)
	}
}
