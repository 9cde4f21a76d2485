package server

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/store"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSpoofedIHelloFlood: 100,000 IHellos from distinct (spoofed) sources,
// a third of them the shortest real ones (librtmfp's 36-byte IHellos for
// app "live" and for the root app), are answered statelessly and leave no
// per-source state behind.
func TestSpoofedIHelloFlood(t *testing.T) {
	n := testutil.NewNetwork(1)
	conn := n.Listen("10.0.0.1:1935")
	srv, err := New(Config{Store: store.NewMemory(), Open: true, HelloRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	before := heapInUse()
	sealer := wire.NewDefaultSealer()
	epds := [][]byte{handshake.AncillaryEPD("rtmfp://10.0.0.1/key"), {0x05, 0x0a, 'l', 'i', 'v', 'e'}, {0x01, 0x0a}}
	const count = 100000
	for i := range count {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%60000))
		pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
		tag := []byte{byte(i), byte(i >> 8), byte(i >> 16), 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		pkt = wire.IHello{EPD: epds[i%3], Tag: tag}.Append(pkt)
		n.Inject(src, conn.AddrPort(), sealer.Seal(nil, 0, pkt))
		if i%2000 == 1999 { // let the engine keep up with the in-memory queue
			for srv.EngineStats().PacketsIn < uint64(i-100) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	for srv.EngineStats().PacketsIn < count*99/100 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	st := srv.EngineStats()
	if st.RHellosSent < count*99/100 {
		t.Fatalf("%d RHellos for %d IHellos", st.RHellosSent, st.PacketsIn)
	}
	peers := srv.dir.(*directory.Local).Len()
	srv.mu.Lock()
	state := len(srv.byAddr) + peers + len(srv.perIP) + len(srv.live) + len(srv.limiters) + srv.sessions
	srv.mu.Unlock()
	if state != 0 || st.SessionsOpen != 0 {
		t.Fatalf("per-source state after the flood: %d entries, %d sessions", state, st.SessionsOpen)
	}
	after := heapInUse()
	grew := int64(after) - int64(before)
	t.Logf("%d IHellos answered; heap %d -> %d bytes (%+d)", st.RHellosSent, before, after, grew)
	if grew > 4<<20 {
		t.Fatalf("heap grew by %d bytes over %d spoofed IHellos", grew, count)
	}
}
