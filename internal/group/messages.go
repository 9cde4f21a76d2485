package group

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Flow metadata of the group flows (docs/netgroup.md §2, §3): "GC" between
// a client and its server, "GR" and a kind byte between members.
var (
	MetaServerChannel = flash.GroupMetadata
	MetaSession       = []byte{'G', 'R', 0x1c} // group init, begin, reports, disconnect requests
	MetaRouting       = []byte{'G', 'R', 0x1d} // sendToNearest / sendToNeighbor (Stratus layout)
	MetaMediaControl  = []byte{'G', 'R', 0x11} // multicast: announcements, maps, push, pull
	MetaMediaData     = []byte{'G', 'R', 0x12} // multicast: fragments
	MetaPostKeys      = []byte{'G', 'R', 0x18} // posting: keys
	MetaPosts         = []byte{'G', 'R', 0x19} // posting: bodies
)

// FlowKind is the kind byte of "GR" metadata, 0 for anything else.
// Like librtmfp, only the first three bytes count.
func FlowKind(md []byte) byte {
	if len(md) < 3 || md[0] != 'G' || md[1] != 'R' {
		return 0
	}
	return md[2]
}

// IsServerChannel reports "GC" metadata.
func IsServerChannel(md []byte) bool { return bytes.HasPrefix(md, MetaServerChannel) }

// Message types on the group flows (one dispatcher, keyed on the first
// byte, reads all of them in librtmfp; a type it does not know makes it
// reject the flow).
const (
	TypeInit        = 0x01 // group init (handshake)
	TypeData        = 0x02 // "group data", sent before begin
	TypeReport      = 0x0a
	TypeMember      = 0x0b // server → member on the GC flow (internal/flash has that codec)
	TypeAskClose    = 0x0c // disconnect request
	TypeBegin       = 0x0e
	TypeBeginNear   = 0x0f // begin, receive mode "nearest"
	initLen         = 137
	maxDataString   = 256
	peerIDHexLen    = 64
	initHeaderID    = 0x4100
	initHeaderKey   = 0x2101
	initHeaderPeer  = 0x2303
	rawPeerIDLength = 34
)

// Errors.
var (
	ErrShort   = errors.New("group: message too short")
	ErrType    = errors.New("group: unexpected message type")
	ErrFormat  = errors.New("group: malformed message")
	ErrTooLong = errors.New("group: message too long")
)

// Init is the group init a member sends on its GR 1c flow first: which
// group, the HMAC proving it knows the groupspec, and whom it is for.
type Init struct {
	GroupHex string   // the group ID as 64 hex digits (lower case when we send)
	Key      [32]byte // Key(text, receiver's nonce)
	Target   [32]byte // the receiver's peer ID
}

// AppendInit appends a group init: 137 bytes at fixed offsets.
func AppendInit(b []byte, in Init) []byte {
	b = append(b, TypeInit, 0x41, 0x00)
	b = append(b, strings.ToLower(in.GroupHex)...)
	b = append(b, 0x21, 0x01)
	b = append(b, in.Key[:]...)
	b = append(b, 0x23, 0x03, RawIDPrefix[0], RawIDPrefix[1])
	return append(b, in.Target[:]...)
}

// ParseInit decodes a group init. Its option headers are fixed bytes, as
// librtmfp writes and checks them.
func ParseInit(m []byte) (Init, error) {
	if len(m) < 1 || m[0] != TypeInit {
		return Init{}, ErrType
	}
	if len(m) < initLen {
		return Init{}, ErrShort
	}
	r := wire.Reader{B: m[1:]}
	if r.U16() != initHeaderID {
		return Init{}, fmt.Errorf("%w: group ID header", ErrFormat)
	}
	gid := r.Bytes(peerIDHexLen)
	if _, err := hex.DecodeString(string(gid)); err != nil {
		return Init{}, fmt.Errorf("%w: group ID is not hex", ErrFormat)
	}
	if r.U16() != initHeaderKey {
		return Init{}, fmt.Errorf("%w: key header", ErrFormat)
	}
	key := r.Bytes(32)
	if r.U16() != initHeaderPeer {
		return Init{}, fmt.Errorf("%w: peer header", ErrFormat)
	}
	raw := r.Bytes(rawPeerIDLength)
	if r.Err != nil {
		return Init{}, ErrShort
	}
	if raw[0] != RawIDPrefix[0] || raw[1] != RawIDPrefix[1] {
		return Init{}, fmt.Errorf("%w: target is not a raw peer ID", ErrFormat)
	}
	return Init{GroupHex: string(gid), Key: [32]byte(key), Target: [32]byte(raw[2:])}, nil
}

// AppendData appends the 02 message that precedes begin. Flash and
// librtmfp send it bare; a note would follow as VLU length ‖ bytes
// (librtmfp reads and logs one; what Flash does with one is unknown), so
// Stratus sends none.
func AppendData(b []byte, note string) []byte {
	b = append(b, TypeData)
	if note != "" {
		b = wire.AppendField(b, []byte(note))
	}
	return b
}

// ParseData returns the note of a 02 message ("" without one).
func ParseData(m []byte) (string, error) {
	if len(m) < 1 || m[0] != TypeData {
		return "", ErrType
	}
	if len(m) == 1 {
		return "", nil
	}
	r := wire.Reader{B: m[1:]}
	l := r.VLU()
	if l > maxDataString {
		return "", ErrTooLong
	}
	s := r.Bytes(l)
	if r.Err != nil {
		return "", ErrShort
	}
	return string(s), nil
}

// CapabilityOption is the flow option a Stratus member puts on its GR 1c
// flow, after the metadata (and return association, if any): its
// one-byte value holds capability bits (CapRouting). Option types from
// 0x2000 up are optional: RFC 7016 receivers that do not know one ignore
// it, so Flash sees nothing it has to understand. The type is 0x2001 and
// the value one byte so that librtmfp's flow-header reader, which expects
// a return association in that place, keeps its place: it reads the
// option's length, takes c0 as an unknown header part, then reads 01 (the
// type's second byte) as the length of a part it skips (the value), and
// finds the marker. Other implementations never see Stratus routing
// messages: they are sent only to members whose flow carried the option.
const CapabilityOption uint64 = 0x2001

// Capability bits in CapabilityOption's value.
const (
	CapRouting byte = 0x01 // reads routed messages (GR 1d) in Stratus's layout
)

// Capabilities is this implementation's CapabilityOption value.
var Capabilities = []byte{CapRouting}
