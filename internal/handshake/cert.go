package handshake

import (
	"crypto/rand"
	"crypto/sha256"
	"io"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Certificate option types (RFC 7425 §4.3).
const (
	CertHostname        = 0x00
	CertAncillary       = 0x0a // accepts ancillary data: a server
	CertExtraRandomness = 0x0e
	CertEphemeralGroup  = 0x15
	CertStaticKey       = 0x1d
)

// MaxCertificateLen bounds what we accept; rtmfp-cpp's largest startup
// packet is 4256 bytes, which caps real certificates well below this.
const MaxCertificateLen = 4096

// Certificate is a parsed Flash-profile certificate.
type Certificate struct {
	Raw              []byte // as received (the IIKeying field or RHello tail)
	Canonical        []byte // the bytes before the first marker: what the fingerprint hashes
	Hostname         []byte
	HasHostname      bool
	AcceptsAncillary bool
	EphemeralGroups  []uint64
	StaticKeys       []StaticKey
}

// StaticKey is a static DH public key published in a certificate.
type StaticKey struct {
	Group  uint64
	Public []byte
}

// ParseCertificate decodes a certificate. It keeps references into raw.
// A valid certificate carries ephemeral group options or static keys, not
// both and not neither (rtmfp-cpp's rule).
func ParseCertificate(raw []byte) (*Certificate, error) {
	if len(raw) > MaxCertificateLen {
		return nil, ErrCertificate
	}
	opts, marker, err := wire.ParseOptionSequence(raw)
	if err != nil {
		return nil, ErrCertificate
	}
	c := &Certificate{Raw: raw, Canonical: raw[:marker]}
	for _, o := range opts {
		switch o.Type {
		case CertHostname:
			c.Hostname, c.HasHostname = o.Value, true
		case CertAncillary:
			c.AcceptsAncillary = true
		case CertEphemeralGroup:
			g, _, err := wire.ParseVLU(o.Value)
			if err != nil {
				return nil, ErrCertificate
			}
			if len(c.EphemeralGroups) < 16 {
				c.EphemeralGroups = append(c.EphemeralGroups, g)
			}
		case CertStaticKey:
			g, n, err := wire.ParseVLU(o.Value)
			if err != nil || n == len(o.Value) {
				return nil, ErrCertificate
			}
			if len(c.StaticKeys) < 16 {
				c.StaticKeys = append(c.StaticKeys, StaticKey{Group: g, Public: o.Value[n:]})
			}
		}
	}
	if (len(c.EphemeralGroups) == 0) == (len(c.StaticKeys) == 0) {
		return nil, ErrCertificate
	}
	return c, nil
}

// Fingerprint is SHA-256 of the canonical part: the peer ID.
func (c *Certificate) Fingerprint() [32]byte { return sha256.Sum256(c.Canonical) }

// StaticKeyFor returns the certificate's static key for a group.
func (c *Certificate) StaticKeyFor(group uint64) ([]byte, bool) {
	for _, k := range c.StaticKeys {
		if k.Group == group {
			return k.Public, true
		}
	}
	return nil, false
}

// Supports reports whether the certificate offers group g (ephemeral or
// static).
func (c *Certificate) Supports(g uint64) bool {
	for _, x := range c.EphemeralGroups {
		if x == g {
			return true
		}
	}
	_, ok := c.StaticKeyFor(g)
	return ok
}

// NewServerCertificate builds the 77-byte Cirrus-layout certificate that
// Adobe's servers, Cumulus and Mona send: accepts ancillary data, 64 bytes of
// extra randomness, ephemeral groups 2, 5 and 14 (all three implemented
// here, so nothing is advertised that we cannot compute).
func NewServerCertificate(rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var r [64]byte
	if _, err := io.ReadFull(rnd, r[:]); err != nil {
		return nil, err
	}
	b := wire.AppendOption(nil, CertAncillary, nil)
	b = wire.AppendOption(b, CertExtraRandomness, r[:])
	for _, g := range []uint64{2, 5, 14} {
		b = wire.AppendOptionVLU(b, CertEphemeralGroup, g)
	}
	return b, nil
}

// NewStaticCertificate builds a Flash client/peer certificate: one static
// group-2 key (81 02 1d 02 <key>), 132 bytes with a 128-byte key.
func NewStaticCertificate(kp *KeyPair) []byte {
	v := wire.AppendVLU(nil, kp.Group.ID)
	v = append(v, kp.Public...)
	return wire.AppendOption(nil, CertStaticKey, v)
}

// Identity is an endpoint's long-lived certificate and, for a static
// endpoint, its DH key pair.
type Identity struct {
	Certificate []byte
	Parsed      *Certificate
	Static      *KeyPair // nil for an ephemeral (server) identity
	PeerID      [32]byte
}

// NewClientIdentity generates a Flash-like static identity with a fresh
// group-2 key pair.
func NewClientIdentity(rnd io.Reader) (*Identity, error) {
	kp, err := GenerateKey(Group2, rnd)
	if err != nil {
		return nil, err
	}
	return IdentityFromKey(kp)
}

// IdentityFromKey wraps a static key pair in an identity.
func IdentityFromKey(kp *KeyPair) (*Identity, error) {
	cert := NewStaticCertificate(kp)
	pc, err := ParseCertificate(cert)
	if err != nil {
		return nil, err
	}
	return &Identity{Certificate: cert, Parsed: pc, Static: kp, PeerID: pc.Fingerprint()}, nil
}

// NewServerIdentity generates an ephemeral-keyed server identity.
func NewServerIdentity(rnd io.Reader) (*Identity, error) {
	cert, err := NewServerCertificate(rnd)
	if err != nil {
		return nil, err
	}
	pc, err := ParseCertificate(cert)
	if err != nil {
		return nil, err
	}
	return &Identity{Certificate: cert, Parsed: pc, PeerID: pc.Fingerprint()}, nil
}
