package server

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/store"
)

// The tests of this package look at the server's private state; the
// behaviour tests (server_test) use the public servertest package.

// testServer runs a server on a loopback UDP socket; Listen returns once
// it answers there.
func testServer(t testing.TB, st store.Store, mod func(*Config)) (*Server, string) {
	t.Helper()
	cfg := Config{Store: st}
	if mod != nil {
		mod(&cfg)
	}
	ev := &sessionEvents{ch: make(chan struct{})}
	user := cfg.OnSession
	cfg.OnSession = func(e SessionEvent) {
		ev.signal()
		if user != nil {
			user(e)
		}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	watchers.Store(srv, ev)
	t.Cleanup(func() { watchers.Delete(srv) })
	return srv, "rtmfp://" + conn.LocalAddr().String()
}

// sessionEvents wakes waiters at every session event of one server.
type sessionEvents struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *sessionEvents) signal() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func (s *sessionEvents) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

var watchers sync.Map // *Server -> *sessionEvents

// waitSessions waits, woken by session events, until cond holds for the
// server's session list.
func waitSessions(t testing.TB, srv *Server, within time.Duration, what string, cond func([]SessionInfo) bool) {
	t.Helper()
	v, _ := watchers.Load(srv)
	ev := v.(*sessionEvents)
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := ev.next()
		if cond(srv.Sessions()) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("after %v: %s", within, what)
		}
	}
}

// waitOneConnected waits until the server lists one session, connected.
func waitOneConnected(t testing.TB, srv *Server) {
	t.Helper()
	waitSessions(t, srv, 5*time.Second, "the client is not listed as connected", func(s []SessionInfo) bool {
		return len(s) == 1 && s[0].State == "connected"
	})
}

func connect(t *testing.T, url string) *rtmfp.NetConnection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}
