package handshake

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testvec"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

func TestPrimesAreSafe(t *testing.T) {
	for _, g := range []*Group{Group2, Group5, Group14} {
		q := new(big.Int).Rsh(g.P, 1)
		if !g.P.ProbablyPrime(10) || !q.ProbablyPrime(10) {
			t.Errorf("group %d: p or (p-1)/2 not prime", g.ID)
		}
		if g.P.BitLen() != 8*g.Len {
			t.Errorf("group %d: %d bits", g.ID, g.P.BitLen())
		}
	}
}

// fp117Responder answers as the §9.5 test server did, with its fixed DH key.
func fp117Responder(t *testing.T) *Responder {
	id, err := NewServerIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	kp := KeyPairFromPrivate(Group2, testvec.Get(t, "fp117_server_dh_private"))
	if !bytes.Equal(kp.Public, testvec.Get(t, "fp117_server_dh_public")) {
		t.Fatalf("2^x mod p = %x", kp.Public)
	}
	return &Responder{ID: id, Ephemeral: func(g *Group) (*KeyPair, error) { return kp, nil }}
}

// TestFlashPlayer117Session replays the complete Flash Player 11.7 session
// of reference §9.5 against our responder: the same SKRC, shared secret,
// keys, nonces and peer ID, and every captured packet decrypts and parses.
func TestFlashPlayer117Session(t *testing.T) {
	// Packet 3 (IIKeying) as captured.
	pt, err := wire.NewDefaultOpener().Open(testvec.Get(t, "fp117_p3_iikeying_wire"))
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := wire.ParseHeader(pt)
	ch, _, _ := wire.NextChunk(pt[n:])
	ik, err := wire.ParseIIKeying(ch.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ik.Certificate, testvec.Get(t, "fp117_client_cert")) || !bytes.Equal(ik.SKIC, testvec.Get(t, "fp117_skic")) {
		t.Fatal("IIKeying fields differ from the vectors")
	}
	acc, err := fp117Responder(t).Respond(ik)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(acc.SKRC, testvec.Get(t, "fp117_skrc")) {
		t.Fatalf("SKRC:\n%x\nwant\n%x", acc.SKRC, testvec.Get(t, "fp117_skrc"))
	}
	fp := acc.Certificate.Fingerprint()
	if got := hex.EncodeToString(fp[:]); got != "9210df7cb656cad82a607efd810e6c3f922a062ec7dae6df0f39e8a7248dcbf8" {
		t.Errorf("peer ID = %s", got)
	}
	kp := KeyPairFromPrivate(Group2, testvec.Get(t, "fp117_server_dh_private"))
	pub, _ := acc.Certificate.StaticKeyFor(2)
	secret, err := kp.SharedSecret(pub)
	if err != nil || !bytes.Equal(secret, testvec.Get(t, "fp117_dh_secret")) {
		t.Fatalf("shared secret %x %v", secret, err)
	}
	k := acc.Keys
	checks := map[string][]byte{
		"ca3e6206c4fe662bbd950e8d03574e35":                                 k.DecryptKey, // K_i2r
		"bc4b145aafb0f8287b3cf87bd036acf0":                                 k.EncryptKey, // K_r2i
		"e613485a97a4015eef70bd584159bd5a73c64ba2b5e198ac2ec5d8c83465ad9f": k.FarNonce,
		"f478fd0f9ce5045a55f0e1dd007e28ee6e979b2f57e81cc5d182bef96b50da96": k.NearNonce,
	}
	for want, got := range checks {
		if hex.EncodeToString(got) != want {
			t.Errorf("got %x, want %s", got, want)
		}
	}
	if k.Send != (wire.Features{}) || k.Recv != (wire.Features{}) {
		t.Errorf("Flash negotiation should leave HMAC and sequence numbers off: %+v %+v", k.Send, k.Recv)
	}
	sc, err := ParseCertificate(testvec.Get(t, "fp117_server_cert"))
	if err != nil {
		t.Fatal(err)
	}
	sfp := sc.Fingerprint()
	if hex.EncodeToString(sfp[:]) != "86241000ea4d58784f613f40f28bc022b475d8682d2091c5ed8a1af5bf0aa0c4" {
		t.Errorf("server fingerprint %x", sfp)
	}
	// The client's EPD for its peer ID selects the client certificate and
	// not the server's.
	epd, _ := ParseEPD(FingerprintEPD(fp))
	if !epd.Selects(acc.Certificate) || epd.Selects(sc) {
		t.Error("fingerprint EPD selection wrong")
	}

	// Decrypt every packet of the session with the derived keys.
	i2r, _ := wire.NewOpener(k.DecryptKey, wire.Features{}, nil)
	r2i, _ := wire.NewOpener(k.EncryptKey, wire.Features{}, nil)
	def := wire.NewDefaultOpener()
	packets := []struct {
		n   string
		sid uint32
		o   *wire.Opener
	}{
		{"p1_ihello", 0, def}, {"p2_rhello", 0, def}, {"p3_iikeying", 0, def}, {"p4_rikeying", 0x02000000, def},
		{"p5", 1, i2r}, {"p6", 0x02000000, r2i}, {"p7", 1, i2r}, {"p8", 1, i2r},
		{"p9", 0x02000000, r2i}, {"p10", 1, i2r}, {"p11", 1, i2r},
	}
	for _, p := range packets {
		w := testvec.Get(t, "fp117_"+p.n+"_wire")
		if sid, _ := wire.SessionID(w); sid != p.sid {
			t.Errorf("%s: SID %08x", p.n, sid)
		}
		got, err := p.o.Open(w)
		if err != nil {
			t.Errorf("%s: %v", p.n, err)
			continue
		}
		if !bytes.Equal(got, testvec.Get(t, "fp117_"+p.n+"_plain")[2:]) {
			t.Errorf("%s: plaintext differs", p.n)
		}
		h, hn, err := wire.ParseHeader(got)
		if err != nil {
			t.Errorf("%s: header %v", p.n, err)
		}
		chunks := 0
		for b := got[hn:]; ; chunks++ {
			c, rest, ok := wire.NextChunk(b)
			if !ok {
				break
			}
			switch c.Type {
			case wire.ChunkUserData:
				if _, err := wire.ParseUserData(c.Payload, false); err != nil {
					t.Errorf("%s: user data %v", p.n, err)
				}
			case wire.ChunkAckRanges:
				if _, err := wire.ParseAckRanges(c.Payload); err != nil {
					t.Errorf("%s: ack %v", p.n, err)
				}
			}
			b = rest
		}
		if chunks == 0 {
			t.Errorf("%s (flags %02x): no chunks", p.n, h.Flags)
		}
	}
}

// TestInitiatorResponder runs both roles against each other for every
// identity kind, group and negotiation policy.
func TestInitiatorResponder(t *testing.T) {
	client, _ := NewClientIdentity(nil)
	peer, _ := NewClientIdentity(nil)
	server, _ := NewServerIdentity(nil)
	eph14, _ := NewServerIdentity(nil)
	policies := []struct{ in, re Policy }{
		{},
		{in: Policy{HMACSendAlways: true, HMACRecvRequired: true, SeqSendAlways: true, SeqRecvRequired: true}},
		{re: Policy{HMACRecvRequired: true, SeqRecvRequired: true}},
	}
	for _, pol := range policies {
		for _, pair := range []struct {
			name string
			in   *Identity
			re   *Identity
		}{{"client-server", client, server}, {"peer-peer", client, peer}, {"ephemeral-server", eph14, server}} {
			in := &Initiator{ID: pair.in, Policy: pol.in}
			pend, err := in.Start(pair.re.Parsed)
			if err != nil {
				t.Fatal(pair.name, err)
			}
			re := &Responder{ID: pair.re, Policy: pol.re}
			acc, err := re.Respond(wire.IIKeying{ISID: 1, Cookie: make([]byte, 64), Certificate: pair.in.Certificate, SKIC: pend.SKIC})
			if err != nil {
				t.Fatal(pair.name, err)
			}
			if pair.re.Static == nil && !bytes.HasPrefix(acc.SKRC, []byte{3, 0x1a, 0, 0, 2, 0x1e, 0}) && pol == policies[0] {
				t.Errorf("%s: SKRC not Flash-shaped: %x", pair.name, acc.SKRC[:8])
			}
			if pair.re.Static != nil && pol == policies[0] && len(acc.SKRC) != 73 {
				t.Errorf("%s: static SKRC is %d bytes, librtmfp wants 73", pair.name, len(acc.SKRC))
			}
			keys, err := pend.Finish(acc.SKRC)
			if err != nil {
				t.Fatal(pair.name, err)
			}
			if !bytes.Equal(keys.EncryptKey, acc.Keys.DecryptKey) || !bytes.Equal(keys.DecryptKey, acc.Keys.EncryptKey) ||
				!bytes.Equal(keys.NearNonce, acc.Keys.FarNonce) || keys.Send != acc.Keys.Recv || keys.Recv != acc.Keys.Send {
				t.Fatalf("%s %+v: keys disagree", pair.name, pol)
			}
			if (pol.in.HMACSendAlways || pol.re.HMACRecvRequired) != (keys.Send.HMACLen > 0) {
				t.Errorf("%s %+v: HMAC send %+v", pair.name, pol, keys.Send)
			}
			// A packet sealed by one side opens on the other.
			s, _ := keys.Ciphers()
			_, o := acc.Keys.Ciphers()
			pkt := wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator})
			pkt = wire.AppendChunk(pkt, wire.ChunkPing, nil)
			if _, err := o.Open(s.Seal(nil, 9, pkt)); err != nil {
				t.Errorf("%s %+v: %v", pair.name, pol, err)
			}
		}
	}
	// A responder that requires HMAC facing an initiator that offers nothing fails.
	skic := appendNegotiation(wire.AppendOptionVLU(nil, KeyGroupSelect, 2), 0, 0, 0)
	re := &Responder{ID: server, Policy: Policy{HMACRecvRequired: true}}
	if _, err := re.Respond(wire.IIKeying{ISID: 1, Certificate: client.Certificate, SKIC: skic}); !errors.Is(err, ErrNegotiation) {
		t.Errorf("required HMAC not refused: %v", err)
	}
}

func TestServerCertificateLayout(t *testing.T) {
	c, err := NewServerCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 77 || !bytes.HasPrefix(c, []byte{1, 0x0a, 0x41, 0x0e}) || !bytes.HasSuffix(c, testvec.Hex(t, "021502 021505 02150e")) {
		t.Fatalf("certificate %x", c)
	}
	pc, _ := ParseCertificate(c)
	for _, g := range pc.EphemeralGroups {
		if GroupByID(g) == nil {
			t.Errorf("advertises group %d that we do not implement", g)
		}
	}
}

func TestPublicKeyValidation(t *testing.T) {
	kp, _ := GenerateKey(Group2, nil)
	pm1 := new(big.Int).Sub(Group2.P, big.NewInt(1)).Bytes()
	for name, bad := range map[string][]byte{
		"zero": {0}, "one": {1}, "small": {0xff, 0xff, 0xff}, "p-1": pm1,
		"too-long":  make([]byte, 200),
		"few-ones":  append([]byte{0x80}, make([]byte, 100)...),
		"few-zeros": bytes.Repeat([]byte{0xff}, 100),
	} {
		if _, err := kp.SharedSecret(bad); !errors.Is(err, ErrBadPublicKey) {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestEPD(t *testing.T) {
	server, _ := NewServerIdentity(nil)
	client, _ := NewClientIdentity(nil)
	for _, uri := range []string{"rtmfp://host:1935/app", "live", "rtmfp:"} {
		e, err := ParseEPD(AncillaryEPD(uri))
		if err != nil || string(e.Ancillary) != uri || !e.Selects(server.Parsed) || e.Selects(client.Parsed) {
			t.Errorf("EPD %q: %+v %v", uri, e, err)
		}
	}
	if e, _ := ParseEPD(wire.AppendOption(nil, 0x42, []byte("opaque"))); e.Selects(server.Parsed) {
		t.Error("EPD with no known option selected something")
	}
	short := wire.AppendOption(nil, EPDFingerprint, []byte{1, 2, 3})
	if e, _ := ParseEPD(short); e.Selects(client.Parsed) {
		t.Error("short fingerprint selected")
	}
	if _, err := ParseEPD([]byte{0x05, 0x0a}); !errors.Is(err, ErrEPD) {
		t.Error("truncated EPD accepted")
	}
}

func TestCookies(t *testing.T) {
	c, _ := NewCookies(nil)
	now := time.Unix(1_800_000_000, 0)
	a := netip.MustParseAddrPort("203.0.113.5:50000")
	b := netip.MustParseAddrPort("203.0.113.5:50001")
	tag := []byte("0123456789abcdef")
	k := c.Make(a, tag, now)
	if len(k) != 64 {
		t.Fatal(len(k))
	}
	if again := c.Make(a, tag, now.Add(time.Second)); !bytes.Equal(again, k) {
		t.Error("a retransmitted IHello got a different cookie")
	}
	if other := c.Make(a, []byte("another tag....."), now); bytes.Equal(other, k) {
		t.Error("two IHellos got the same cookie")
	}
	if err := c.Check(k, a, now.Add(90*time.Second)); err != nil {
		t.Errorf("fresh cookie: %v", err)
	}
	if err := c.Check(k, b, now); !errors.Is(err, ErrCookieAddress) {
		t.Errorf("other address: %v", err)
	}
	if err := c.Check(k, a, now.Add(96*time.Second)); !errors.Is(err, ErrCookie) {
		t.Errorf("expired: %v", err)
	}
	k[40] ^= 1
	if err := c.Check(k, a, now); !errors.Is(err, ErrCookie) {
		t.Errorf("forged: %v", err)
	}
	other, _ := NewCookies(nil)
	if err := other.Check(c.Make(a, tag, now), a, now); !errors.Is(err, ErrCookie) {
		t.Errorf("another server's cookie: %v", err)
	}
}

func TestGlare(t *testing.T) {
	a, b := []byte{1, 2, 3}, []byte{1, 2, 4}
	if WinsGlare(a, b) == WinsGlare(b, a) {
		t.Error("glare must have exactly one winner")
	}
	if !WinsGlare(a, b) {
		t.Error("lower certificate should win (far is not less than near)")
	}
}

// Every group we advertise is computed: a static initiator whose key is in
// group 5 or 14 keys with our server in that group.
func TestEveryAdvertisedGroupWorks(t *testing.T) {
	server, _ := NewServerIdentity(nil)
	for _, g := range []*Group{Group2, Group5, Group14} {
		kp, err := GenerateKey(g, nil)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := IdentityFromKey(kp)
		p, err := (&Initiator{ID: id}).Start(server.Parsed)
		if err != nil {
			t.Fatalf("group %d: %v", g.ID, err)
		}
		if c, _ := ParseComponent(p.SKIC); c.Group != g.ID {
			t.Fatalf("group %d: SKIC selects %d", g.ID, c.Group)
		}
		acc, err := (&Responder{ID: server}).Respond(wire.IIKeying{ISID: 1, Certificate: id.Certificate, SKIC: p.SKIC})
		if err != nil {
			t.Fatalf("group %d: %v", g.ID, err)
		}
		if sc, _ := ParseComponent(acc.SKRC); sc.Group != g.ID || len(sc.Public) > g.Len {
			t.Fatalf("group %d: SKRC key in group %d", g.ID, sc.Group)
		}
		k, err := p.Finish(acc.SKRC)
		if err != nil || !bytes.Equal(k.EncryptKey, acc.Keys.DecryptKey) {
			t.Fatalf("group %d: keys disagree (%v)", g.ID, err)
		}
	}
}

// A captured static certificate replayed with a fresh ephemeral key must
// not get a session under the victim's peer ID.
func TestStaticCertificateNeedsItsKey(t *testing.T) {
	server, _ := NewServerIdentity(nil)
	victim, _ := NewClientIdentity(nil)
	eph, _ := GenerateKey(Group2, nil)
	skic := wire.AppendOption(nil, KeyEphemeralPublic, append([]byte{2}, eph.Public...))
	skic = appendNegotiation(skic, 0, 0, 0)
	if _, err := (&Responder{ID: server}).Respond(wire.IIKeying{ISID: 1, Certificate: victim.Certificate, SKIC: skic}); !errors.Is(err, ErrKeying) {
		t.Fatalf("replayed certificate accepted: %v", err)
	}
}
