package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":       "192.0.2.0/24",
		"::ffff:192.0.2.7": "192.0.2.0/24",
		"2001:db8:1:2::5":  "2001:db8:1::/48",
	} {
		if got := Key(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// One prefix gets its burst, then its rate; another prefix is unaffected.
func TestPrefixBudget(t *testing.T) {
	p := NewPrefix(10, 20, 1024)
	now := time.Now()
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.200") // same /24
	c := netip.MustParseAddr("203.0.113.9")
	n := 0
	for i := range 100 {
		src := a
		if i%2 == 1 {
			src = b
		}
		if p.Allow(src, now) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("burst: %d allowed, want 20", n)
	}
	if !p.Allow(c, now) {
		t.Fatal("another prefix was starved")
	}
	if p.Allow(a, now.Add(50*time.Millisecond)) {
		t.Fatal("allowed before a token was earned")
	}
	if !p.Allow(a, now.Add(150*time.Millisecond)) {
		t.Fatal("not refilled at 10/s")
	}
}

// Fifty flooding prefixes drain their own buckets, and only those: an
// unrelated prefix keeps its budget. (It would share both of its buckets
// with flooders with a probability of about (100/65536)², 2e-6.)
func TestPrefixFloodSparesOthers(t *testing.T) {
	p := NewPrefix(1, 5, 1<<16)
	now := time.Now()
	for i := range 50 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i), 1})
		for range 1000 {
			p.Allow(src, now)
		}
		if p.Allow(src, now) {
			t.Fatal("a flooding prefix is still served")
		}
	}
	for i := range 5 {
		if !p.Allow(netip.MustParseAddr("192.0.2.1"), now) {
			t.Fatalf("request %d of an unrelated prefix refused", i)
		}
	}
}

func TestNegativeRateAllowsAll(t *testing.T) {
	p := NewPrefix(-1, 0, 16)
	for range 1000 {
		if !p.Allow(netip.MustParseAddr("192.0.2.1"), time.Now()) {
			t.Fatal("refused")
		}
	}
}

func BenchmarkPrefixAllow(b *testing.B) {
	p := NewPrefix(100, 200, 1<<15)
	now := time.Now()
	i := 0
	for b.Loop() {
		i++
		p.Allow(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}), now)
	}
}
