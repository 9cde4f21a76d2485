package server

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/store"
)

// mutedConn is a client's socket that stops handing datagrams to its
// engine once muted: a benchmark's target peer then costs the process
// nothing (no allocation) for what the server sends it.
type mutedConn struct {
	*net.UDPConn
	muted atomic.Bool
}

func (c *mutedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, err := c.ReadFromUDPAddrPort(b)
		if err != nil || !c.muted.Load() {
			return n, net.UDPAddrFromAddrPort(ap), err
		}
	}
}

// BenchmarkIntroduction: the server's whole introduction path for one
// lookup IHello (go test -bench Introduction -benchmem ./server): the
// datagram opened, the EPD parsed, the target found, the Redirect sent to
// the initiator and the Forwarded IHello to the target, counted.
func BenchmarkIntroduction(b *testing.B) {
	srv, base := testServer(b, store.NewMemory(), func(c *Config) {
		c.Open, c.LookupRate, c.HelloRatePerPrefix = true, -1, -1
	})
	// The target: a connected client whose engine then stops reading.
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	conn := &mutedConn{UDPConn: udp}
	id, _ := handshake.NewClientIdentity(nil)
	ce, err := engine.New(conn, engine.Config{Identity: id, Keepalive: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ce.Close() })
	to := netip.MustParseAddrPort(base[len("rtmfp://"):])
	sess, err := ce.Connect(context.Background(), handshake.AncillaryEPD(base+"/k"), engine.ConnectOptions{}, to)
	if err != nil {
		b.Fatal(err)
	}
	ctrl, _ := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	msg, _ := flash.AppendCommand(nil, "connect", 1, amf.NewObject("app", "k", "tcUrl", base+"/k", "objectEncoding", 3.0))
	ctrl.Write(msg)
	waitSessions(b, srv, 10*time.Second, "the target connects", func(s []SessionInfo) bool { return len(s) == 1 && s[0].State == "connected" })
	conn.muted.Store(true)

	// The initiator: an address with no session (nothing listens there).
	src := netip.MustParseAddrPort("127.0.0.1:9")
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup, Timestamp: 0x1234})
	pkt = wire.IHello{EPD: handshake.FingerprintEPD(id.PeerID), Tag: []byte("0123456789abcdef")}.Append(pkt)
	d := wire.NewDefaultSealer().Seal(nil, 0, pkt)
	e := srv.engineList()[0]
	before := e.Stats().RedirectsSent
	b.ReportAllocs()
	for b.Loop() {
		e.Inject(src, d)
	}
	if got := e.Stats().RedirectsSent - before; got != uint64(b.N) {
		b.Fatalf("%d Redirects for %d lookups", got, b.N)
	}
}
