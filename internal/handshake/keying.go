package handshake

import (
	"crypto/hmac"
	"crypto/sha256"
	"io"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Keying component option types (SKIC/SKRC). Note that 0x1d means "group
// select" here but "static key" in certificates.
const (
	KeyEphemeralPublic = 0x0d
	KeyExtraRandomness = 0x0e
	KeyGroupSelect     = 0x1d
	KeyHMAC            = 0x1a
	KeySeq             = 0x1e
)

// Negotiation flags for HMAC and session sequence numbers.
const (
	NegSend          byte = 0x04 // will always send
	NegSendOnRequest byte = 0x02 // will send on request
	NegRequire       byte = 0x01 // requests (requires) the far end to send
)

// HMAC length bounds (RFC 7425) and our default when we must send one.
const (
	MinHMACLen     = 4
	MaxHMACLen     = 32
	DefaultHMACLen = 16
	// FlashHMACLen is what Flash offers (SOR, 10 bytes); a Flash-like
	// initiator offers the same.
	FlashHMACLen = 10
)

// Policy is what this endpoint wants for the optional packet features.
// The zero value is Flash's behaviour: offer both on request, never
// require, never insist on sending.
type Policy struct {
	HMACSendAlways   bool
	HMACRecvRequired bool
	SeqSendAlways    bool
	SeqRecvRequired  bool
	HMACLen          int // our send length; 0 means FlashHMACLen as initiator, DefaultHMACLen as responder
}

// Requiring is the policy that insists on packet HMAC and/or session
// sequence numbers in both directions (rtmfp-cpp's default); with both
// false it is Flash's (offer each only when the far end asks).
func Requiring(hmac, seq bool) Policy {
	return Policy{HMACSendAlways: hmac, HMACRecvRequired: hmac, SeqSendAlways: seq, SeqRecvRequired: seq}
}

// Component is a parsed keying component (SKIC or SKRC).
type Component struct {
	Raw          []byte
	Group        uint64 // from 0x0d or 0x1d
	Public       []byte // ephemeral public key (0x0d), nil for static
	HasGroup     bool
	Randomness   []byte
	HMACFlags    byte
	HMACLen      uint64
	SeqFlags     byte
	HasNegotiate bool
}

// MaxComponentLen bounds accepted keying components.
const MaxComponentLen = 2048

// ParseComponent decodes a keying component.
func ParseComponent(raw []byte) (Component, error) {
	if len(raw) > MaxComponentLen {
		return Component{}, ErrKeying
	}
	opts, _, err := wire.ParseOptionSequence(raw)
	if err != nil {
		return Component{}, ErrKeying
	}
	c := Component{Raw: raw}
	for _, o := range opts {
		switch o.Type {
		case KeyEphemeralPublic, KeyGroupSelect:
			if c.HasGroup {
				continue
			}
			g, n, err := wire.ParseVLU(o.Value)
			if err != nil {
				return Component{}, ErrKeying
			}
			c.Group, c.HasGroup = g, true
			if o.Type == KeyEphemeralPublic {
				if n == len(o.Value) {
					return Component{}, ErrKeying
				}
				c.Public = o.Value[n:]
			}
		case KeyExtraRandomness:
			c.Randomness = o.Value
		case KeyHMAC:
			if len(o.Value) > 0 {
				c.HMACFlags = o.Value[0]
				if l, _, err := wire.ParseVLU(o.Value[1:]); err == nil {
					c.HMACLen = l
				}
				c.HasNegotiate = true
			}
		case KeySeq:
			if len(o.Value) > 0 {
				c.SeqFlags = o.Value[0]
				c.HasNegotiate = true
			}
		}
	}
	return c, nil
}

// outcome is one side's view of the negotiated features.
type outcome struct {
	send, recv wire.Features
}

// negotiateOne applies the RFC 7425 rule for one feature from our side:
// we send iff we said "always" or the far end requires it (we always offer
// on request); we expect to receive iff the far end said "always" or we
// require it, which fails if the far end offers neither.
func negotiateOne(farFlags byte, sendAlways, recvRequired bool) (send, recv bool, err error) {
	if recvRequired && farFlags&(NegSend|NegSendOnRequest) == 0 {
		return false, false, ErrNegotiation
	}
	return sendAlways || farFlags&NegRequire != 0, recvRequired || farFlags&NegSend != 0, nil
}

func (p Policy) negotiate(far Component, ourHMACLen int) (outcome, error) {
	var o outcome
	hs, hr, err := negotiateOne(far.HMACFlags, p.HMACSendAlways, p.HMACRecvRequired)
	if err != nil {
		return o, err
	}
	ss, sr, err := negotiateOne(far.SeqFlags, p.SeqSendAlways, p.SeqRecvRequired)
	if err != nil {
		return o, err
	}
	if hs {
		o.send.HMACLen = ourHMACLen
	}
	if hr {
		if far.HMACLen < MinHMACLen || far.HMACLen > MaxHMACLen {
			return o, ErrHMACLength
		}
		o.recv.HMACLen = int(far.HMACLen)
	}
	o.send.Seq, o.recv.Seq = ss, sr
	return o, nil
}

func flags(always, onRequest, require bool) byte {
	var f byte
	if always {
		f |= NegSend
	}
	if onRequest {
		f |= NegSendOnRequest
	}
	if require {
		f |= NegRequire
	}
	return f
}

func appendNegotiation(b []byte, hmacFlags byte, hmacLen int, seqFlags byte) []byte {
	v := append([]byte{hmacFlags}, wire.AppendVLU(nil, uint64(hmacLen))...)
	b = wire.AppendOption(b, KeyHMAC, v)
	return wire.AppendOption(b, KeySeq, []byte{seqFlags})
}

// Keys is the result of a completed handshake for one session.
type Keys struct {
	EncryptKey, DecryptKey []byte // 16-byte AES keys
	SendHMACKey            []byte // set iff Send.HMACLen > 0
	RecvHMACKey            []byte
	Send, Recv             wire.Features
	NearNonce, FarNonce    []byte // 32 bytes each (NetConnection.nearNonce/farNonce)
}

func hmacSHA256(key []byte, msg ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, b := range msg {
		m.Write(b)
	}
	return m.Sum(nil)
}

// DeriveKeys computes the session keys and nonces from the DH secret and
// the near and far keying components (RFC 7425 §4.6.3; reference §2.8.1):
//
//	encrypt = HMAC(S, HMAC(SKFC, SKNC))[0:16]
//	decrypt = HMAC(S, HMAC(SKNC, SKFC))[0:16]
//	nearNonce = HMAC(S, SKNC), farNonce = HMAC(S, SKFC)
//
// Packet HMAC keys, when negotiated, are HMAC(S, full 32-byte encrypt or
// decrypt key material), as rtmfp-cpp does.
func DeriveKeys(secret, nearComponent, farComponent []byte, o outcome) Keys {
	enc := hmacSHA256(secret, hmacSHA256(farComponent, nearComponent))
	dec := hmacSHA256(secret, hmacSHA256(nearComponent, farComponent))
	k := Keys{
		EncryptKey: enc[:16],
		DecryptKey: dec[:16],
		Send:       o.send,
		Recv:       o.recv,
		NearNonce:  hmacSHA256(secret, nearComponent),
		FarNonce:   hmacSHA256(secret, farComponent),
	}
	if o.send.HMACLen > 0 {
		k.SendHMACKey = hmacSHA256(secret, enc)
	}
	if o.recv.HMACLen > 0 {
		k.RecvHMACKey = hmacSHA256(secret, dec)
	}
	return k
}

// Ciphers builds the packet sealer and opener for the keys.
func (k Keys) Ciphers() (*wire.Sealer, *wire.Opener) {
	s, err := wire.NewSealer(k.EncryptKey, k.Send, k.SendHMACKey)
	if err != nil {
		panic(err) // 16-byte keys by construction
	}
	o, err := wire.NewOpener(k.DecryptKey, k.Recv, k.RecvHMACKey)
	if err != nil {
		panic(err)
	}
	return s, o
}

func randomBytes(rnd io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(rnd, b)
	return b, err
}
