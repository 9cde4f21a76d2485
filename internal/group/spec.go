// Package group holds the NetGroup wire codecs between members: the
// groupspec text and the group ID derived from it, group addresses and
// ring distance, the peer-to-peer group messages (group init and its
// HMAC, begin, report, disconnect request) and the posting and routing
// messages. (The server channel's join and member announcement are in
// internal/flash, which the server shares.)
// Everything is a pure function over bytes; parsers are defensive and
// bounded. docs/netgroup.md describes the layouts.
package group

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Groupspec option types (docs/netgroup.md §1). Those before the 00
// terminator are part of the group identity; the rest are not.
const (
	OptRouting           = 0x00
	OptMulticast         = 0x01
	OptObjectReplication = 0x02
	OptPosting           = 0x03
	OptPublishHash       = 0x05
	OptPostingHash       = 0x07
	OptIPMulticastAddr   = 0x0a
	OptBootstrapPeer     = 0x0b
	OptServerChannel     = 0x0c
	OptPeerToPeerOff     = 0x0d
	OptName              = 0x0e
	OptPublishAuth       = 0x15
	OptPostingAuth       = 0x17
	OptIPMulticastUpdate = 0x1b
	OptVersion           = 0x7f
)

// MaxSpecLen bounds a groupspec string: Flash's are a few hundred
// characters; anything this long is not one.
const MaxSpecLen = 16 << 10

// Errors.
var (
	ErrSpecPrefix = errors.New("group: a groupspec starts with \"G:\"")
	ErrSpecHex    = errors.New("group: a groupspec is hexadecimal after \"G:\"")
	ErrSpecEnd    = errors.New("group: groupspec has no 00 terminator")
	ErrSpecLong   = errors.New("group: groupspec too long")
	ErrSpecOption = errors.New("group: malformed groupspec option")
)

// IPMulticastAddr is an IP multicast address of a groupspec (option 0a
// after the terminator), with its optional source address.
type IPMulticastAddr struct {
	Addr   netip.AddrPort
	Source netip.Addr
}

// Spec is a decoded groupspec: the options Flash's GroupSpecifier writes.
type Spec struct {
	Version                  uint64 // option 7f, 0 if absent
	Routing                  bool
	Multicast                bool
	ObjectReplication        bool
	Posting                  bool
	PublishHash              []byte // option 05: SHA-256(pw) or salt ‖ SHA-256(salt ‖ pw)
	PostingHash              []byte // option 07
	ServerChannel            bool
	PeerToPeerDisabled       bool
	Name                     string // first option 0e
	Unique                   []byte // second option 0e (makeUnique)
	IPMulticastMemberUpdates bool
	IPMulticast              []IPMulticastAddr
	BootstrapPeers           [][32]byte
	PublishAuth              string // option 15: the publish password in clear
	PostingAuth              string // option 17
}

// ParseSpec decodes a groupspec string. Unknown options are skipped. The
// identity of the group is the text itself (see Identity), not what
// ParseSpec returns.
func ParseSpec(s string) (Spec, error) {
	b, _, err := specBytes(s)
	if err != nil {
		return Spec{}, err
	}
	var sp Spec
	hashed := true
	names := 0
	for len(b) > 0 {
		opt, marker, n, err := wire.ParseOption(b)
		if err != nil {
			return Spec{}, fmt.Errorf("%w: %v", ErrSpecOption, err)
		}
		b = b[n:]
		if marker {
			if !hashed {
				return Spec{}, fmt.Errorf("%w: a second terminator", ErrSpecOption)
			}
			hashed = false
			continue
		}
		v := opt.Value
		if hashed {
			switch opt.Type {
			case OptVersion:
				ver, _, err := wire.ParseVLU(v)
				if err != nil {
					return Spec{}, fmt.Errorf("%w: version", ErrSpecOption)
				}
				sp.Version = ver
			case OptRouting:
				sp.Routing = true
			case OptMulticast:
				sp.Multicast = true
			case OptObjectReplication:
				sp.ObjectReplication = true
			case OptPosting:
				sp.Posting = true
			case OptPublishHash:
				sp.PublishHash = clone(v)
			case OptPostingHash:
				sp.PostingHash = clone(v)
			case OptServerChannel:
				sp.ServerChannel = true
			case OptPeerToPeerOff:
				sp.PeerToPeerDisabled = true
			case OptName:
				if names == 0 {
					sp.Name = string(v)
				} else {
					sp.Unique = clone(v)
				}
				names++
			case OptIPMulticastUpdate:
				sp.IPMulticastMemberUpdates = true
			}
			continue
		}
		switch opt.Type {
		case OptIPMulticastAddr:
			a, err := parseIPMulticast(v)
			if err != nil {
				return Spec{}, err
			}
			sp.IPMulticast = append(sp.IPMulticast, a)
		case OptBootstrapPeer:
			if len(v) != 32 {
				return Spec{}, fmt.Errorf("%w: bootstrap peer is %d bytes", ErrSpecOption, len(v))
			}
			sp.BootstrapPeers = append(sp.BootstrapPeers, [32]byte(v))
		case OptPublishAuth:
			sp.PublishAuth = string(v)
		case OptPostingAuth:
			sp.PostingAuth = string(v)
		}
	}
	if hashed {
		return Spec{}, ErrSpecEnd
	}
	return sp, nil
}

func parseIPMulticast(v []byte) (IPMulticastAddr, error) {
	var a IPMulticastAddr
	switch len(v) {
	case 6, 10:
		a.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[:4])), uint16(v[4])<<8|uint16(v[5]))
		if len(v) == 10 {
			a.Source = netip.AddrFrom4([4]byte(v[6:10]))
		}
	case 18, 34:
		a.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(v[:16])), uint16(v[16])<<8|uint16(v[17]))
		if len(v) == 34 {
			a.Source = netip.AddrFrom16([16]byte(v[18:34]))
		}
	default:
		return a, fmt.Errorf("%w: IP multicast address of %d bytes", ErrSpecOption, len(v))
	}
	return a, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// specBytes checks the prefix, decodes the hex and finds the end of the
// hashed part (the offset of its 00 terminator in the decoded bytes).
func specBytes(s string) ([]byte, int, error) {
	if len(s) > MaxSpecLen {
		return nil, 0, ErrSpecLong
	}
	if !strings.HasPrefix(s, "G:") {
		return nil, 0, ErrSpecPrefix
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, 0, ErrSpecHex
	}
	off := 0
	for off < len(b) {
		_, marker, n, err := wire.ParseOption(b[off:])
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrSpecOption, err)
		}
		if marker {
			return b, off, nil
		}
		off += n
	}
	return nil, 0, ErrSpecEnd
}

// Identity is what a groupspec string makes of a group: the text that is
// hashed (and keys the group handshake HMAC) and the group ID.
type Identity struct {
	// Text is the string from "G:" up to, not including, the 00 that
	// ends the hashed options, exactly as given (case and all).
	Text string
	// ID is SHA-256(Text), or SHA-256(SHA-256(Text)) when the groupspec
	// says version 2 (option 7f = 02).
	ID [32]byte
}

// HexID is the group ID as 64 lower-case hex digits (how the group init
// carries it).
func (id Identity) HexID() string { return hex.EncodeToString(id.ID[:]) }

// IdentityOf computes a groupspec string's identity. Two strings that
// differ in option order, hex case or length encoding are different
// groups: the text is never normalised.
func IdentityOf(s string) (Identity, error) {
	b, end, err := specBytes(s)
	if err != nil {
		return Identity{}, err
	}
	text := s[:2+2*end]
	sum := sha256.Sum256([]byte(text))
	if specVersion(b[:end]) == 2 {
		sum = sha256.Sum256(sum[:])
	}
	return Identity{Text: text, ID: sum}, nil
}

// specVersion is the value of option 7f in the hashed options, 0 without
// one.
func specVersion(b []byte) uint64 {
	var ver uint64
	for len(b) > 0 {
		opt, marker, n, err := wire.ParseOption(b)
		if err != nil || marker {
			break
		}
		if opt.Type == OptVersion {
			if v, _, err := wire.ParseVLU(opt.Value); err == nil {
				ver = v
			}
		}
		b = b[n:]
	}
	return ver
}

// Encode writes the groupspec the way Flash's GroupSpecifier does, in its
// fixed option order, lower-case hex. With auth the authorizations
// (passwords in clear) follow, as groupspecWithAuthorizations() gives;
// without, it is groupspecWithoutAuthorizations().
func (sp Spec) Encode(auth bool) string {
	var b []byte
	if sp.Version > 1 {
		b = wire.AppendOptionVLU(b, OptVersion, sp.Version)
	}
	flag := func(on bool, typ uint64) {
		if on {
			b = wire.AppendOption(b, typ, nil)
		}
	}
	flag(sp.Routing, OptRouting)
	flag(sp.Multicast, OptMulticast)
	flag(sp.ObjectReplication, OptObjectReplication)
	flag(sp.Posting, OptPosting)
	if sp.PublishHash != nil {
		b = wire.AppendOption(b, OptPublishHash, sp.PublishHash)
	}
	if sp.PostingHash != nil {
		b = wire.AppendOption(b, OptPostingHash, sp.PostingHash)
	}
	flag(sp.ServerChannel, OptServerChannel)
	flag(sp.PeerToPeerDisabled, OptPeerToPeerOff)
	b = wire.AppendOption(b, OptName, []byte(sp.Name))
	if sp.Unique != nil {
		b = wire.AppendOption(b, OptName, sp.Unique)
	}
	flag(sp.IPMulticastMemberUpdates, OptIPMulticastUpdate)
	b = append(b, 0)
	for _, a := range sp.IPMulticast {
		v := a.Addr.Addr().Unmap().AsSlice()
		v = append(v, byte(a.Addr.Port()>>8), byte(a.Addr.Port()))
		if a.Source.IsValid() {
			v = append(v, a.Source.Unmap().AsSlice()...)
		}
		b = wire.AppendOption(b, OptIPMulticastAddr, v)
	}
	for _, p := range sp.BootstrapPeers {
		b = wire.AppendOption(b, OptBootstrapPeer, p[:])
	}
	if auth {
		b = sp.AppendAuthorizations(b)
	}
	return "G:" + hex.EncodeToString(b)
}

// AppendAuthorizations appends the authorization options (what
// GroupSpecifier.authorizations() gives, in binary).
func (sp Spec) AppendAuthorizations(b []byte) []byte {
	if sp.PublishAuth != "" {
		b = wire.AppendOption(b, OptPublishAuth, []byte(sp.PublishAuth))
	}
	if sp.PostingAuth != "" {
		b = wire.AppendOption(b, OptPostingAuth, []byte(sp.PostingAuth))
	}
	return b
}

// PasswordHash is the hash part of setPublishPassword/setPostingPassword:
// SHA-256 of the password, or with a salt, the salt followed by
// SHA-256(salt ‖ password).
func PasswordHash(password, salt string) []byte {
	sum := sha256.Sum256([]byte(salt + password))
	if salt == "" {
		return sum[:]
	}
	return append([]byte(salt), sum[:]...)
}

// PasswordMatches reports whether password hashes to h (with the salt h
// carries, if any).
func PasswordMatches(h []byte, password string) bool {
	if len(h) < 32 {
		return false
	}
	salt := string(h[:len(h)-32])
	return string(PasswordHash(password, salt)) == string(h)
}
