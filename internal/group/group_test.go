package group

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seq(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// Known answers from docs/netgroup.md §1 (computed independently with
// Python's hashlib).
func TestIdentityKnownAnswers(t *testing.T) {
	for _, c := range []struct{ spec, text, id string }{
		{"G:027f02010101000103010c050e74657374011b00", "G:027f02010101000103010c050e74657374011b",
			"c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9"},
		{"G:027f0201010103010c050e74657374011b00", "G:027f0201010103010c050e74657374011b",
			"763f90e4b524a0e026052bb5696bd143246f26c6eb0b9fa31b0d1ed39a092620"},
		{"G:027f02010001010103010c050e74657374011b00", "G:027f02010001010103010c050e74657374011b",
			"495ba5fd5542b3105a3d982141fc149d1b0261529abe3321ba039b073789019a"},
		{"G:0101010c050e6f72663200", "G:0101010c050e6f726632",
			"a7b19dcd531386643f069cdfd22e5079361684d7de7cd9893eefd3f873d15309"},
		{"G:027f02010321072bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b010c050e6368617400" + "0717736563726574",
			"G:027f02010321072bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b010c050e63686174",
			"a00386f4027cfc21c1c33098307e59b2542ab775b9a0962aa65cec9003ee5aa2"},
	} {
		id, err := IdentityOf(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if id.Text != c.text || id.HexID() != c.id {
			t.Errorf("%s: text %s id %s", c.spec, id.Text, id.HexID())
		}
	}
	// The single hash of the brief's text, from the same table.
	sum := sha256.Sum256([]byte("G:027f02010101000103010c050e74657374011b"))
	if hex.EncodeToString(sum[:]) != "8a8b584da2c116ec28b8ce6aeb096d74f68bad5aa70c889264b41c7e9d42fca3" {
		t.Error("single hash")
	}
}

func TestParseLibrtmfpSpec(t *testing.T) {
	sp, err := ParseSpec("G:027f02010101000103010c050e74657374011b00")
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Version: 2, Multicast: true, Routing: true, Posting: true, ServerChannel: true, Name: "test", IPMulticastMemberUpdates: true}
	if sp.Version != want.Version || !sp.Multicast || !sp.Routing || !sp.Posting || !sp.ServerChannel || sp.Name != "test" ||
		!sp.IPMulticastMemberUpdates || sp.ObjectReplication || sp.PeerToPeerDisabled {
		t.Fatalf("%+v", sp)
	}
	// Re-encoded in Flash's order: what Flash would emit for these settings.
	if got := sp.Encode(true); got != "G:027f02010001010103010c050e74657374011b00" {
		t.Fatal(got)
	}
}

// The constructed examples of docs/netgroup.md §1.2 and §1.6: Flash's
// option order and encodings, passwords in clear after the terminator.
func TestEncodeLikeFlash(t *testing.T) {
	sp := Spec{Version: 2, Posting: true, ServerChannel: true, Name: "chat", PostingHash: PasswordHash("secret", ""), PostingAuth: "secret"}
	want := "G:027f02010321072bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b010c050e63686174000717736563726574"
	if got := sp.Encode(true); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := sp.Encode(false); got != strings.TrimSuffix(want, "0717736563726574") {
		t.Fatal(got)
	}
	// The FMS sample: unsalted SHA-256 publish hash, clear password.
	if hex.EncodeToString(PasswordHash("realeyes", "")) != "f8cd3b377cf93646b30b07f29cf917d68d63c26ac60af46f0563829280d48fc5" {
		t.Fatal("publish hash")
	}
	fms := Spec{PublishHash: PasswordHash("realeyes", ""), ServerChannel: true, Name: "fms.multicast.example", PublishAuth: "realeyes"}
	s := fms.Encode(true)
	if !strings.HasPrefix(s, "G:2105f8cd3b37") || !strings.HasSuffix(s, "010c160e"+hex.EncodeToString([]byte("fms.multicast.example"))+"00"+"0915"+hex.EncodeToString([]byte("realeyes"))) {
		t.Fatal(s)
	}
	// makeUnique, IP multicast and a bootstrap peer after the terminator.
	osmf := Spec{ServerChannel: true, Name: "n", Unique: seq(0, 32), IPMulticastMemberUpdates: true,
		IPMulticast:    []IPMulticastAddr{{Addr: netip.MustParseAddrPort("224.0.0.254:33099")}},
		BootstrapPeers: [][32]byte{[32]byte(seq(0x40, 32))}}
	s = osmf.Encode(false)
	if !strings.Contains(s, "010c020e6e210e000102") || !strings.Contains(s, "011b00070ae00000fe814b210b4041") {
		t.Fatal(s)
	}
	back, err := ParseSpec(s)
	if err != nil || back.Name != "n" || !bytes.Equal(back.Unique, seq(0, 32)) || len(back.IPMulticast) != 1 ||
		back.IPMulticast[0].Addr != osmf.IPMulticast[0].Addr || len(back.BootstrapPeers) != 1 || back.BootstrapPeers[0] != osmf.BootstrapPeers[0] {
		t.Fatalf("%+v %v", back, err)
	}
	// Salted: salt ‖ SHA-256(salt ‖ password).
	h := PasswordHash("pw", "salt")
	sum := sha256.Sum256([]byte("saltpw"))
	if string(h) != "salt"+string(sum[:]) || !PasswordMatches(h, "pw") || PasswordMatches(h, "px") {
		t.Fatal("salted hash")
	}
}

// Names of 127 bytes or more take a two-byte VLU length, as in Flash's
// encoder.
func TestLongName(t *testing.T) {
	sp := Spec{Name: strings.Repeat("x", 130), ServerChannel: true}
	s := sp.Encode(false)
	if !strings.HasPrefix(s, "G:010c81030e") {
		t.Fatal(s[:16])
	}
	back, err := ParseSpec(s)
	if err != nil || back.Name != sp.Name {
		t.Fatal(err)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, s := range []string{"", "G:", "X:00", "G:zz", "G:0e", "G:050e7465", "G:010c", "G:0000"} {
		if _, err := ParseSpec(s); err == nil {
			t.Errorf("%q parsed", s)
		}
		if _, err := IdentityOf(s); err == nil && s != "G:0000" {
			t.Errorf("%q has an identity", s)
		}
	}
}

func TestGroupAddressKnownAnswers(t *testing.T) {
	for _, c := range []struct {
		from int
		addr string
	}{
		{0x00, "b899a498e581c1b05a163df2329c20db35411de8eeeed68e12ecdc2ba9e15ebc"},
		{0x20, "7a13d1a576c9389bd06abb2780d567e322bfd45b3b74026622b256b9f9018b20"},
		{0x40, "aebcb0ed5b0a3372fddb7f66c721791350a1ba6d1d44e1850a52e1548ac9453a"},
	} {
		if got := AddressOf([32]byte(seq(c.from, 32))).String(); got != c.addr {
			t.Errorf("peer %02x…: %s", c.from, got)
		}
	}
}

func TestDistance(t *testing.T) {
	var a, b Addr
	b[31] = 5
	if Distance(a, b).Int64() != 5 || Distance(b, a).Int64() != 5 {
		t.Fatal("near")
	}
	for i := range b {
		b[i] = 0xff
	}
	if Distance(a, b).Int64() != 1 {
		t.Fatal("wrap")
	}
}

// docs/netgroup.md §8: the group handshake of two constructed peers.
func TestGroupInitKnownAnswer(t *testing.T) {
	text := "G:027f02010101000103010c050e74657374011b"
	if k := Key(text, seq(0, 32)); hex.EncodeToString(k[:]) != "67db7c187275cbcca61853ea0d6ac44b9e2c435485abfdf3220cd2db3c2332b8" {
		t.Fatalf("key %x", k)
	}
	secret := seq(0x80, 128)
	skicA := append(append([]byte{0x02, 0x1d, 0x02, 0x41, 0x0e}, seq(0xa0, 64)...), 0x03, 0x1a, 0x02, 0x0a, 0x02, 0x1e, 0x02)
	skrcB := append([]byte{0x03, 0x1a, 0x00, 0x00, 0x02, 0x1e, 0x00, 0x41, 0x0e}, seq(0x40, 64)...)
	mac := func(k, d []byte) []byte { m := hmac.New(sha256.New, k); m.Write(d); return m.Sum(nil) }
	nonceA, nonceB := mac(secret, skicA), mac(secret, skrcB)
	if hex.EncodeToString(nonceA) != "fe80ca44a5ec57e41c477031b18ee76df345b716da1731ce9c5f89695803a5f5" ||
		hex.EncodeToString(nonceB) != "b075bebba7380a33a52daaa5464d6e76c7aa298e59c9d4f49038d548c323c3fc" {
		t.Fatal("nonces")
	}
	keyAB, keyBA := Key(text, nonceB), Key(text, nonceA)
	if hex.EncodeToString(keyAB[:]) != "b4175e3a5aa07f6b23cbbd96bca057c13fd8d13c39e33bf3d68fceec1be9c2ba" ||
		hex.EncodeToString(keyBA[:]) != "8d78747a36860c654df8e38237084bf26b2e9979bc2589515e7dce715031fa54" {
		t.Fatal("keys")
	}
	id, _ := IdentityOf(text + "00")
	init := AppendInit(nil, Init{GroupHex: id.HexID(), Key: keyAB, Target: [32]byte(seq(0x20, 32))})
	want := unhex(t, `01 41 00 `+hex.EncodeToString([]byte("c3ab09fc9d3fd2fe3f4f82762c530b96f2eb1c49d9fe615f48f250545b731dc9"))+`
		21 01 b4 17 5e 3a 5a a0 7f 6b 23 cb bd 96 bc a0 57 c1 3f d8 d1 3c 39 e3 3b f3 d6 8f ce ec 1b e9 c2 ba
		23 03 21 0f `+hex.EncodeToString(seq(0x20, 32)))
	if !bytes.Equal(init, want) || len(init) != 137 {
		t.Fatalf("init %x", init)
	}
	in, err := ParseInit(init)
	if err != nil || in.Key != keyAB || in.Target != [32]byte(seq(0x20, 32)) || in.GroupHex != id.HexID() {
		t.Fatalf("%+v %v", in, err)
	}
	// Upper-case hex is accepted (librtmfp compares without case).
	up := bytes.ToUpper(init[3:67])
	copy(init[3:], up)
	if in, err := ParseInit(init); err != nil || !strings.EqualFold(in.GroupHex, id.HexID()) {
		t.Fatal(err)
	}
	init[1] = 0x40
	if _, err := ParseInit(init); err == nil {
		t.Fatal("bad header accepted")
	}
}

// docs/netgroup.md §3.4 (the server channel's join and member
// announcement are internal/flash's, tested there).
func TestReportKnownAnswer(t *testing.T) {
	rep := Report{
		SeenAs: netip.MustParseAddrPort("203.0.113.7:50001"),
		Self: []wire.Address{{AddrPort: netip.MustParseAddrPort("198.51.100.1:1935"), Origin: OriginHost},
			{AddrPort: netip.MustParseAddrPort("192.0.2.10:40000"), Origin: OriginPublic}},
		Peers: []ReportPeer{{ID: [32]byte(seq(0x40, 32)), Age: 12, Addrs: []wire.Address{
			{AddrPort: netip.MustParseAddrPort("198.51.100.1:1935"), Origin: OriginHost},
			{AddrPort: netip.MustParseAddrPort("198.51.100.77:6000"), Origin: OriginPublic}}}},
	}
	want := unhex(t, `0a
		08 0d 02 cb 00 71 07 c3 51
		0f 0a 03 c6 33 64 01 07 8f 02 c0 00 02 0a 9c 40
		00
		22 21 0f `+hex.EncodeToString(seq(0x40, 32))+`
		0c
		0f 0a 03 c6 33 64 01 07 8f 02 c6 33 64 4d 17 70
		00`)
	got := AppendReport(nil, rep)
	if !bytes.Equal(got, want) || len(got) != 80 {
		t.Fatalf("report\n got %x\nwant %x", got, want)
	}
	back, err := ParseReport(got)
	if err != nil || back.SeenAs != rep.SeenAs || len(back.Self) != 2 || len(back.Peers) != 1 || back.Peers[0].Age != 12 ||
		back.Peers[0].ID != rep.Peers[0].ID || len(back.Peers[0].Addrs) != 2 || back.Peers[0].Addrs[1] != rep.Peers[0].Addrs[1] {
		t.Fatalf("%+v %v", back, err)
	}
	// librtmfp's tolerances: flag options before 0d, one-byte lengths
	// above 0x81, non-peer records skipped.
	odd := append([]byte{0x0a, 0x01, 0x05}, got[1:]...)
	if back, err := ParseReport(odd); err != nil || len(back.Peers) != 1 {
		t.Fatal("leading flag option", err)
	}
	if _, err := ParseReport([]byte{0x0a, 0x08, 0x0c}); err == nil {
		t.Fatal("no 0d accepted")
	}
}

func TestDataPostRouted(t *testing.T) {
	if d := AppendData(nil, ""); !bytes.Equal(d, []byte{0x02}) {
		t.Fatalf("02 is sent bare, as librtmfp does: %x", d)
	}
	d := AppendData(nil, "note")
	if d[0] != 0x02 || d[1] != 4 {
		t.Fatalf("%x", d)
	}
	if n, err := ParseData(d); err != nil || n != "note" {
		t.Fatal(err)
	}
	if n, err := ParseData([]byte{0x02}); err != nil || n != "" {
		t.Fatal(err)
	}
	// A post as librtmfp reads it: AMF0 string first, the stamp after.
	p, err := AppendPost(nil, "hello", seq(1, StampLen))
	if err != nil || !bytes.Equal(p[:8], unhex(t, "02 00 05 68 65 6c 6c 6f")) || len(p) != 8+StampLen {
		t.Fatalf("%x", p)
	}
	v, id, ok, err := ParsePost(p)
	if err != nil || !ok || v != "hello" || id != PostID(p) {
		t.Fatal(v, err)
	}
	// Without a stamp the ID is the SHA-256 of the serialized value.
	sum := sha256.Sum256(p[:8])
	if _, id, _, _ := ParsePost(p[:8]); id != hex.EncodeToString(sum[:]) {
		t.Fatal("unstamped ID")
	}
	if _, _, ok, err := ParsePost(unhex(t, "30 01 02 03 04 05 06 07 08")); ok || err != nil {
		t.Fatal("post key")
	}
	r := Routed{Mode: ModeNearest, Hops: 3, Dest: Addr(seq(1, 32)), Origin: Addr(seq(2, 32)), Body: []byte{0x02, 0x00, 0x01, 'x'}}
	back, err := ParseRouted(AppendRouted(nil, r))
	if err != nil || back.Mode != r.Mode || back.Hops != 3 || back.Dest != r.Dest || back.Origin != r.Origin || !bytes.Equal(back.Body, r.Body) {
		t.Fatal(err)
	}
	if v, err := back.Value(); err != nil || v != "x" {
		t.Fatal(v, err)
	}
}

func TestFlowKinds(t *testing.T) {
	if FlowKind([]byte{'G', 'R', 0x1c, 0x00}) != 0x1c || FlowKind([]byte("GC")) != 0 || !IsServerChannel([]byte("GC")) || FlowKind([]byte("TC\x04")) != 0 {
		t.Fatal()
	}
}

// The GR 1c flow's option list with the capability option, as librtmfp's
// flow-header reader walks it: the signature, then (where a return
// association would be) the option's length and an unknown part, then
// parts it skips by length until a zero length. It must end exactly at
// the marker, so that the first message starts where it does.
func TestCapabilityOptionKeepsLibrtmfpInPlace(t *testing.T) {
	for _, assoc := range []bool{false, true} {
		opts := wire.AppendOption(nil, wire.OptMetadata, MetaSession)
		if assoc {
			opts = wire.AppendOptionVLU(opts, wire.OptReturnFlow, 3)
		}
		capOpt := wire.AppendOption(nil, CapabilityOption, Capabilities)
		if !bytes.Equal(capOpt, []byte{0x03, 0xc0, 0x01, CapRouting}) {
			t.Fatalf("option %x", capOpt)
		}
		opts = append(append(opts, capOpt...), 0x00)
		b := append(opts, 0x01) // the group init's first byte
		i := 0
		i += 1 + int(b[i]) // signature (its length byte counts the type byte)
		if b[i] > 0 {
			i++
			if b[i] == 0x0a {
				i++
				_, n, _ := wire.ParseVLU(b[i:])
				i += n
			} else {
				i++ // "unknown fullduplex header part"
			}
			for l := int(b[i]); l > 0; l = int(b[i]) {
				i += 1 + l // "unknown message part", skipped
			}
			i++
		}
		if i != len(opts) || b[i] != 0x01 {
			t.Fatalf("assoc %v: librtmfp would read data from offset %d, not %d (%x)", assoc, i, len(opts), b)
		}
		// RFC 7016 readers skip it (optional type) and we read it back.
		var seen []wire.Option
		if _, err := wire.WalkOptionList(opts, func(o wire.Option) { seen = append(seen, o) }); err != nil {
			t.Fatal(err)
		}
		if last := seen[len(seen)-1]; last.Type != CapabilityOption || !bytes.Equal(last.Value, Capabilities) {
			t.Fatalf("%+v", seen)
		}
	}
}
