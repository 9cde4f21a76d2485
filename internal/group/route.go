package group

import (
	"github.com/stratus-rtmfp/stratus/amf"
)

// Routing (sendToNearest, sendToNeighbor, sendToAllNeighbors) between
// Stratus members, on GR 1d flows (docs/netgroup.md §5). Flash's layout is
// unknown and librtmfp neither sends nor routes such messages, so this is
// Stratus's own, sent only to members that announced CapRouting (CapabilityOption).
//
//	40 ‖ mode(1) ‖ hops(1) ‖ destination group address(32) ‖ origin group address(32) ‖ AMF0 value
//
// mode 1: deliver to the member nearest the destination, hop by hop
// (each hop forwards to its neighbour nearest the destination, or
// delivers when it is nearer than all of them); mode 2: deliver to this
// neighbour (the destination is then its address). hops counts the
// forwards so far; a message is dropped at MaxHops.
const (
	TypeRouted   = 0x40
	ModeNearest  = 1
	ModeNeighbor = 2
	MaxHops      = 32
	routedHeader = 1 + 1 + 1 + 32 + 32
	// MaxRouted bounds a routed message.
	MaxRouted = 64 << 10
)

// Routed is a routed message.
type Routed struct {
	Mode   byte
	Hops   byte
	Dest   Addr
	Origin Addr
	Body   []byte // AMF0 value
}

// AppendRouted appends a routed message.
func AppendRouted(b []byte, r Routed) []byte {
	b = append(b, TypeRouted, r.Mode, r.Hops)
	b = append(b, r.Dest[:]...)
	b = append(b, r.Origin[:]...)
	return append(b, r.Body...)
}

// ParseRouted decodes a routed message; the body must hold one AMF value
// (Value decodes it).
func ParseRouted(m []byte) (Routed, error) {
	if len(m) > MaxRouted {
		return Routed{}, ErrTooLong
	}
	if len(m) < 1 || m[0] != TypeRouted {
		return Routed{}, ErrType
	}
	if len(m) < routedHeader+1 {
		return Routed{}, ErrShort
	}
	r := Routed{Mode: m[1], Hops: m[2], Dest: Addr(m[3:35]), Origin: Addr(m[35:67]), Body: m[routedHeader:]}
	if r.Mode != ModeNearest && r.Mode != ModeNeighbor {
		return Routed{}, ErrFormat
	}
	return r, nil
}

// Value decodes the routed message's value.
func (r Routed) Value() (any, error) { return amf.NewDecoder(r.Body).Next() }
