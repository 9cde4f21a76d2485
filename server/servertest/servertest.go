// Package servertest starts a real Stratus rendezvous server inside a Go
// test, on a loopback UDP socket, and tells the test what it does: Start
// returns once the server answers, and the Wait methods return as soon as
// the server's sessions reach a given state, woken by the server's session
// events rather than by sleeping or polling.
//
//	srv := servertest.Start(t, server.Config{Open: true})
//	nc, err := rtmfp.Connect(ctx, srv.URL("mykey"), nil)
//	srv.WaitClients(t, 1)
//
// The server is closed when the test ends.
package servertest

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

// WaitTimeout bounds every Wait method.
var WaitTimeout = 10 * time.Second

// Server is a running server and what the test needs to reach it.
type Server struct {
	*server.Server
	// Addr is the UDP address it listens on (127.0.0.1, a free port).
	Addr netip.AddrPort
	// Store is the server's store (a memory store unless the Config had
	// one).
	Store store.Store

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every session event
	events  []server.SessionEvent
}

// Start runs a server with cfg (a memory store when cfg.Store is nil) on
// 127.0.0.1 and returns once it answers there. It is closed at the end of
// the test. cfg.OnSession, if set, is still called.
func Start(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	return StartOn(t, cfg, conn)
}

// StartOn is Start on a socket of the test's own (whose address the
// Config may need to name, as its PublicAddresses); the server owns conn.
func StartOn(t testing.TB, cfg server.Config, conn net.PacketConn) *Server {
	t.Helper()
	ts := &Server{changed: make(chan struct{})}
	if cfg.Store == nil {
		cfg.Store = store.NewMemory()
	}
	ts.Store = cfg.Store
	user := cfg.OnSession
	cfg.OnSession = func(ev server.SessionEvent) {
		ts.record(ev)
		if user != nil {
			user(ev)
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		conn.Close()
		t.Fatalf("servertest: %v", err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	ts.Server = srv
	ts.Addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return ts
}

func (ts *Server) record(ev server.SessionEvent) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.events = append(ts.events, ev)
	close(ts.changed)
	ts.changed = make(chan struct{})
}

// URL is the rtmfp:// URL of the server with app (a developer key).
func (ts *Server) URL(app string) string { return "rtmfp://" + ts.Addr.String() + "/" + app }

// NewKey creates a developer key in the server and returns it.
func (ts *Server) NewKey(t testing.TB) string {
	t.Helper()
	k, err := ts.CreateKey("servertest")
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	return k.ID
}

// Events returns every session event so far, in order.
func (ts *Server) Events() []server.SessionEvent {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]server.SessionEvent(nil), ts.events...)
}

// WaitEvent waits until the server has reported an event of that kind for
// the peer ID (64 hex digits), and returns it.
func (ts *Server) WaitEvent(t testing.TB, peerID string, kind server.SessionEventKind) server.SessionEvent {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for seen := 0; ; {
		ts.mu.Lock()
		evs, ch := ts.events[seen:], ts.changed
		ts.mu.Unlock()
		for _, ev := range evs {
			if ev.PeerID == peerID && ev.Kind == kind {
				return ev
			}
		}
		seen += len(evs)
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("servertest: after %v no %s event for %s", WaitTimeout, kind, peerID)
			return server.SessionEvent{}
		}
	}
}

// WaitFor waits until cond holds for the server's sessions
// (Server.Sessions), checking it now and after every session event, and
// fails the test after WaitTimeout.
func (ts *Server) WaitFor(t testing.TB, what string, cond func([]server.SessionInfo) bool) {
	t.Helper()
	ts.WaitUntil(t, what, func() bool { return cond(ts.Sessions()) })
}

// WaitUntil waits until cond holds, checking it now and after every
// session event (NetGroup joins and leaves among them), and fails the test
// after WaitTimeout.
func (ts *Server) WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	next := func() <-chan struct{} {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.changed
	}
	if !waitOn(next, cond) {
		t.Fatalf("servertest: after %v still not %s; sessions: %+v", WaitTimeout, what, ts.Sessions())
	}
}

// WaitSessions waits until exactly n sessions are open (connected or
// not).
func (ts *Server) WaitSessions(t testing.TB, n int) {
	t.Helper()
	ts.WaitFor(t, "at "+strconv.Itoa(n)+" sessions", func(s []server.SessionInfo) bool { return len(s) == n })
}

// WaitClients waits until exactly n sessions have connected (and not yet
// left).
func (ts *Server) WaitClients(t testing.TB, n int) {
	t.Helper()
	ts.WaitFor(t, "at "+strconv.Itoa(n)+" connected clients", func(s []server.SessionInfo) bool {
		c := 0
		for _, x := range s {
			if x.State == "connected" {
				c++
			}
		}
		return c == n
	})
}
