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
	"github.com/stratus-rtmfp/stratus/internal/store"
	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/rtmfp"
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

// rawLookup sends an IHello for peerID from a socket with no session and
// reports whether a Redirect came back.
func rawLookup(t *testing.T, server string, peerID string) bool {
	t.Helper()
	id, _ := rtmfp.ParsePeerID(peerID)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := netip.MustParseAddrPort(server)
	tag := []byte("lookup-tag-12345")
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
	pkt = wire.IHello{EPD: handshake.FingerprintEPD(id), Tag: tag}.Append(pkt)
	conn.WriteToUDPAddrPort(wire.NewDefaultSealer().Seal(nil, 0, pkt), to)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return false
		}
		pt, err := wire.NewDefaultOpener().Open(buf[:n])
		if err != nil {
			continue
		}
		_, hl, _ := wire.ParseHeader(pt)
		if c, _, ok := wire.NextChunk(pt[hl:]); ok && c.Type == wire.ChunkRedirect {
			rd, err := wire.ParseRedirect(c.Payload)
			return err == nil && string(rd.Tag) == string(tag) && len(rd.Addresses) > 0
		}
	}
}

func TestAnonymousLookupPolicy(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	for _, refuse := range []bool{false, true} {
		_, base := testServer(t, st, func(c *Config) { c.RefuseAnonymousLookups = refuse })
		b := connect(t, base+"/"+k.ID)
		addr := base[len("rtmfp://"):]
		if got := rawLookup(t, addr, b.NearID()); got == refuse {
			t.Errorf("refuse=%v: anonymous lookup introduced=%v", refuse, got)
		}
		if rawLookup(t, addr, "00"+b.NearID()[2:]) {
			t.Errorf("refuse=%v: lookup of an unknown peer was answered", refuse)
		}
	}
}

func TestSessionsThatNeverConnectAreClosed(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.ConnectTimeout = time.Second })
	sess := rawSession(t, srv, base, 0)
	start := time.Now()
	for len(srv.Sessions()) > 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("a session that never sent connect is still open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The server closed it in an orderly way: the client got a close request.
	if !sess.Closing() {
		t.Fatal("the client was not told")
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
	for deadline := time.Now().Add(5 * time.Second); len(srv.Sessions()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the server never listed the session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sess
}
