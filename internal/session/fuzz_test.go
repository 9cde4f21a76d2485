package session

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// FuzzSessionPacket feeds arbitrary chunk sequences, correctly encrypted,
// to an open session: user data, acks, probes, exceptions, close, pings.
// Nothing may panic and buffered data must stay within the receive buffer.
func FuzzSessionPacket(f *testing.F) {
	for _, n := range []string{"fp117_p5_plain", "fp117_p6_plain", "fp117_p7_plain", "fp117_p8_plain", "fp117_p9_plain", "fp117_p11_plain"} {
		p := testvec.Get(f, n)
		_, hl, _ := wire.ParseHeader(p[2:])
		f.Add(p[2+hl:])
	}
	f.Add(testvec.Get(f, "rdv_ack_chunk"))
	f.Add(testvec.Get(f, "rdv_fihello_chunk"))
	key := keysFor("fuzz")
	f.Fuzz(func(t *testing.T, chunks []byte) {
		if len(chunks) > 2000 {
			return
		}
		sealer, _ := wire.NewSealer(key, wire.Features{}, nil)
		opener, _ := wire.NewOpener(key, wire.Features{}, nil)
		now := time.Unix(1_800_000_000, 0)
		s := New(Config{NearSID: 1, FarSID: 2, Dest: netip.MustParseAddrPort("10.0.0.1:1"), Sealer: sealer, Opener: opener,
			Handler: &recorder{}, RecvBuffer: 64 << 10, Introducer: true}, now)
		out := func([]byte, netip.AddrPort) {}
		if f, err := s.OpenFlow([]byte("m"), nil); err == nil {
			_ = f.Write(make([]byte, 3000), time.Time{}, nil)
		}
		s.Flush(now, out)
		for i := range 3 {
			pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(i)})
			pkt = append(pkt, chunks...)
			src := netip.MustParseAddrPort("10.0.0.1:1")
			if i == 2 {
				src = netip.MustParseAddrPort("10.0.0.9:9")
			}
			_ = s.Receive(now, src, sealer.Seal(nil, 1, pkt))
			now = now.Add(300 * time.Millisecond)
			s.Timer(now)
			s.Flush(now, out)
		}
		for _, rf := range s.recvFlows {
			if rf.buffered > 64<<10+2*fragOverhead || rf.buffered < 0 {
				t.Fatalf("flow %d buffers %d bytes", rf.ID, rf.buffered)
			}
			if len(rf.recv.r) > maxRanges {
				t.Fatal("unbounded ranges")
			}
		}
	})
}
