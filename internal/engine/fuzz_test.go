package engine

import (
	"net/netip"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// fuzzEngine is a server engine whose socket nobody reads from; the fuzz
// targets feed its receive path directly, the way the read loop does.
func fuzzEngine(f *testing.F) *Engine {
	n := testutil.NewNetwork(1)
	id, _ := handshake.NewServerIdentity(nil)
	e, err := New(n.Listen("10.0.0.1:1935"), Config{Identity: id,
		UnmatchedIHello: func(netip.AddrPort, handshake.EPD, []byte) {}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	return e
}

func feed(e *Engine, src netip.AddrPort, d []byte) { e.Inject(src, d) }

var fuzzSrc = netip.MustParseAddrPort("192.0.2.7:4444")

// FuzzEngineDatagram: whole datagrams as they come off the socket.
func FuzzEngineDatagram(f *testing.F) {
	for _, n := range []string{"fp13_ihello_wire", "fp13_iikeying_wire", "fp117_p3_iikeying_wire", "fp117_p5_wire", "rdv_redirect_wire", "stratus_ihello_wire"} {
		f.Add(testvec.Get(f, n))
	}
	e := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, d []byte) {
		feed(e, fuzzSrc, d)
	})
}

// FuzzHandshakeChunks: startup-packet chunk sequences, sealed with the
// default key so that fuzzing reaches the handshake logic.
func FuzzHandshakeChunks(f *testing.F) {
	for _, n := range []string{"fp13_ihello_plain", "fp13_iikeying_plain", "fp117_p1_ihello_plain", "fp117_p3_iikeying_plain", "rdv_redirect_plain"} {
		p := testvec.Get(f, n)
		_, hl, _ := wire.ParseHeader(p[2:])
		f.Add(p[2+hl:])
	}
	f.Add(testvec.Get(f, "rdv_ihello_chunk"))
	e := fuzzEngine(f)
	sealer := wire.NewDefaultSealer()
	f.Fuzz(func(t *testing.T, chunks []byte) {
		if len(chunks) > 4000 {
			return
		}
		pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
		pkt = append(pkt, chunks...)
		feed(e, fuzzSrc, sealer.Seal(nil, 0, pkt))
		if n := len(e.Sessions()); n > 10000 {
			t.Fatal("sessions pile up")
		}
	})
}
