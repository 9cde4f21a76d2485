package group

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math/big"

	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// RawIDPrefix is the option header that turns a peer ID into the 34-byte
// "raw peer ID" groups hash and carry: option length 0x21, type 0x0f.
var RawIDPrefix = [2]byte{0x21, 0x0f}

// Addr is a group address: a position on the group's ring.
type Addr [32]byte

// AddressOf is a peer's group address: SHA-256(21 0f ‖ peer ID), what
// NetGroup.convertPeerIDToGroupAddress() returns.
func AddressOf(peerID [32]byte) Addr { return Addr(flash.GroupAddress(peerID)) }

// String is the address as 64 lower-case hex digits.
func (a Addr) String() string { return hex.EncodeToString(a[:]) }

// Compare orders addresses on the ring (unsigned big-endian).
func (a Addr) Compare(b Addr) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

var ringSize = new(big.Int).Lsh(big.NewInt(1), 256)

// Distance is the distance between two ring positions going the shorter
// way round: min(|a-b|, 2^256-|a-b|).
func Distance(a, b Addr) *big.Int {
	x := new(big.Int).SetBytes(a[:])
	y := new(big.Int).SetBytes(b[:])
	d := x.Sub(x, y)
	d.Abs(d)
	if alt := new(big.Int).Sub(ringSize, d); alt.Cmp(d) < 0 {
		return alt
	}
	return d
}

// Key is the 32-byte proof a member puts in its group init:
// HMAC-SHA256(key = groupspec text, data = the receiver's session nonce).
// The sender uses the far nonce of the session, the receiver checks
// against its near nonce. Only members that know the groupspec text can
// compute it; the server, which only sees the group ID, cannot.
func Key(text string, nonce []byte) [32]byte {
	m := hmac.New(sha256.New, []byte(text))
	m.Write(nonce)
	return [32]byte(m.Sum(nil))
}
