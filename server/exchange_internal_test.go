package server

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/exchange"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/store"
)

// connectAs opens a session with identity id from a fresh socket, sends
// connect for app (the developer key) and waits until the server lists it
// connected.
func connectAs(t *testing.T, srv *Server, base string, id *handshake.Identity, app string) *engine.Session {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(conn, engine.Config{Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	to := netip.MustParseAddrPort(base[len("rtmfp://"):])
	sess, err := e.Connect(ctx, handshake.AncillaryEPD(base+"/"+app), engine.ConnectOptions{}, to)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := flash.AppendCommand(nil, "connect", 1, amf.NewObject("app", app, "objectEncoding", 3.0))
	f.Write(msg)
	local := conn.LocalAddr().String()
	waitSessions(t, srv, 10*time.Second, "the session never connected", func(ss []SessionInfo) bool {
		for _, s := range ss {
			if s.Address == local && s.State == "connected" && s.Key == app {
				return true
			}
		}
		return false
	})
	return sess
}

// A peer ID connected with key A that connects again with key B (the same
// identity, a second session) keeps its key-A names while its key-A
// session is up, and loses them as soon as that session ends, not when
// the key-B one does.
func TestExchangeLivenessPerKey(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.Open = true })
	id, err := handshake.NewClientIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := hexID(id.PeerID)
	sessA := connectAs(t, srv, base, id, "keya")
	if err := srv.exchange.Register("keya", "alice", peer, exchange.Self); err != nil {
		t.Fatal(err)
	}
	connectAs(t, srv, base, id, "keyb")
	if err := srv.exchange.Register("keyb", "bob", peer, exchange.Self); err != nil {
		t.Fatal(err)
	}
	if !srv.Connected(peer, "keya") || !srv.Connected(peer, "keyb") {
		t.Fatalf("Connected with keya %v, keyb %v; want both", srv.Connected(peer, "keya"), srv.Connected(peer, "keyb"))
	}
	if got, ok := srv.exchange.Lookup("keya", "alice"); !ok || got != peer {
		t.Fatalf("keya's name while its session is up: %q %v", got, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessA.Close(ctx)
	waitSessions(t, srv, 10*time.Second, "the keya session never closed", func(ss []SessionInfo) bool {
		for _, s := range ss {
			if s.Key == "keya" {
				return false
			}
		}
		return true
	})
	if srv.Connected(peer, "keya") || !srv.Connected(peer, "keyb") {
		t.Fatalf("after the keya session ended: Connected keya %v, keyb %v", srv.Connected(peer, "keya"), srv.Connected(peer, "keyb"))
	}
	if n := srv.ExchangeNames("keya"); n != 0 {
		t.Fatalf("keya still has %d names after its session ended", n)
	}
	if got, ok := srv.exchange.Lookup("keyb", "bob"); !ok || got != peer {
		t.Fatalf("keyb's name: %q %v", got, ok)
	}
}
