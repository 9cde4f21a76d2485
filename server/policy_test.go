package server

import (
	"context"
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

func TestSessionLimitPerIP(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	_, base := testServer(t, st, func(c *Config) { c.MaxSessionsPerIP = 2 })
	connect(t, base+"/"+k.ID)
	connect(t, base+"/"+k.ID)
	_, err := rtmfp.Connect(context.Background(), base+"/"+k.ID, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 1500 * time.Millisecond})
	if statusCode(err) != rtmfp.ConnectFailed {
		t.Fatalf("third session from one IP: %v", err)
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
