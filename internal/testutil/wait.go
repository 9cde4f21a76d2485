package testutil

import (
	"testing"
	"time"
)

// WaitUntil checks cond every 10 ms until it holds and returns how long
// that took, failing the test after d: for conditions that no event
// announces (another process's or another node's state).
func WaitUntil(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("after %v: not %s", d, what)
		}
		<-tick.C
	}
	return time.Since(start)
}
