package servertest

import (
	"sync"
	"testing"
	"time"
)

// Changes tells waiters that something changed: a test's own events (what
// its clients receive, say), waited on the way Server's Wait methods wait
// on the server's session events. The zero value is ready to use.
//
//	var got servertest.Changes
//	go func() { for m := range msgs { record(m); got.Signal() } }()
//	got.WaitUntil(t, "three messages", func() bool { return count() == 3 })
type Changes struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced at every Signal
}

// Signal wakes every waiter.
func (c *Changes) Signal() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
	}
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

func (c *Changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// WaitUntil waits until cond holds, checking it now and after every
// Signal, and fails the test after WaitTimeout.
func (c *Changes) WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !waitOn(c.next, cond) {
		t.Fatalf("servertest: after %v still not %s", WaitTimeout, what)
	}
}

// waitOn checks cond now and whenever the channel next returned (taken
// before each check, so that no change is missed) is closed, until it
// holds (true) or WaitTimeout passes (false).
func waitOn(next func() <-chan struct{}, cond func() bool) bool {
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		ch := next()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}
