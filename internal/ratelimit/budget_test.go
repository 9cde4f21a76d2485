package ratelimit

import (
	"testing"
	"time"
)

// One key gets its burst, then its rate; another key is unaffected.
func TestBudget(t *testing.T) {
	b := NewBudget(1, 3, 1024)
	now := time.Now()
	n := 0
	for range 10 {
		if b.Allow("account-a", now) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("burst: %d allowed, want 3", n)
	}
	if !b.Allow("account-b", now) {
		t.Fatal("another key was starved")
	}
	if b.Allow("account-a", now.Add(500*time.Millisecond)) {
		t.Fatal("allowed before a token was earned")
	}
	if !b.Allow("account-a", now.Add(1100*time.Millisecond)) {
		t.Fatal("not refilled at 1/s")
	}
	unlimited := NewBudget(-1, 0, 16)
	for i := range 100 {
		if !unlimited.Allow("x", now) {
			t.Fatalf("a negative rate refused request %d", i+1)
		}
	}
}
