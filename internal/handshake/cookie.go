package handshake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// CookieLen is the cookie size every Flash-family implementation uses and
// several require.
const CookieLen = 64

// CookieLifetime is how long a cookie stays valid (RFC 7016, rtmfp-cpp,
// Mona, librtmfp).
const CookieLifetime = 95 * time.Second

// cookieEpoch quantises issue times so that an initiator retransmitting
// the same IHello (same tag, same address) within an epoch gets the very
// same cookie back, without the responder keeping any state.
const cookieEpoch = 16 * time.Second

// Cookies makes and checks stateless cookies bound to the initiator's
// address (reference §2.5.2): issue time, nonce, a MAC that proves the
// cookie is ours and a second MAC that binds it to the address. The nonce
// is derived from the IHello tag, address and epoch, so retransmissions are
// answered idempotently. Nothing is stored per cookie, so an IHello flood
// costs no memory. Not safe for concurrent use (it reuses its HMAC state):
// see Clone.
type Cookies struct {
	secret [32]byte
	mac    hash.Hash
	rnd    io.Reader
	sum    [sha256.Size]byte
	buf    []byte
}

// NewCookies returns a cookie jar with a fresh random secret.
func NewCookies(rnd io.Reader) (*Cookies, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	c := &Cookies{rnd: rnd}
	if _, err := io.ReadFull(rnd, c.secret[:]); err != nil {
		return nil, err
	}
	c.mac = hmac.New(sha256.New, c.secret[:])
	return c, nil
}

// Clone returns a cookie jar with the same secret and state of its own:
// one per goroutine, all making and accepting the same cookies.
func (c *Cookies) Clone() *Cookies {
	d := &Cookies{secret: c.secret, rnd: c.rnd}
	d.mac = hmac.New(sha256.New, d.secret[:])
	return d
}

var (
	labelA = []byte{'A'}
	labelB = []byte{'B'}
	labelN = []byte{'N'}
)

func (c *Cookies) macs(cookie []byte, addr netip.AddrPort) (a, b [16]byte) {
	c.mac.Reset()
	c.mac.Write(labelA)
	c.mac.Write(cookie[:32])
	a = [16]byte(c.mac.Sum(c.sum[:0]))
	c.mac.Reset()
	c.mac.Write(labelB)
	c.mac.Write(cookie[:32])
	c.buf = wire.AppendAddress(c.buf[:0], addr, 0)
	c.mac.Write(c.buf)
	b = [16]byte(c.mac.Sum(c.sum[:0]))
	return a, b
}

// Make returns the cookie for an IHello with tag from addr at now.
func (c *Cookies) Make(addr netip.AddrPort, tag []byte, now time.Time) []byte {
	cookie := make([]byte, CookieLen)
	c.Put(cookie, addr, tag, now)
	return cookie
}

// Put writes the cookie for an IHello with tag from addr at now into
// cookie (CookieLen bytes), allocating nothing.
func (c *Cookies) Put(cookie []byte, addr netip.AddrPort, tag []byte, now time.Time) {
	cookie = cookie[:CookieLen]
	issued := now.Truncate(cookieEpoch)
	binary.BigEndian.PutUint32(cookie, uint32(issued.Unix()))
	c.buf = wire.AppendAddress(c.buf[:0], addr, 0)
	c.mac.Reset()
	c.mac.Write(labelN)
	c.mac.Write(cookie[:4])
	c.mac.Write(c.buf)
	c.mac.Write(tag)
	copy(cookie[4:32], c.mac.Sum(c.sum[:0]))
	a, b := c.macs(cookie, addr)
	copy(cookie[32:48], a[:])
	copy(cookie[48:64], b[:])
}

// Check verifies a cookie echoed from addr. It returns nil if the cookie is
// ours, fresh and bound to addr; ErrCookieAddress if it is ours and fresh
// but was issued to another address (NAT rebinding: answer with a Cookie
// Change); ErrCookie otherwise (drop silently).
func (c *Cookies) Check(cookie []byte, addr netip.AddrPort, now time.Time) error {
	if len(cookie) != CookieLen {
		return ErrCookie
	}
	a, b := c.macs(cookie, addr)
	if !hmac.Equal(a[:], cookie[32:48]) {
		return ErrCookie
	}
	issued := time.Unix(int64(binary.BigEndian.Uint32(cookie)), 0)
	if age := now.Sub(issued); age > CookieLifetime || age < -2*time.Second {
		return ErrCookie
	}
	if !hmac.Equal(b[:], cookie[48:64]) {
		return ErrCookieAddress
	}
	return nil
}
