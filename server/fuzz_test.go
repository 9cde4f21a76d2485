package server

import (
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/store"
)

// FuzzServerDatagram drives the server's packet entry point (its engine
// with the rendezvous hooks and events wired) with whole datagrams and with
// startup chunk sequences sealed under the default key.
func FuzzServerDatagram(f *testing.F) {
	for _, n := range []string{"fp13_ihello_wire", "fp13_iikeying_wire", "fp117_p1_ihello_wire", "fp117_p3_iikeying_wire", "fp117_p5_wire", "rdv_redirect_wire"} {
		f.Add(testvec.Get(f, n), false)
	}
	f.Add(testvec.Get(f, "rdv_ihello_chunk"), true)
	f.Add(testvec.Get(f, "fp117_p1_ihello_plain")[5:], true)
	net := testutil.NewNetwork(1)
	conn := net.Listen("10.0.0.1:1935")
	srv, err := New(Config{Store: store.NewMemory(), Open: true, HelloRate: -1, HandshakeRate: -1})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	e := srv.engines[0]
	src := netip.MustParseAddrPort("192.0.2.1:5000")
	sealer := wire.NewDefaultSealer()
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		if seal {
			if len(b) > 4000 {
				return
			}
			pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeStartup})
			b = sealer.Seal(nil, 0, append(pkt, b...))
		}
		e.Inject(src, b)
	})
}

// FuzzControlMessage runs NetConnection messages through the TC and AMF
// decoders and the server's connect and setPeerInfo parsing.
func FuzzControlMessage(f *testing.F) {
	p5 := testvec.Get(f, "fp117_p5_plain")
	f.Add(p5[21 : len(p5)-9]) // Flash Player 11.7's connect
	p8 := testvec.Get(f, "fp117_p8_plain")
	f.Add(p8[15 : len(p8)-7]) // its setPeerInfo (AMF3 command)
	for _, h := range []string{
		"1400000000020007636f6e6e656374003ff000000000000003000361707002000b6b65792f6170702f78797a000009",
		"14000000000200077365745065657249" + "6e666f000000000000000000050200063a3a3a3a3a3a020003315b5d02000e5b3a3a315d3a36353533350d0a",
	} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := flash.ParseMessage(b)
		if err != nil {
			return
		}
		cmd, _ := flash.ParseCommand(m)
		keys, enc, ok := parseConnect(cmd)
		if ok != (len(keys) > 0) || len(keys) > 2 || enc != 0 && enc != 3 {
			t.Fatalf("connect parsed to keys %q (ok %v) encoding %v", keys, ok, enc)
		}
		for _, key := range keys {
			if key == "" || strings.Contains(key, "/") || len(key) > 256 {
				t.Fatalf("connect parsed to key %q", key)
			}
		}
		addrs := parsePeerAddresses(cmd.Arguments(), 8)
		if len(addrs) > 8 {
			t.Fatal("too many addresses kept")
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Port() == 0 || a.Addr().Zone() != "" {
				t.Fatalf("kept %v", a)
			}
		}
	})
}

func TestParsePeerAddressesSkipsGarbage(t *testing.T) {
	got := parsePeerAddresses([]any{"192.168.1.20:61000", "garbage", "", "[2001:db8::20]:61000", "10.0.0.1:0", 42.0,
		"192.168.1.20:61000", "0.0.0.0:5", "[fe80::1%eth0]:7", "224.0.0.1:9", strings.Repeat("9", 100)}, 8)
	want := []string{"192.168.1.20:61000", "[2001:db8::20]:61000", "[fe80::1]:7"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestDeveloperKeys(t *testing.T) {
	for _, c := range []struct {
		app, tcURL string
		want       []string
	}{
		{"KEY", "", []string{"KEY"}},
		{"KEY/app/inst", "", []string{"KEY"}},
		{"", "rtmfp://host:1935/KEY/x", []string{"KEY"}},
		{"", "rtmfp://host/KEY?x=1", []string{"KEY"}},
		{"", "rtmfp://host/", nil},
		{"/KEY/", "", []string{"KEY"}},
		{"KEY", "rtmfp://host/KEY/", []string{"KEY"}},
		// librtmfp: app is "live" whatever the URL; the URL's key comes first.
		{"live", "rtmfp://127.0.0.1:1935/KEY", []string{"KEY", "live"}},
		{"KEY", "not a url", []string{"KEY"}},
	} {
		if got := developerKeys(c.app, c.tcURL); !slices.Equal(got, c.want) {
			t.Errorf("developerKeys(%q, %q) = %q, want %q", c.app, c.tcURL, got, c.want)
		}
	}
}
