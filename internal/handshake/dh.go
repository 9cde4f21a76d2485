// Package handshake holds RTMFP session startup for the Flash crypto profile
// (RFC 7425 §4): Diffie-Hellman groups, certificates and peer IDs, endpoint
// discriminators, stateless cookies, keying components, session key and
// nonce derivation. It is pure: callers pass in time and randomness sources.
package handshake

import (
	"crypto/rand"
	"io"
	"math/big"
	"math/bits"
)

// Group is a MODP Diffie-Hellman group with generator 2.
type Group struct {
	ID   uint64
	P    *big.Int
	pm2  *big.Int // p - 2^24, the validation upper bound
	Bits int      // private exponent size (short exponents, RFC 7425 §4.2)
	Len  int      // modulus length in bytes
}

func mustHex(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("bad prime")
	}
	return v
}

const (
	prime1024 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF"
	prime1536 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"
	prime2048 = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
		"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
		"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
		"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
		"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
		"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
		"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
		"3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
)

func newGroup(id uint64, hexP string, bits int) *Group {
	p := mustHex(hexP)
	return &Group{ID: id, P: p, pm2: new(big.Int).Sub(p, big.NewInt(1<<24)), Bits: bits, Len: (p.BitLen() + 7) / 8}
}

// The groups we implement. Private exponents follow rtmfp-cpp's sizes for
// groups 2 and 14 (twice the group's security strength); group 5 sits
// between them.
var (
	Group2  = newGroup(2, prime1024, 224)
	Group5  = newGroup(5, prime1536, 256)
	Group14 = newGroup(14, prime2048, 320)
)

// Groups lists the implemented groups in our preference order as an
// initiator facing a responder that offers several (Flash only ever does 2,
// so a Flash-like client prefers 2).
var Groups = []*Group{Group2, Group14, Group5}

// GroupByID returns an implemented group or nil.
func GroupByID(id uint64) *Group {
	switch id {
	case 2:
		return Group2
	case 5:
		return Group5
	case 14:
		return Group14
	}
	return nil
}

var two = big.NewInt(2)

// KeyPair is a DH private exponent and its public value.
type KeyPair struct {
	Group   *Group
	private *big.Int
	Public  []byte // minimal big-endian encoding
}

// GenerateKey draws a short private exponent with its top bit set, as
// RFC 7425 allows and rtmfp-cpp does, and computes 2^x mod p. It retries
// until the public value passes the same validation we apply to far keys.
func GenerateKey(g *Group, rnd io.Reader) (*KeyPair, error) {
	return GenerateKeyBits(g, g.Bits, rnd)
}

// GenerateKeyBits is GenerateKey with a chosen private exponent size. A
// load generator uses short exponents to keep its own cost below the
// server's; endpoints use GenerateKey.
func GenerateKeyBits(g *Group, bits int, rnd io.Reader) (*KeyPair, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	buf := make([]byte, (bits+7)/8)
	for {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, err
		}
		x := new(big.Int).SetBytes(buf)
		x.SetBit(x, bits-1, 1)
		pub := new(big.Int).Exp(two, x, g.P)
		if g.validPublic(pub) {
			return &KeyPair{Group: g, private: x, Public: pub.Bytes()}, nil
		}
	}
}

// KeyPairFromPrivate builds a key pair from a known private exponent (test
// vectors use the §9.5 server key).
func KeyPairFromPrivate(g *Group, private []byte) *KeyPair {
	x := new(big.Int).SetBytes(private)
	return &KeyPair{Group: g, private: x, Public: new(big.Int).Exp(two, x, g.P).Bytes()}
}

// validPublic applies RFC 7425's checks (as rtmfp-cpp does): 2^24 <= y <=
// p - 2^24, and at least 16 one bits and 16 zero bits.
func (g *Group) validPublic(y *big.Int) bool {
	if y.BitLen() <= 24 || y.Cmp(g.pm2) > 0 {
		return false
	}
	ones := 0
	for _, w := range y.Bits() {
		ones += bits.OnesCount(uint(w))
	}
	zeros := y.BitLen() - ones
	return ones >= 16 && zeros >= 16
}

// SharedSecret validates the far public key and returns the DH secret in
// minimal big-endian form (what every Flash-family implementation uses as
// the HMAC key).
func (k *KeyPair) SharedSecret(farPublic []byte) ([]byte, error) {
	if len(farPublic) > k.Group.Len {
		return nil, ErrBadPublicKey
	}
	y := new(big.Int).SetBytes(farPublic)
	if !k.Group.validPublic(y) {
		return nil, ErrBadPublicKey
	}
	return new(big.Int).Exp(y, k.private, k.Group.P).Bytes(), nil
}
