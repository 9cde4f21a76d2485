package server_test

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
	"github.com/stratus-rtmfp/stratus/store"
)

// ihelloDatagram builds a startup datagram holding one IHello the way the
// clients below do: flags 0x0b with a timestamp, the EPD, a 16-byte tag,
// sealed with the default key.
func ihelloDatagram(epd, tag []byte) []byte {
	pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup, Timestamp: 0x1234})
	pkt = wire.IHello{EPD: epd, Tag: tag}.Append(pkt)
	return wire.NewDefaultSealer().Seal(nil, 0, pkt)
}

// Every well-formed IHello gets an RHello, whatever its size: the EPD
// layouts of librtmfp (only the URL's app path, reference §2.2.1 and the
// interop notes: 36-byte datagrams for "live" and for the root app),
// rtmfp-cpp's fcclient (ancillary "rtmfp:") and Flash (the whole URI).
func TestShortIHellosAreAnswered(t *testing.T) {
	srv := servertest.Start(t, server.Config{Open: true})
	for _, c := range []struct {
		name     string
		epd      string // hex
		datagram int    // its size on the wire
	}{
		{"librtmfp rtmfp://host/live/stream", "050a6c697665", 36},
		{"librtmfp rtmfp://host/stream (root app)", "010a", 36},
		{"rtmfp-cpp fcclient", "070a72746d66703a", 52},
		{"Flash rtmfp://127.0.0.1/live", "170a72746d66703a2f2f3132372e302e302e312f6c697665", 68},
	} {
		epd, _ := hex.DecodeString(c.epd)
		tag := []byte("0123456789abcdef")
		d := ihelloDatagram(epd, tag)
		if len(d) != c.datagram {
			t.Fatalf("%s: %d-byte datagram, the client sends %d", c.name, len(d), c.datagram)
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conn.WriteToUDPAddrPort(d, srv.Addr)
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		conn.Close()
		if err != nil {
			t.Errorf("%s: no answer: %v", c.name, err)
			continue
		}
		rh, ok := parseRHello(buf[:n])
		if !ok || !bytes.Equal(rh.Tag, tag) || len(rh.Cookie) != 64 || len(rh.Certificate) != 77 {
			t.Errorf("%s: answer is not an RHello for our tag: %x", c.name, buf[:n])
		}
		t.Logf("%s: %d-byte IHello answered by a %d-byte RHello", c.name, len(d), n)
	}
}

func parseRHello(d []byte) (wire.RHello, bool) {
	pt, err := wire.NewDefaultOpener().Open(d)
	if err != nil {
		return wire.RHello{}, false
	}
	_, hl, err := wire.ParseHeader(pt)
	if err != nil {
		return wire.RHello{}, false
	}
	c, _, ok := wire.NextChunk(pt[hl:])
	if !ok || c.Type != wire.ChunkRHello {
		return wire.RHello{}, false
	}
	rh, err := wire.ParseRHello(c.Payload)
	return rh, err == nil
}

// A flood of IHellos from one network uses up that network's budget, not
// everyone's: with a global budget small enough that the flood alone would
// drain it, a client elsewhere is still answered. (In-memory network: a
// kernel socket buffer would drop most of the flood before the server saw
// it.)
func TestOnePrefixCannotStarveHandshakes(t *testing.T) {
	n := testutil.NewNetwork(1)
	conn := n.Listen("10.0.0.1:1935")
	srv, err := server.New(server.Config{Store: store.NewMemory(), Open: true, HelloRate: 1000, HelloRatePerPrefix: 50})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// The flood: 3,000 IHellos (three seconds of the global budget) from
	// one /24, faster than the server answers.
	d := ihelloDatagram([]byte{0x05, 0x0a, 'l', 'i', 'v', 'e'}, []byte("flood-tag-012345"))
	for i := range 3000 {
		n.Inject(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 40000), conn.AddrPort(), d)
	}
	// Someone else, on another network, right behind it.
	other := n.Listen("192.0.2.7:5000")
	tag := []byte("other-tag-012345")
	other.WriteTo(ihelloDatagram([]byte{0x05, 0x0a, 'l', 'i', 'v', 'e'}, tag), conn.LocalAddr())
	b, _, err := other.ReadTimeout(5 * time.Second)
	if err != nil {
		t.Fatal("the other network got no RHello:", err)
	}
	if rh, ok := parseRHello(b); !ok || !bytes.Equal(rh.Tag, tag) {
		t.Fatal("not our RHello")
	}
	// The flooding network got about its burst (2 × 50) and no more.
	st := srv.EngineStats()
	for deadline := time.Now().Add(5 * time.Second); st.RHellosSent+st.DropLimited < 3001 && time.Now().Before(deadline); st = srv.EngineStats() {
		time.Sleep(time.Millisecond) // the flood is still being read
	}
	if st.RHellosSent > 200 || st.DropLimited < 2500 {
		t.Fatalf("%d RHellos sent, %d IHellos refused for a 3,000-IHello flood from one /24", st.RHellosSent, st.DropLimited)
	}
	t.Logf("flood from one /24: %d RHellos, %d refused", st.RHellosSent-1, st.DropLimited)
}
