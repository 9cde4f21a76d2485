package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/store"
)

// The real Flash Player 11.7 setPeerInfo (an AMF3 command message, 0x11).
func TestFlashSetPeerInfoCapture(t *testing.T) {
	p := testvec.Get(t, "fp117_p8_plain")
	ch, _, _ := wire.NextChunk(p[2+5:])
	ud, err := wire.ParseUserData(ch.Payload, false)
	if err != nil {
		t.Fatal(err)
	}
	m, err := flash.ParseMessage(ud.Data)
	if err != nil || m.Type != flash.TypeCommandAMF3 {
		t.Fatalf("%v type %x", err, m.Type)
	}
	cmd, err := flash.ParseCommand(m)
	if err != nil || cmd.Name != "setPeerInfo" {
		t.Fatalf("%+v %v", cmd, err)
	}
	got := parsePeerAddresses(cmd.Args, 8)
	if len(got) != 2 || got[0].String() != "192.168.137.1:55655" || got[1].String() != "192.168.202.99:55655" {
		t.Fatalf("addresses %v", got)
	}
}

func TestSessionsThatNeverConnectAreClosed(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.ConnectTimeout = time.Second })
	sess := rawSession(t, srv, base, 0)
	waitSessions(t, srv, 10*time.Second, "a session that never sent connect is still open", func(s []SessionInfo) bool { return len(s) == 0 })
	// The server closed it in an orderly way: the client gets a close
	// request (the server forgets the session as it sends it).
	for deadline := time.Now().Add(2 * time.Second); !sess.Closing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client was not told")
		}
	}
}

// A client over a session limit hears why (NetConnection.Connect.Rejected
// with a description naming the limit) instead of timing out in silence,
// and the refused session counts against nothing.
func TestSessionLimitsAreSaid(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"per IP", func(c *Config) { c.MaxSessionsPerIP = 2 }, "too many sessions from 127.0.0.1/32: 2 (--max-sessions-per-ip)"},
		{"in all", func(c *Config) { c.MaxSessions = 2 }, "server full: 2 sessions (--max-sessions)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, base := testServer(t, st, c.mod)
			connect(t, base+"/"+k.ID)
			connect(t, base+"/"+k.ID)
			for range 2 { // and again: a refused session holds no slot
				_, err := rtmfp.Connect(context.Background(), base+"/"+k.ID, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second})
				var se *rtmfp.StatusError
				if !errors.As(err, &se) || se.Status.Code != rtmfp.ConnectRejected || se.Status.Description != c.want {
					t.Fatalf("third session: %v, want %s (%s)", err, rtmfp.ConnectRejected, c.want)
				}
			}
			if s := srv.Sessions(); len(s) != 2 {
				t.Fatalf("%d sessions listed, want the 2 connected ones", len(s))
			}
			// The refused sessions close once their client has read the
			// refusal (within seconds), and give their place back.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				srv.mu.Lock()
				n, refusing := srv.sessions, srv.refusing
				srv.mu.Unlock()
				if n != 2 {
					t.Fatalf("%d sessions counted, want 2", n)
				}
				if refusing == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d refused sessions still open", refusing)
				}
			}
		})
	}
}

// rawSession opens a bare session to the server (a handshake, no connect)
// and waits until the server lists it (it registers sessions
// asynchronously).
func rawSession(t *testing.T, srv *Server, base string, keepalive time.Duration) *engine.Session {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := handshake.NewClientIdentity(nil)
	e, err := engine.New(conn, engine.Config{Identity: id, Keepalive: keepalive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	to := netip.MustParseAddrPort(base[len("rtmfp://"):])
	sess, err := e.Connect(context.Background(), handshake.AncillaryEPD(base+"/x"), engine.ConnectOptions{}, to)
	if err != nil {
		t.Fatal(err)
	}
	waitSessions(t, srv, 5*time.Second, "the server never listed the session", func(s []SessionInfo) bool { return len(s) > 0 })
	return sess
}
