package membership

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

func goneID(i int) [32]byte {
	var id [32]byte
	binary.BigEndian.PutUint64(id[:], uint64(i))
	return id
}

// The table forgets a departure after GoneLifetime and the oldest ones
// past its size; a peer that leaves again is remembered from then.
func TestGoneExpiry(t *testing.T) {
	d := newGoneTable(4)
	t0 := time.Now()
	for i := range 4 {
		d.add(goneID(i), fmt.Sprint("k", i), t0.Add(time.Duration(i)*time.Second))
	}
	if k, ok := d.get(goneID(2), t0); !ok || k != "k2" {
		t.Fatalf("departed peer 2: %q %v", k, ok)
	}
	// A fifth departure pushes out the oldest.
	d.add(goneID(4), "k4", t0.Add(4*time.Second))
	if _, ok := d.get(goneID(0), t0.Add(4*time.Second)); ok {
		t.Fatal("the oldest departure outlived the size bound")
	}
	// Peer 1 leaves again (another session): it is kept from then on, and
	// its first departure's expiry does not forget it.
	d.add(goneID(1), "k1", t0.Add(10*time.Second))
	at := t0.Add(GoneLifetime + 3500*time.Millisecond)
	for i, want := range []bool{false, true, false, false, true} {
		if _, ok := d.get(goneID(i), at); ok != want {
			t.Fatalf("after %v: peer %d remembered %v, want %v", at.Sub(t0), i, ok, want)
		}
	}
	if _, ok := d.get(goneID(1), t0.Add(10*time.Second+GoneLifetime+time.Second)); ok {
		t.Fatal("peer 1 outlived its lifetime")
	}
	if d.head != 0 || len(d.queue) != 0 || len(d.byID) != 0 {
		t.Fatalf("an empty table holds head %d, %d queued, %d by ID", d.head, len(d.queue), len(d.byID))
	}
}

// BenchmarkGoneAdd: one more departure when the table is full, the steady
// state of a server that sees more departures in GoneLifetime than it
// keeps: each add evicts the oldest entry. The cost per add is the
// same whatever the table's size (it once copied the whole queue: about
// 150 µs per add at 65,536).
func BenchmarkGoneAdd(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 13, MaxGone} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d := newGoneTable(size)
			now := time.Now()
			for i := range size {
				d.add(goneID(i), "k", now)
			}
			i := size
			for b.Loop() {
				d.add(goneID(i), "k", now)
				i++
			}
		})
	}
}
