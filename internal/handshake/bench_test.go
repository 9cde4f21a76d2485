package handshake

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// benchResponder measures what a server does per handshake once the
// client's IIKeying arrives: cookie check, certificate and SKIC parsing,
// negotiation, one Diffie-Hellman, key derivation and the RIKeying packet.
// keygen adds the ephemeral key generation the engine normally does ahead
// of time in its key pool.
func benchResponder(b *testing.B, g *Group, keygen bool) {
	server, _ := NewServerIdentity(nil)
	cookies, _ := NewCookies(nil)
	addr := netip.MustParseAddrPort("203.0.113.1:5000")
	now := time.Now()
	// Clients with static keys in the group (as rtmfp-cpp clients for 14).
	const clients = 64
	var iks []wire.IIKeying
	for i := range clients {
		kp, _ := GenerateKey(g, nil)
		id, _ := IdentityFromKey(kp)
		p, err := (&Initiator{ID: id}).Start(server.Parsed)
		if err != nil {
			b.Fatal(err)
		}
		tag := []byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		iks = append(iks, wire.IIKeying{ISID: uint32(i + 1), Cookie: cookies.Make(addr, tag, now), Certificate: id.Certificate, SKIC: p.SKIC, Signature: Signature})
	}
	pool := make([]*KeyPair, 256)
	for i := range pool {
		pool[i], _ = GenerateKey(g, nil)
	}
	i := 0
	r := &Responder{ID: server, Ephemeral: func(*Group) (*KeyPair, error) {
		if keygen {
			return GenerateKey(g, nil)
		}
		i++
		return pool[i%len(pool)], nil
	}}
	sealer := wire.NewDefaultSealer()
	out := make([]byte, 0, 1500)
	j := 0
	for b.Loop() {
		ik := iks[j%clients]
		j++
		if err := cookies.Check(ik.Cookie, addr, now); err != nil {
			b.Fatal(err)
		}
		acc, err := r.Respond(ik)
		if err != nil {
			b.Fatal(err)
		}
		pkt := wire.AppendHeader(nil, wire.Header{Flags: 0x0b})
		pkt = wire.RIKeying{RSID: 9, SKRC: acc.SKRC, Signature: Signature}.Append(pkt)
		out = sealer.Seal(out[:0], ik.ISID, pkt)
		_, _ = acc.Keys.Ciphers()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func BenchmarkResponderHandshake(b *testing.B) {
	b.Run("group2", func(b *testing.B) { benchResponder(b, Group2, false) })
	b.Run("group2+keygen", func(b *testing.B) { benchResponder(b, Group2, true) })
	b.Run("group14", func(b *testing.B) { benchResponder(b, Group14, false) })
	b.Run("group14+keygen", func(b *testing.B) { benchResponder(b, Group14, true) })
}

func BenchmarkRHello(b *testing.B) {
	server, _ := NewServerIdentity(nil)
	cookies, _ := NewCookies(nil)
	addr := netip.MustParseAddrPort("203.0.113.1:5000")
	tag := make([]byte, 16)
	sealer := wire.NewDefaultSealer()
	now := time.Now()
	for b.Loop() {
		pkt := wire.AppendHeader(nil, wire.Header{Flags: 0x0b})
		pkt = wire.RHello{Tag: tag, Cookie: cookies.Make(addr, tag, now), Certificate: server.Certificate}.Append(pkt)
		_ = sealer.Seal(nil, 0, pkt)
	}
}
