package rtmfp_test

import (
	"context"
	"testing"
	"time"
)

// A handler may close its own connection: Close must not wait for the
// reader that is running the handler.
func TestCloseFromHandler(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	closed := make(chan error, 1)
	b.Handle("onRelay", func([]any) { closed <- b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Call(ctx, "relay", b.NearID(), "bye"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close called from a handler did not return")
	}
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not done after Close")
	}
}
