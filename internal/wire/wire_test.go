package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"net/netip"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/testvec"
)

func TestVLUVectors(t *testing.T) {
	cases := []struct {
		v   uint64
		hex string
	}{
		{0, "00"}, {1, "01"}, {127, "7f"}, {128, "8100"}, {300, "822c"},
		{16383, "ff7f"}, {16384, "818000"}, {65407, "83fe7f"}, {2097151, "ffff7f"},
		{2097152, "81808000"}, {4294967295, "8fffffff7f"}, {math.MaxUint64, "81ffffffffffffffff7f"},
	}
	for _, c := range cases {
		got := hex.EncodeToString(AppendVLU(nil, c.v))
		if got != c.hex {
			t.Errorf("AppendVLU(%d) = %s, want %s", c.v, got, c.hex)
		}
		if VLULen(c.v) != len(c.hex)/2 {
			t.Errorf("VLULen(%d) = %d", c.v, VLULen(c.v))
		}
		v, n, err := ParseVLU(testvec.Hex(t, c.hex))
		if err != nil || v != c.v || n != len(c.hex)/2 {
			t.Errorf("ParseVLU(%s) = %d, %d, %v", c.hex, v, n, err)
		}
	}
	if v, n, err := ParseVLU([]byte{0x80, 0x80, 0x81, 0x00}); err != nil || v != 128 || n != 4 {
		t.Errorf("redundant leading groups: %d %d %v", v, n, err)
	}
	if _, _, err := ParseVLU([]byte{0x81, 0x80}); !errors.Is(err, ErrShort) {
		t.Errorf("VLU off the end: %v", err)
	}
	if _, _, err := ParseVLU(testvec.Hex(t, "82ffffffffffffffff7f")); !errors.Is(err, ErrVLUOverflow) {
		t.Errorf("2^64: %v", err)
	}
	if _, _, err := ParseVLU(bytes.Repeat([]byte{0x80}, 100)); !errors.Is(err, ErrVLUOverflow) {
		t.Errorf("long run of 0x80: %v", err)
	}
}

func TestOptionVectors(t *testing.T) {
	b := AppendOption(nil, 0, []byte{0x54, 0x43, 0x04, 0x00})
	b = AppendOptionVLU(b, OptReturnFlow, 2)
	b = append(b, 0)
	if want := "050054430400020a0200"; hex.EncodeToString(b) != want {
		t.Fatalf("options = %x, want %s", b, want)
	}
	var got []Option
	n, err := WalkOptionList(b, func(o Option) { got = append(got, o) })
	if err != nil || n != len(b) || len(got) != 2 || got[1].Type != 0x0a || got[1].Value[0] != 2 {
		t.Fatalf("WalkOptionList: %d %v %+v", n, err, got)
	}
	if _, err := WalkOptionList(b[:len(b)-1], nil); !errors.Is(err, ErrNoMarker) {
		t.Errorf("missing marker: %v", err)
	}
	if _, _, _, err := ParseOption([]byte{0x05, 0x00, 0x01}); !errors.Is(err, ErrOptionLength) {
		t.Errorf("overrun: %v", err)
	}
	if OptionLen(0x1d, 129) != 132 {
		t.Errorf("OptionLen = %d", OptionLen(0x1d, 129))
	}
}

func TestChecksumVectors(t *testing.T) {
	if got := Checksum([]byte{1, 2, 3, 4, 5}); got != 0xfbf4 {
		t.Errorf("Checksum(01..05) = %04x", got)
	}
	plain := testvec.Get(t, "stratus_ihello_plain")
	if got := Checksum(plain[2:]); got != 0x0a4d {
		t.Errorf("Stratus IHello checksum = %04x", got)
	}
}

func TestAddressEncoding(t *testing.T) {
	cases := []struct {
		ap     string
		origin byte
		hex    string
	}{
		{"198.51.100.7:61000", OriginObserved, "02c6336407ee48"},
		{"192.168.1.20:61000", OriginReported, "01c0a80114ee48"},
		{"[2001:db8::20]:61000", OriginReported, "8120010db8000000000000000000000020ee48"},
		{"[::ffff:203.0.113.5]:50000", OriginObserved, "02cb007105c350"},
	}
	for _, c := range cases {
		ap := netip.MustParseAddrPort(c.ap)
		b := AppendAddress(nil, ap, c.origin)
		if hex.EncodeToString(b) != c.hex || AddressLen(ap) != len(b) {
			t.Errorf("AppendAddress(%s) = %x, want %s", c.ap, b, c.hex)
		}
		a, n, err := ParseAddress(b)
		if err != nil || n != len(b) || a.Origin != c.origin || a.AddrPort.Addr().Unmap() != ap.Addr().Unmap() || a.AddrPort.Port() != ap.Port() {
			t.Errorf("ParseAddress(%x) = %v %d %v", b, a, n, err)
		}
	}
	for _, bad := range []string{"", "02c63364", "81200100"} {
		if _, _, err := ParseAddress(testvec.Hex(t, bad)); !errors.Is(err, ErrAddress) {
			t.Errorf("ParseAddress(%s): %v", bad, err)
		}
	}
}

// TestStratusIHelloEncryption reproduces reference §9.3 byte for byte.
func TestStratusIHelloEncryption(t *testing.T) {
	pkt := testvec.Get(t, "stratus_ihello_packet")
	wire := NewDefaultSealer().Seal(nil, 0, pkt)
	if want := testvec.Get(t, "stratus_ihello_wire"); !bytes.Equal(wire, want) {
		t.Fatalf("sealed:\n%x\nwant\n%x", wire, want)
	}
	if sid, _ := SessionID(wire); sid != 0 {
		t.Fatalf("SID = %08x", sid)
	}
	pt, err := NewDefaultOpener().Open(wire)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pt[:len(pkt)], pkt) {
		t.Fatalf("opened %x", pt)
	}
}

// TestFlashPlayer13Handshake decrypts the four captured handshake datagrams
// between Flash Player 13 and Adobe's cc.rtmfp.net (reference §9.4), parses
// every chunk and re-encodes it byte-identically.
func TestFlashPlayer13Handshake(t *testing.T) {
	type check func(t *testing.T, c Chunk) []byte
	cases := []struct {
		name  string
		sid   uint32
		chunk byte
		re    check
	}{
		{"fp13_ihello", 0, ChunkIHello, func(t *testing.T, c Chunk) []byte {
			h, err := ParseIHello(c.Payload)
			if err != nil || string(h.EPD) != "\x15\x0artmfp://cc.rtmfp.net" || len(h.Tag) != 16 {
				t.Fatalf("IHello %+v %v", h, err)
			}
			return h.Append(nil)
		}},
		{"fp13_rhello", 0, ChunkRHello, func(t *testing.T, c Chunk) []byte {
			h, err := ParseRHello(c.Payload)
			if err != nil || len(h.Tag) != 16 || len(h.Cookie) != 64 || len(h.Certificate) != 77 {
				t.Fatalf("RHello %+v %v", h, err)
			}
			return h.Append(nil)
		}},
		{"fp13_iikeying", 0, ChunkIIKeying, func(t *testing.T, c Chunk) []byte {
			k, err := ParseIIKeying(c.Payload)
			if err != nil || k.ISID != 0x02000000 || len(k.Cookie) != 64 || len(k.Certificate) != 132 || len(k.SKIC) != 76 || !bytes.Equal(k.Signature, []byte{0x58}) {
				t.Fatalf("IIKeying %+v %v", k, err)
			}
			return k.Append(nil)
		}},
		{"fp13_rikeying", 0x02000000, ChunkRIKeying, func(t *testing.T, c Chunk) []byte {
			k, err := ParseRIKeying(c.Payload)
			if err != nil || k.RSID != 0x45020000 || len(k.SKRC) != 139 || !bytes.Equal(k.Signature, []byte{0x58}) {
				t.Fatalf("RIKeying %+v %v", k, err)
			}
			return k.Append(nil)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wire := testvec.Get(t, c.name+"_wire")
			plain := testvec.Get(t, c.name+"_plain")
			if sid, err := SessionID(wire); err != nil || sid != c.sid {
				t.Fatalf("SID %08x %v", sid, err)
			}
			pt, err := NewDefaultOpener().Open(append([]byte(nil), wire...))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pt, plain[2:]) {
				t.Fatalf("plaintext mismatch")
			}
			h, n, err := ParseHeader(pt)
			if err != nil || h.Flags != 0x0b || h.Mode() != ModeStartup {
				t.Fatalf("header %+v %v", h, err)
			}
			ch, rest, ok := NextChunk(pt[n:])
			if !ok || ch.Type != c.chunk {
				t.Fatalf("chunk %x ok=%v", ch.Type, ok)
			}
			if _, _, more := NextChunk(rest); more {
				t.Fatalf("unexpected second chunk")
			}
			re := c.re(t, ch)
			if !bytes.Equal(re, pt[n:n+len(re)]) || len(re) != 3+len(ch.Payload) {
				t.Fatalf("re-encoded chunk differs:\n%x\n%x", re, pt[n:n+len(re)])
			}
			// Re-sealing the same packet with the same SID reproduces the wire bytes.
			resealed := NewDefaultSealer().Seal(nil, c.sid, pt[:n+len(re)])
			if !bytes.Equal(resealed, wire) {
				t.Fatalf("re-sealed datagram differs")
			}
		})
	}
}

// TestRendezvousVectors checks the constructed examples of reference §9.7.
func TestRendezvousVectors(t *testing.T) {
	peerID := testvec.Hex(t, "9210df7cb656cad82a607efd810e6c3f922a062ec7dae6df0f39e8a7248dcbf8")
	tag := testvec.Hex(t, "2175b73f525fa0dd1f75ae339a706cc3")
	epd := append([]byte{0x21, 0x0f}, peerID...)
	if got := (IHello{EPD: epd, Tag: tag}).Append(nil); !bytes.Equal(got, testvec.Get(t, "rdv_ihello_chunk")) {
		t.Errorf("lookup IHello = %x", got)
	}
	rd := Redirect{Tag: tag, Addresses: []Address{
		{netip.MustParseAddrPort("198.51.100.7:61000"), OriginObserved},
		{netip.MustParseAddrPort("192.168.1.20:61000"), OriginReported},
		{netip.MustParseAddrPort("[2001:db8::20]:61000"), OriginReported},
	}}
	chunk := rd.Append(nil)
	if !bytes.Equal(chunk, testvec.Get(t, "rdv_redirect_chunk")) {
		t.Errorf("Redirect = %x", chunk)
	}
	pkt := AppendHeader(nil, Header{Flags: FlagTimestamp | ModeStartup, Timestamp: 0x1234})
	pkt = append(pkt, chunk...)
	if got := NewDefaultSealer().Seal(nil, 0, pkt); !bytes.Equal(got, testvec.Get(t, "rdv_redirect_wire")) {
		t.Errorf("Redirect datagram = %x", got)
	}
	parsed, err := ParseRedirect(chunk[3:])
	if err != nil || len(parsed.Addresses) != 3 || parsed.Addresses[2].AddrPort != rd.Addresses[2].AddrPort {
		t.Errorf("ParseRedirect = %+v %v", parsed, err)
	}

	fi := FIHello{EPD: epd, Reply: Address{netip.MustParseAddrPort("203.0.113.5:50000"), OriginObserved}, Tag: tag}
	fchunk := fi.Append(nil)
	if !bytes.Equal(fchunk, testvec.Get(t, "rdv_fihello_chunk")) {
		t.Errorf("FIHello = %x", fchunk)
	}
	key := testvec.Hex(t, "bc4b145aafb0f8287b3cf87bd036acf0")
	s, _ := NewSealer(key, Features{}, nil)
	pkt = AppendHeader(nil, Header{Flags: FlagTimeCriticalReverse | FlagTimestamp | ModeResponder, Timestamp: 0x1235})
	pkt = append(pkt, fchunk...)
	if got := s.Seal(nil, 0x02000000, pkt); !bytes.Equal(got, testvec.Get(t, "rdv_fihello_wire")) {
		t.Errorf("FIHello datagram = %x", got)
	}
	pf, err := ParseFIHello(fchunk[3:])
	if err != nil || pf.Reply != fi.Reply || !bytes.Equal(pf.Tag, tag) || !bytes.Equal(pf.EPD, epd) {
		t.Errorf("ParseFIHello = %+v %v", pf, err)
	}

	ack := Ack{FlowID: 2, Window: 127, Cum: 5, Ranges: []AckRange{{8, 9}, {12, 12}}}
	if got := ack.Append(nil, 1000); !bytes.Equal(got, testvec.Get(t, "rdv_ack_chunk")) {
		t.Errorf("Ack = %x", got)
	}
	pa, err := ParseAckRanges(testvec.Get(t, "rdv_ack_chunk")[3:])
	if err != nil || pa.Cum != 5 || len(pa.Ranges) != 2 || pa.Ranges[0] != (AckRange{8, 9}) || pa.Ranges[1] != (AckRange{12, 12}) {
		t.Errorf("ParseAckRanges = %+v %v", pa, err)
	}
	bm, err := ParseAckBitmap(ack.AppendBitmap(nil)[3:])
	if err != nil || len(bm.Ranges) != 2 || bm.Ranges[0] != (AckRange{8, 9}) || bm.Ranges[1] != (AckRange{12, 12}) {
		t.Errorf("bitmap round trip = %+v %v", bm, err)
	}
}

func TestUserDataVectors(t *testing.T) {
	// Flash's first NetConnection command chunk header (reference §4.3.5).
	p := testvec.Get(t, "fp117_p5_plain")
	ch, _, ok := NextChunk(p[2+5:])
	if !ok || ch.Type != ChunkUserData {
		t.Fatal("no user data chunk")
	}
	ud, err := ParseUserData(ch.Payload, false)
	if err != nil || ud.FlowID != 2 || ud.Seq != 1 || ud.FSNOffset != 1 || hex.EncodeToString(ud.Options) != "05005443040000" || ud.Data[0] != 0x14 {
		t.Fatalf("%+v %v", ud, err)
	}
	if re := ud.Append(nil); !bytes.Equal(re, p[7:7+3+len(ch.Payload)]) {
		t.Fatalf("re-encoded user data differs")
	}
	if _, err := ParseUserData([]byte{0x00, 0x01, 0x01, 0x02}, false); !errors.Is(err, ErrChunk) {
		t.Errorf("fsnOffset > seq accepted: %v", err)
	}
	if _, err := ParseUserData([]byte{0x80, 0x01, 0x01, 0x01, 0x05, 0x00}, false); !errors.Is(err, ErrChunk) {
		t.Errorf("unterminated options accepted: %v", err)
	}
}

func TestAckTruncation(t *testing.T) {
	a := Ack{FlowID: 1, Window: 16383, Cum: 1}
	for i := uint64(0); i < 100; i++ {
		a.Ranges = append(a.Ranges, AckRange{3 + 3*i, 3 + 3*i})
	}
	b := a.Append(nil, 40)
	if len(b) > 40 {
		t.Fatalf("ack of %d bytes exceeds 40", len(b))
	}
	pa, err := ParseAckRanges(b[3:])
	if err != nil || len(pa.Ranges) == 0 || pa.Ranges[0] != a.Ranges[0] {
		t.Fatalf("truncated ack %+v %v", pa, err)
	}
	if got := a.Append([]byte{9}, 3); len(got) != 1 {
		t.Fatalf("ack that cannot fit was written")
	}
}

func TestBadDatagrams(t *testing.T) {
	good := testvec.Get(t, "stratus_ihello_wire")
	o := NewDefaultOpener()
	cases := map[string][]byte{
		"truncated":   good[:len(good)-1],
		"short":       good[:12],
		"mis-padded":  append(append([]byte(nil), good...), 0, 0, 0),
		"oversized":   make([]byte, 4+16*300),
		"bad-cksum":   func() []byte { b := append([]byte(nil), good...); b[50] ^= 1; return b }(),
		"empty-after": good[:4],
	}
	for name, d := range cases {
		if _, err := o.Open(append([]byte(nil), d...)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	wrongKey, _ := NewOpener([]byte("0123456789abcdef"), Features{}, nil)
	if _, err := wrongKey.Open(append([]byte(nil), good...)); !errors.Is(err, ErrChecksum) {
		t.Errorf("wrong key: %v", err)
	}
}

func TestHMACAndSequenceNumbers(t *testing.T) {
	key := []byte("0123456789abcdef")
	mk := []byte("mac key")
	for _, f := range []Features{{HMACLen: 10}, {Seq: true}, {HMACLen: 32, Seq: true}, {HMACLen: 4}} {
		s, _ := NewSealer(key, f, mk)
		o, _ := NewOpener(key, f, mk)
		pkt := AppendHeader(nil, Header{Flags: FlagTimestamp | ModeInitiator, Timestamp: 7})
		pkt = AppendChunk(pkt, ChunkPing, []byte("hello"))
		var sent [][]byte
		for range 40 {
			sent = append(sent, s.Seal(nil, 42, pkt))
		}
		for i, d := range sent {
			if sid, _ := SessionID(d); sid != 42 {
				t.Fatalf("%+v: SID %d", f, sid)
			}
			pt, err := o.Open(append([]byte(nil), d...))
			if err != nil || !bytes.Equal(pt[:len(pkt)], pkt) {
				t.Fatalf("%+v: packet %d: %v", f, i, err)
			}
		}
		if f.Seq {
			if _, err := o.Open(append([]byte(nil), sent[39]...)); !errors.Is(err, ErrSequence) {
				t.Errorf("%+v: replay accepted: %v", f, err)
			}
			if _, err := o.Open(append([]byte(nil), sent[2]...)); !errors.Is(err, ErrSequence) {
				t.Errorf("%+v: old packet accepted: %v", f, err)
			}
		}
		if f.HMACLen > 0 {
			bad := append([]byte(nil), sent[0]...)
			bad[len(bad)-1] ^= 1
			o2, _ := NewOpener(key, f, mk)
			if _, err := o2.Open(bad); !errors.Is(err, ErrHMAC) {
				t.Errorf("%+v: bad HMAC: %v", f, err)
			}
		}
	}
}

func TestHeaderFlagCombinations(t *testing.T) {
	for flags := 0; flags < 256; flags++ {
		h := Header{Flags: byte(flags) &^ 0x30, Timestamp: 0x1234, TimestampEcho: 0x5678}
		b := AppendHeader(nil, h)
		got, n, err := ParseHeader(b)
		if h.Mode() == ModeInvalid {
			if err == nil {
				t.Errorf("mode 0 accepted: %02x", flags)
			}
			continue
		}
		if err != nil || n != len(b) || got.Flags != h.Flags {
			t.Errorf("flags %02x: %+v %d %v", flags, got, n, err)
		}
		if h.HasTimestamp() && got.Timestamp != 0x1234 || h.HasEcho() && got.TimestampEcho != 0x5678 {
			t.Errorf("flags %02x: timestamps %+v", flags, got)
		}
	}
}
