package handshake

import (
	"bytes"
	"crypto/rand"
	"io"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Signature is the one-byte signature every Flash-family endpoint sends and
// nobody verifies.
var Signature = []byte{0x58}

// EphemeralSource returns a fresh ephemeral key pair for a group. Servers
// pass a pre-generating pool so that key generation stays off the
// handshake's hot path.
type EphemeralSource func(*Group) (*KeyPair, error)

// Responder computes RIKeying answers for one identity.
type Responder struct {
	ID        *Identity
	Policy    Policy
	Ephemeral EphemeralSource // used when ID has no static key; nil generates inline
	Rand      io.Reader
}

// Accepted is a responder's result for one IIKeying.
type Accepted struct {
	SKRC        []byte
	Keys        Keys
	Certificate *Certificate // the initiator's
}

func negotiationOut(o outcome, p Policy, ourHMACLen int) (hf byte, hl int, sf byte) {
	// Towards Flash and Flash-era servers' clients (librtmfp checks the bytes
	// literally) answer exactly "03 1a 00 00 02 1e 00" unless a feature is
	// actually in play; otherwise answer as rtmfp-cpp does.
	hmacInPlay := o.send.HMACLen > 0 || o.recv.HMACLen > 0 || p.HMACSendAlways || p.HMACRecvRequired
	seqInPlay := o.send.Seq || o.recv.Seq || p.SeqSendAlways || p.SeqRecvRequired
	if hmacInPlay {
		hf, hl = flags(o.send.HMACLen > 0, true, o.recv.HMACLen > 0), ourHMACLen
	}
	if seqInPlay {
		sf = flags(o.send.Seq, true, o.recv.Seq)
	}
	return hf, hl, sf
}

// Respond processes an IIKeying whose cookie has been verified: it parses
// the initiator's certificate and SKIC, negotiates, runs Diffie-Hellman and
// derives the session keys. The cheap checks come before the DH work.
func (r *Responder) Respond(k wire.IIKeying) (*Accepted, error) {
	cert, err := ParseCertificate(k.Certificate)
	if err != nil {
		return nil, err
	}
	skic, err := ParseComponent(k.SKIC)
	if err != nil {
		return nil, err
	}
	if !skic.HasGroup {
		return nil, ErrKeying
	}
	g := GroupByID(skic.Group)
	if g == nil {
		return nil, ErrNoCommonGroup
	}
	hl := r.Policy.HMACLen
	if hl == 0 {
		hl = DefaultHMACLen
	}
	o, err := r.Policy.negotiate(skic, hl)
	if err != nil {
		return nil, err
	}
	if skic.Public != nil && len(cert.StaticKeys) > 0 {
		// A certificate with a static key is a claim to that key: keying
		// with a fresh ephemeral key instead would let anyone replay a
		// captured certificate and take over its peer ID.
		return nil, ErrKeying
	}
	farPub := skic.Public
	if farPub == nil {
		var ok bool
		if farPub, ok = cert.StaticKeyFor(g.ID); !ok {
			return nil, ErrNoCommonGroup
		}
	}
	hf, hlOut, sf := negotiationOut(o, r.Policy, hl)
	skrc := appendNegotiation(nil, hf, hlOut, sf)
	var secret []byte
	if r.ID.Static != nil {
		if r.ID.Static.Group != g {
			return nil, ErrNoCommonGroup
		}
		if secret, err = r.ID.Static.SharedSecret(farPub); err != nil {
			return nil, err
		}
		rnd := r.Rand
		if rnd == nil {
			rnd = rand.Reader
		}
		extra, err := randomBytes(rnd, 64)
		if err != nil {
			return nil, err
		}
		skrc = wire.AppendOption(skrc, KeyExtraRandomness, extra)
	} else {
		src := r.Ephemeral
		if src == nil {
			src = func(g *Group) (*KeyPair, error) { return GenerateKey(g, r.Rand) }
		}
		kp, err := src(g)
		if err != nil {
			return nil, err
		}
		if secret, err = kp.SharedSecret(farPub); err != nil {
			return nil, err
		}
		v := wire.AppendVLU(nil, g.ID)
		skrc = wire.AppendOption(skrc, KeyEphemeralPublic, append(v, kp.Public...))
	}
	return &Accepted{SKRC: skrc, Keys: DeriveKeys(secret, skrc, k.SKIC, o), Certificate: cert}, nil
}

// Initiator builds keying components for sessions this identity opens.
type Initiator struct {
	ID     *Identity
	Policy Policy
	Rand   io.Reader
}

// Pending is an initiator's keying state between sending IIKeying and
// receiving RIKeying.
type Pending struct {
	SKIC      []byte
	group     *Group
	eph       *KeyPair
	responder *Certificate
	id        *Identity
	policy    Policy
	hmacLen   int
}

// Start chooses a DH group the responder supports and builds the SKIC.
func (in *Initiator) Start(responder *Certificate) (*Pending, error) {
	rnd := in.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	p := &Pending{responder: responder, id: in.ID, policy: in.Policy, hmacLen: in.Policy.HMACLen}
	if p.hmacLen == 0 {
		p.hmacLen = FlashHMACLen
	}
	for _, g := range Groups {
		if !responder.Supports(g.ID) {
			continue
		}
		if in.ID.Static != nil && in.ID.Static.Group != g {
			continue
		}
		p.group = g
		break
	}
	if p.group == nil {
		return nil, ErrNoCommonGroup
	}
	var skic []byte
	if in.ID.Static != nil {
		skic = wire.AppendOptionVLU(nil, KeyGroupSelect, p.group.ID)
		extra, err := randomBytes(rnd, 64)
		if err != nil {
			return nil, err
		}
		skic = wire.AppendOption(skic, KeyExtraRandomness, extra)
	} else {
		kp, err := GenerateKey(p.group, rnd)
		if err != nil {
			return nil, err
		}
		p.eph = kp
		v := wire.AppendVLU(nil, p.group.ID)
		skic = wire.AppendOption(nil, KeyEphemeralPublic, append(v, kp.Public...))
	}
	pol := in.Policy
	p.SKIC = appendNegotiation(skic, flags(pol.HMACSendAlways, true, pol.HMACRecvRequired), p.hmacLen,
		flags(pol.SeqSendAlways, true, pol.SeqRecvRequired))
	return p, nil
}

// Finish combines the responder's SKRC and derives the session keys.
func (p *Pending) Finish(skrcRaw []byte) (Keys, error) {
	skrc, err := ParseComponent(skrcRaw)
	if err != nil {
		return Keys{}, err
	}
	o, err := p.policy.negotiate(skrc, p.hmacLen)
	if err != nil {
		return Keys{}, err
	}
	var farPub []byte
	if k, ok := p.responder.StaticKeyFor(p.group.ID); ok {
		farPub = k
	} else {
		if !skrc.HasGroup || skrc.Group != p.group.ID || skrc.Public == nil {
			return Keys{}, ErrKeying
		}
		farPub = skrc.Public
	}
	mine := p.eph
	if mine == nil {
		mine = p.id.Static
	}
	secret, err := mine.SharedSecret(farPub)
	if err != nil {
		return Keys{}, err
	}
	return DeriveKeys(secret, p.SKIC, skrcRaw, o), nil
}

// WinsGlare reports whether the near end wins a glare (both ends opening
// to each other at once): compare certificates as unsigned byte strings;
// near wins iff not (far < near) (RFC 7016 §3.5.1.3).
func WinsGlare(nearCert, farCert []byte) bool { return bytes.Compare(farCert, nearCert) >= 0 }
