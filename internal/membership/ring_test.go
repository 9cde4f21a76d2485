package membership

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

func randAddr(r *rand.Rand) [32]byte {
	var a [32]byte
	for i := 0; i < 32; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			a[i+j] = byte(v >> (8 * j))
		}
	}
	return a
}

// The treap against a sorted slice, through random inserts and deletes.
func TestRingMatchesSortedModel(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var r Ring
	var model [][32]byte
	for step := range 20000 {
		if len(model) > 0 && rnd.IntN(3) == 0 {
			i := rnd.IntN(len(model))
			a := model[i]
			m, ok := r.Delete(a)
			if !ok || m.Addr != a {
				t.Fatalf("step %d: delete %x: %v", step, a[:4], ok)
			}
			model = slices.Delete(model, i, i+1)
			if _, ok := r.Delete(a); ok {
				t.Fatal("deleted twice")
			}
		} else {
			a := randAddr(rnd)
			if rnd.IntN(50) == 0 && len(model) > 0 {
				a = model[rnd.IntN(len(model))] // a duplicate
			}
			i, found := slices.BinarySearchFunc(model, a, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
			if got := r.Insert(Member{Addr: a}, rnd.Uint64()); got == found {
				t.Fatalf("step %d: insert returned %v, duplicate %v", step, got, found)
			}
			if !found {
				model = slices.Insert(model, i, a)
			}
		}
		if r.Len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, r.Len(), len(model))
		}
		if step%500 == 0 {
			for i, a := range model {
				if got := r.At(i).Addr; got != a {
					t.Fatalf("step %d: At(%d) = %x, want %x", step, i, got[:4], a[:4])
				}
				if rk := r.Rank(a); rk != i {
					t.Fatalf("step %d: Rank = %d, want %d", step, rk, i)
				}
			}
			probe := randAddr(rnd)
			want, _ := slices.BinarySearchFunc(model, probe, func(x, y [32]byte) int { return bytes.Compare(x[:], y[:]) })
			if got := r.Rank(probe); got != want {
				t.Fatalf("rank of absent address %d, want %d", got, want)
			}
			var walked [][32]byte
			r.Walk(func(m *Member) bool { walked = append(walked, m.Addr); return true })
			if !slices.Equal(walked, model) {
				t.Fatal("walk out of order")
			}
		}
	}
}

// Depth stays logarithmic (the recursion in insert and delete depends on it).
func TestRingDepth(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var r Ring
	for range 100000 {
		r.Insert(Member{Addr: randAddr(rnd)}, rnd.Uint64())
	}
	var depth func(n *node) int
	depth = func(n *node) int {
		if n == nil {
			return 0
		}
		return 1 + max(depth(n.left), depth(n.right))
	}
	if d := depth(r.root); d > 60 {
		t.Fatalf("depth %d for 100,000 members", d)
	}
}
