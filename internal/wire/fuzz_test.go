package wire

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/testvec"
)

func FuzzVLU(f *testing.F) {
	for _, s := range []string{"00", "7f", "8100", "81ffffffffffffffff7f", "80808100", "ff"} {
		f.Add(testvec.Hex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := ParseVLU(b)
		if err != nil {
			return
		}
		if n > len(b) || n > MaxVLULen+4 {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		re := AppendVLU(nil, v)
		if v2, _, err := ParseVLU(re); err != nil || v2 != v || len(re) > n {
			t.Fatalf("round trip of %d: %x", v, re)
		}
	})
}

func FuzzOptions(f *testing.F) {
	f.Add(testvec.Hex(f, "050054430400020a0200"))
	f.Add(testvec.Get(f, "fp117_skic"))
	f.Add(testvec.Get(f, "fp117_server_cert"))
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, marker, err := ParseOptionSequence(b)
		if err == nil {
			if marker > len(b) {
				t.Fatal("marker beyond input")
			}
			var re []byte
			for _, o := range opts {
				re = AppendOption(re, o.Type, o.Value)
			}
			again, _, err := ParseOptionSequence(re)
			if err != nil || len(again) != len(opts) {
				t.Fatalf("re-encoded options do not parse: %v", err)
			}
		}
		_, _ = WalkOptionList(b, func(Option) {})
		_, _ = FindOption(b, 0x0d)
	})
}

func FuzzAddress(f *testing.F) {
	f.Add(testvec.Hex(f, "02c6336407ee48"))
	f.Add(testvec.Hex(f, "8120010db8000000000000000000000020ee48"))
	f.Fuzz(func(t *testing.T, b []byte) {
		as, err := ParseAddressList(b, MaxRedirectAddresses)
		if len(as) > MaxRedirectAddresses {
			t.Fatal("unbounded address list")
		}
		if err != nil {
			return
		}
		a, _, err := ParseAddress(b)
		if err != nil || len(b) == 0 {
			return
		}
		// Re-encoding may differ in bytes (IPv4-mapped IPv6 addresses are
		// written in the 4-byte form, reserved flag bits are dropped) but
		// must decode to the same address, port and origin.
		re := AppendAddress(nil, a.AddrPort, a.Origin)
		again, _, err := ParseAddress(re)
		if err != nil || again.Origin != a.Origin || again.AddrPort.Port() != a.AddrPort.Port() ||
			again.AddrPort.Addr().Unmap() != a.AddrPort.Addr().Unmap() {
			t.Fatalf("round trip %x -> %x: %v", b, re, err)
		}
	})
}

// parseAnyChunk runs the parser for c's type and, where it succeeds,
// re-encodes the value: the parsers must never panic and what they accept
// must encode back to a chunk that parses to the same thing.
func parseAnyChunk(t *testing.T, c Chunk) {
	switch c.Type {
	case ChunkIHello:
		roundTrip(t, c, ParseIHello, IHello.Append)
	case ChunkRHello:
		roundTrip(t, c, ParseRHello, RHello.Append)
	case ChunkRedirect:
		_, _ = ParseRedirect(c.Payload)
	case ChunkCookieChange:
		roundTrip(t, c, ParseCookieChange, CookieChange.Append)
	case ChunkIIKeying:
		roundTrip(t, c, ParseIIKeying, IIKeying.Append)
	case ChunkRIKeying:
		roundTrip(t, c, ParseRIKeying, RIKeying.Append)
	case ChunkFIHello:
		_, _ = ParseFIHello(c.Payload)
	case ChunkUserData, ChunkNextUserData:
		if v, err := ParseUserData(c.Payload, c.Type == ChunkNextUserData); err == nil {
			again, err := ParseUserData(v.Append(nil)[3:], v.Next)
			if err != nil || !bytes.Equal(again.Data, v.Data) || again.Seq != v.Seq {
				t.Fatalf("user data round trip: %v", err)
			}
		}
	case ChunkAckRanges:
		if v, err := ParseAckRanges(c.Payload); err == nil && len(v.Ranges) > MaxAckRanges {
			t.Fatal("unbounded ranges")
		}
	case ChunkAckBitmap:
		if v, err := ParseAckBitmap(c.Payload); err == nil && len(v.Ranges) > MaxAckRanges {
			t.Fatal("unbounded ranges")
		}
	case ChunkBufferProbe:
		_, _ = ParseBufferProbe(c.Payload)
	case ChunkFlowException:
		_, _ = ParseFlowException(c.Payload)
	case ChunkFragment:
		_, _ = ParseFragment(c.Payload)
	}
}

// roundTrip checks that a chunk the parser accepts re-encodes to a chunk
// of the same type that parses to the same value (the encoding itself may
// differ: decoders accept redundant VLU groups, encoders write minimal ones).
func roundTrip[T any](t *testing.T, c Chunk, parse func([]byte) (T, error), app func(T, []byte) []byte) {
	t.Helper()
	v, err := parse(c.Payload)
	if err != nil {
		return
	}
	re := app(v, nil)
	if len(re) < 3 || re[0] != c.Type {
		t.Fatalf("chunk %02x re-encoded as %x", c.Type, re)
	}
	again, err := parse(re[3:])
	if err != nil || !reflect.DeepEqual(normalize(again), normalize(v)) {
		t.Fatalf("chunk %02x does not round-trip: %v\n%+v\n%+v", c.Type, err, v, again)
	}
}

// normalize maps empty and nil slices alike for comparison.
func normalize(v any) string { return fmt.Sprintf("%x", fmt.Sprint(v)) }

func FuzzChunks(f *testing.F) {
	for _, n := range []string{"fp13_ihello_plain", "fp13_rhello_plain", "fp13_iikeying_plain", "fp13_rikeying_plain",
		"fp117_p5_plain", "fp117_p6_plain", "fp117_p7_plain", "fp117_p8_plain", "fp117_p9_plain", "fp117_p11_plain"} {
		p := testvec.Get(f, n)
		_, hl, _ := ParseHeader(p[2:])
		f.Add(p[2+hl:])
	}
	f.Add(testvec.Get(f, "rdv_redirect_chunk"))
	f.Add(testvec.Get(f, "rdv_fihello_chunk"))
	f.Add(testvec.Get(f, "rdv_ack_chunk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for {
			c, rest, ok := NextChunk(b)
			if !ok {
				return
			}
			parseAnyChunk(t, c)
			b = rest
		}
	})
}

// FuzzPacket feeds whole datagrams to the receive path: SID recovery,
// decryption under the default key, header and chunk parsing.
func FuzzPacket(f *testing.F) {
	for _, n := range []string{"fp13_ihello_wire", "fp13_iikeying_wire", "stratus_ihello_wire", "rdv_redirect_wire", "fp117_p3_iikeying_wire"} {
		f.Add(testvec.Get(f, n))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		if _, err := SessionID(d); err != nil {
			return
		}
		pt, err := NewDefaultOpener().Open(d)
		if err != nil {
			return
		}
		_, n, err := ParseHeader(pt)
		if err != nil {
			return
		}
		b := pt[n:]
		for {
			c, rest, ok := NextChunk(b)
			if !ok {
				return
			}
			parseAnyChunk(t, c)
			b = rest
		}
	})
}
