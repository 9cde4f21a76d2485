// Package groupmedia holds the wire codecs of NetGroup multicast media
// (Flash's "GroupMedia", as librtmfp reproduces it): the stream
// announcement and its end, fragment availability maps, push and pull
// requests on the GR 11 flows, and media fragments on the GR 12 flows,
// with the cutting of a media message into fragments. Pure functions,
// defensive parsers with fuzz targets. docs/netgroup-media.md gives the
// layouts.
package groupmedia

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// Message types (first byte) on GR 11 and GR 12 flows.
const (
	TypeMediaInfo = 0x21 // announcement (long) or end of stream (short), GR 11
	TypeMap       = 0x22 // fragment availability map, GR 11
	TypePush      = 0x23 // push request (class mask), GR 11
	TypePull      = 0x2b // pull request (one fragment), GR 11
	MarkerWhole   = 0x20 // a whole media message, GR 12
	MarkerFirst   = 0x30 // first fragment of a split message
	MarkerMiddle  = 0x10 // middle fragment
	MarkerLast    = 0x00 // last fragment
)

// Flow metadata ("GR" and a kind byte).
var (
	MetaControl = []byte{'G', 'R', 0x11}
	MetaData    = []byte{'G', 'R', 0x12}
)

// Limits.
const (
	// MaxPayload is the largest media payload in one fragment: a
	// fragment then fits one RTMFP packet, so the transport never splits
	// it again.
	MaxPayload = 959
	// MaxSplit bounds the fragments of one media message: "remaining" is
	// one byte, and librtmfp cannot count past 255 (about 245 KB).
	MaxSplit = 255
	// MaxMessage is the largest media message Split cuts.
	MaxMessage = MaxSplit * MaxPayload
	// MaxName bounds a stream name: librtmfp reads its length as one
	// byte, and only VLU values below 128 agree with that.
	MaxName = 126
	// KeyLen is the stream key: 21 01 then 32 opaque bytes.
	KeyLen = 34
	// endFormLimit: a 21 whose body is shorter is an end of stream
	// (librtmfp's rule).
	endFormLimit = 0x24
	// MaxMapBytes bounds the bitmap of a map we read (one bit per
	// fragment; 64 KiB covers half a million fragments).
	MaxMapBytes = 64 << 10
)

// Errors.
var (
	ErrShort  = errors.New("groupmedia: message too short")
	ErrType   = errors.New("groupmedia: unexpected message type")
	ErrFormat = errors.New("groupmedia: malformed message")
	ErrLarge  = errors.New("groupmedia: too large")
)

// Params are the multicast settings a stream is announced with (the
// NetStream.multicast* properties that travel).
type Params struct {
	WindowDuration uint32 // ms, option 03 (multicastWindowDuration)
	UpdatePeriod   uint32 // ms, option 05 (multicastAvailabilityUpdatePeriod)
	FetchPeriod    uint32 // ms, option 07 (multicastFetchPeriod)
	SendToAll      bool   // option 06 (multicastAvailabilitySendToAll)
	// Option04 is always 300000 from Flash and librtmfp; its meaning is
	// unknown. It is kept as read.
	Option04 uint32
}

// DefaultParams are Flash's defaults.
var DefaultParams = Params{WindowDuration: 8000, UpdatePeriod: 100, FetchPeriod: 2500, Option04: 300000}

// Announce is a stream announcement: a member publishes or relays the
// stream with this name and key, and asks its neighbour to take part.
type Announce struct {
	Name   string
	Key    [32]byte // the opaque 32 bytes after 21 01
	Params Params
}

// AppendAnnounce appends an announcement in the order Flash writes it:
// name, key, 01 02, [01 06], window, 04, update period, fetch period.
func AppendAnnounce(b []byte, a Announce) []byte {
	b = append(b, TypeMediaInfo)
	b = wire.AppendOption(b, 0, []byte(a.Name))
	b = append(b, 0x21, 0x01)
	b = append(b, a.Key[:]...)
	b = append(b, 0x01, 0x02)
	if a.Params.SendToAll {
		b = append(b, 0x01, 0x06)
	}
	b = wire.AppendOptionVLU(b, 0x03, uint64(a.Params.WindowDuration))
	o4 := a.Params.Option04
	if o4 == 0 {
		o4 = DefaultParams.Option04
	}
	b = wire.AppendOptionVLU(b, 0x04, uint64(o4))
	b = wire.AppendOptionVLU(b, 0x05, uint64(a.Params.UpdatePeriod))
	return wire.AppendOptionVLU(b, 0x07, uint64(a.Params.FetchPeriod))
}

// AppendEnd appends the end of a stream: 21 ‖ VLU(last fragment + 1).
func AppendEnd(b []byte, endCounter uint64) []byte {
	return wire.AppendVLU(append(b, TypeMediaInfo), endCounter)
}

// ParseMediaInfo decodes a 21 message: an announcement, or (when the body
// is shorter than an announcement can be) an end of stream with its end
// counter. Parameters absent from an announcement keep Flash's defaults;
// unknown options are skipped, and, unlike librtmfp, parsing goes on
// after option 06.
func ParseMediaInfo(m []byte) (a *Announce, end uint64, err error) {
	if len(m) < 1 || m[0] != TypeMediaInfo {
		return nil, 0, ErrType
	}
	body := m[1:]
	if len(body) < endFormLimit {
		v, _, err := wire.ParseVLU(body)
		if err != nil {
			return nil, 0, ErrShort
		}
		return nil, v, nil
	}
	r := wire.Reader{B: body}
	l := r.VLU()
	if r.Err != nil || l < 2 || l > MaxName+1 || l > uint64(len(r.B)) {
		return nil, 0, fmt.Errorf("%w: stream name", ErrFormat)
	}
	r.Byte() // option type 00
	name := r.Bytes(l - 1)
	key := r.Bytes(KeyLen)
	if r.Err != nil {
		return nil, 0, ErrShort
	}
	if key[0] != 0x21 || key[1] != 0x01 {
		return nil, 0, fmt.Errorf("%w: stream key", ErrFormat)
	}
	an := &Announce{Name: string(name), Key: [32]byte(key[2:]), Params: DefaultParams}
	rest := r.Rest()
	for len(rest) > 0 {
		if rest[0] == 0 { // padding
			rest = rest[1:]
			continue
		}
		opt, _, n, err := wire.ParseOption(rest)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: option: %v", ErrFormat, err)
		}
		rest = rest[n:]
		var v uint64
		if len(opt.Value) > 0 {
			if v, _, err = wire.ParseVLU(opt.Value); err != nil {
				return nil, 0, fmt.Errorf("%w: option %x value", ErrFormat, opt.Type)
			}
		}
		v32 := uint32(min(v, 1<<32-1))
		switch opt.Type {
		case 0x03:
			an.Params.WindowDuration = v32
		case 0x04:
			if v32 != 0 {
				an.Params.Option04 = v32
			}
		case 0x05:
			an.Params.UpdatePeriod = v32
		case 0x06:
			an.Params.SendToAll = true
		case 0x07:
			an.Params.FetchPeriod = v32
		}
	}
	return an, 0, nil
}

// Map is a fragment availability map: the sender holds Last, and fragment
// Last-1-8k-b for each bit b (least significant first) set in byte k.
type Map struct {
	Last uint64
	Bits []byte
}

// Has reports whether the map's sender holds fragment id.
func (m Map) Has(id uint64) bool {
	if id > m.Last || id == 0 {
		return false
	}
	if id == m.Last {
		return true
	}
	d := m.Last - id - 1
	k := d / 8
	if k >= uint64(len(m.Bits)) {
		return false
	}
	return m.Bits[k]&(1<<(d%8)) != 0
}

// First is the oldest fragment the map can describe.
func (m Map) First() uint64 {
	span := uint64(len(m.Bits)) * 8
	if span >= m.Last {
		return 1
	}
	return m.Last - span
}

// AppendMap appends a map of what has holds, from first to last
// (ceil((last-first)/8) bitmap bytes; just the last ID when first ==
// last).
func AppendMap(b []byte, first, last uint64, has func(id uint64) bool) []byte {
	b = wire.AppendVLU(append(b, TypeMap), last)
	if last <= first {
		return b
	}
	n := last - first
	for k := uint64(0); k*8 < n; k++ {
		var byt byte
		for bit := uint64(0); bit < 8; bit++ {
			d := k*8 + bit
			if d >= n {
				break
			}
			if id := last - 1 - d; id >= first && has(id) {
				byt |= 1 << bit
			}
		}
		b = append(b, byt)
	}
	return b
}

// ParseMap decodes a map. A map without bitmap bytes holds only Last.
func ParseMap(m []byte) (Map, error) {
	if len(m) < 1 || m[0] != TypeMap {
		return Map{}, ErrType
	}
	last, n, err := wire.ParseVLU(m[1:])
	if err != nil {
		return Map{}, ErrShort
	}
	bits := m[1+n:]
	if len(bits) > MaxMapBytes {
		return Map{}, ErrLarge
	}
	return Map{Last: last, Bits: bits}, nil
}

// AppendPush appends a push request: push me every new fragment whose ID
// mod 8 is a bit set in mask (a full state; 0 stops pushing).
func AppendPush(b []byte, mask byte) []byte { return append(b, TypePush, mask) }

// ParsePush decodes a push request.
func ParsePush(m []byte) (byte, error) {
	if len(m) < 1 || m[0] != TypePush {
		return 0, ErrType
	}
	if len(m) < 2 {
		return 0, ErrShort
	}
	return m[1], nil
}

// AppendPull appends a pull request for one fragment.
func AppendPull(b []byte, id uint64) []byte { return wire.AppendVLU(append(b, TypePull), id) }

// ParsePull decodes a pull request.
func ParsePull(m []byte) (uint64, error) {
	if len(m) < 1 || m[0] != TypePull {
		return 0, ErrType
	}
	id, _, err := wire.ParseVLU(m[1:])
	if err != nil {
		return 0, ErrShort
	}
	return id, nil
}

// Fragment is one GR 12 message: a whole media message (MarkerWhole) or
// one piece of a split one. Type and Time are set on MarkerWhole and
// MarkerFirst fragments only; Remaining counts the fragments of the same
// message that follow this one.
type Fragment struct {
	Marker    byte
	ID        uint64
	Remaining uint8
	Type      byte   // RTMP message type: 08 audio, 09 video, 12/0f data, 14/11 command
	Time      uint32 // ms
	Payload   []byte
}

// Starts reports a fragment that begins a media message.
func (f Fragment) Starts() bool { return f.Marker == MarkerWhole || f.Marker == MarkerFirst }

// AppendFragment appends a fragment in librtmfp's (Flash's) layout.
func AppendFragment(b []byte, f Fragment) []byte {
	b = wire.AppendVLU(append(b, f.Marker), f.ID)
	if f.Marker == MarkerFirst || f.Marker == MarkerMiddle {
		b = append(b, f.Remaining)
	}
	if f.Starts() {
		b = append(b, f.Type)
		b = binary.BigEndian.AppendUint32(b, f.Time)
	}
	return append(b, f.Payload...)
}

// ParseFragment decodes a fragment. Like librtmfp, it accepts a first
// fragment without the remaining byte (seen from Flash): unless the byte
// after the ID is a possible count (not 0) followed by a media type, it is
// taken as the media type itself.
func ParseFragment(m []byte) (Fragment, error) {
	if len(m) < 1 {
		return Fragment{}, ErrShort
	}
	f := Fragment{Marker: m[0]}
	switch f.Marker {
	case MarkerWhole, MarkerFirst, MarkerMiddle, MarkerLast:
	default:
		return Fragment{}, ErrType
	}
	r := wire.Reader{B: m[1:]}
	f.ID = r.VLU()
	switch f.Marker {
	case MarkerFirst:
		f.Remaining = r.Byte()
		if r.Err == nil && f.Remaining > 0 && len(r.B) > 0 && isMediaType(r.B[0]) {
			f.Type = r.Byte()
		} else {
			f.Type, f.Remaining = f.Remaining, 0
		}
		f.Time = r.U32()
	case MarkerWhole:
		f.Type = r.Byte()
		f.Time = r.U32()
	case MarkerMiddle:
		f.Remaining = r.Byte()
	}
	if r.Err != nil || f.ID == 0 {
		return Fragment{}, ErrShort
	}
	f.Payload = r.Rest()
	return f, nil
}

// isMediaType: the RTMP message types a stream carries.
func isMediaType(t byte) bool {
	switch t {
	case 0x08, 0x09, 0x0f, 0x11, 0x12, 0x14:
		return true
	}
	return false
}

// Split cuts a media message into fragments numbered from firstID: one
// MarkerWhole fragment if it fits, else a MarkerFirst, MarkerMiddle... and
// a MarkerLast of at most MaxPayload bytes each. An empty message gives
// no fragment; one above MaxMessage is refused.
func Split(typ byte, time uint32, payload []byte, firstID uint64) ([]Fragment, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if len(payload) > MaxMessage {
		return nil, ErrLarge
	}
	n := (len(payload) + MaxPayload - 1) / MaxPayload
	if n == 1 {
		return []Fragment{{Marker: MarkerWhole, ID: firstID, Type: typ, Time: time, Payload: payload}}, nil
	}
	out := make([]Fragment, n)
	for k := range n {
		f := Fragment{ID: firstID + uint64(k), Remaining: uint8(n - 1 - k), Payload: payload[k*MaxPayload : min((k+1)*MaxPayload, len(payload))]}
		switch {
		case k == 0:
			f.Marker, f.Type, f.Time = MarkerFirst, typ, time
		case k == n-1:
			f.Marker = MarkerLast
		default:
			f.Marker = MarkerMiddle
		}
		out[k] = f
	}
	return out, nil
}
