package wire

import (
	"encoding/binary"
)

// Chunk types (reference §1.7).
const (
	ChunkIHello        byte = 0x30
	ChunkRHello        byte = 0x70
	ChunkRedirect      byte = 0x71
	ChunkCookieChange  byte = 0x79
	ChunkIIKeying      byte = 0x38
	ChunkRIKeying      byte = 0x78
	ChunkFIHello       byte = 0x0f
	ChunkPing          byte = 0x01
	ChunkPingReply     byte = 0x41
	ChunkUserData      byte = 0x10
	ChunkNextUserData  byte = 0x11
	ChunkAckBitmap     byte = 0x50
	ChunkAckRanges     byte = 0x51
	ChunkBufferProbe   byte = 0x18
	ChunkFlowException byte = 0x5e
	ChunkCloseRequest  byte = 0x0c
	ChunkCloseAck      byte = 0x4c
	ChunkFragment      byte = 0x7f
	ChunkPadding       byte = 0xff
)

// ChunkHeaderLen is the type byte and the 16-bit length.
const ChunkHeaderLen = 3

// Chunk is one raw chunk of a packet.
type Chunk struct {
	Type    byte
	Payload []byte
}

// NextChunk returns the chunk at the start of b and the rest. ok is false at
// the end of the chunks: fewer than 3 bytes left, padding (type 0xff) or a
// length that overruns the packet.
func NextChunk(b []byte) (c Chunk, rest []byte, ok bool) {
	if len(b) < ChunkHeaderLen || b[0] == ChunkPadding {
		return Chunk{}, nil, false
	}
	l := int(binary.BigEndian.Uint16(b[1:3]))
	if l > len(b)-ChunkHeaderLen {
		return Chunk{}, nil, false
	}
	end := ChunkHeaderLen + l
	return Chunk{Type: b[0], Payload: b[ChunkHeaderLen:end:end]}, b[end:], true
}

// BeginChunk appends a chunk header with a zero length and returns its
// offset; EndChunk then writes the length. This lets encoders write
// payloads in place without knowing their size ahead of time.
func BeginChunk(b []byte, typ byte) ([]byte, int) {
	return append(b, typ, 0, 0), len(b)
}

// EndChunk fills in the length of the chunk begun at off.
func EndChunk(b []byte, off int) []byte {
	binary.BigEndian.PutUint16(b[off+1:], uint16(len(b)-off-ChunkHeaderLen))
	return b
}

// AppendChunk appends a whole chunk.
func AppendChunk(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// IHello (0x30): vlu epdLen, EPD, tag.
type IHello struct {
	EPD []byte
	Tag []byte
}

// Append appends the chunk.
func (c IHello) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkIHello)
	b = AppendField(b, c.EPD)
	b = append(b, c.Tag...)
	return EndChunk(b, off)
}

// ParseIHello decodes an IHello payload.
func ParseIHello(p []byte) (IHello, error) {
	r := Reader{B: p}
	c := IHello{EPD: r.Field(), Tag: r.Rest()}
	if r.Err != nil {
		return IHello{}, ErrChunk
	}
	return c, nil
}

// RHello (0x70): vlu tagLen, tag echo, vlu cookieLen, cookie, certificate.
type RHello struct {
	Tag         []byte
	Cookie      []byte
	Certificate []byte
}

// Append appends the chunk.
func (c RHello) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkRHello)
	b = AppendField(b, c.Tag)
	b = AppendField(b, c.Cookie)
	b = append(b, c.Certificate...)
	return EndChunk(b, off)
}

// ParseRHello decodes an RHello payload.
func ParseRHello(p []byte) (RHello, error) {
	r := Reader{B: p}
	c := RHello{Tag: r.Field(), Cookie: r.Field(), Certificate: r.Rest()}
	if r.Err != nil {
		return RHello{}, ErrChunk
	}
	return c, nil
}

// Redirect (0x71): vlu tagLen, tag echo, addresses.
type Redirect struct {
	Tag       []byte
	Addresses []Address
}

// Append appends the chunk.
func (c Redirect) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkRedirect)
	b = AppendField(b, c.Tag)
	for _, a := range c.Addresses {
		b = AppendAddress(b, a.AddrPort, a.Origin)
	}
	return EndChunk(b, off)
}

// MaxRedirectAddresses bounds what we keep from one Redirect (rtmfp-cpp's
// candidate cap).
const MaxRedirectAddresses = 24

// ParseRedirect decodes a Redirect payload.
func ParseRedirect(p []byte) (Redirect, error) {
	r := Reader{B: p}
	tag := r.Field()
	if r.Err != nil {
		return Redirect{}, ErrChunk
	}
	addrs, err := ParseAddressList(r.Rest(), MaxRedirectAddresses)
	if err != nil {
		return Redirect{}, ErrChunk
	}
	return Redirect{Tag: tag, Addresses: addrs}, nil
}

// CookieChange (0x79): vlu oldLen, old cookie, new cookie.
type CookieChange struct {
	Old, New []byte
}

// Append appends the chunk.
func (c CookieChange) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkCookieChange)
	b = AppendField(b, c.Old)
	b = append(b, c.New...)
	return EndChunk(b, off)
}

// ParseCookieChange decodes a Cookie Change payload.
func ParseCookieChange(p []byte) (CookieChange, error) {
	r := Reader{B: p}
	c := CookieChange{Old: r.Field(), New: r.Rest()}
	if r.Err != nil || len(c.New) == 0 {
		return CookieChange{}, ErrChunk
	}
	return c, nil
}

// IIKeying (0x38): ISID, cookie echo, initiator certificate, SKIC, signature.
type IIKeying struct {
	ISID        uint32
	Cookie      []byte
	Certificate []byte
	SKIC        []byte
	Signature   []byte
}

// Append appends the chunk.
func (c IIKeying) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkIIKeying)
	b = binary.BigEndian.AppendUint32(b, c.ISID)
	b = AppendField(b, c.Cookie)
	b = AppendField(b, c.Certificate)
	b = AppendField(b, c.SKIC)
	b = append(b, c.Signature...)
	return EndChunk(b, off)
}

// ParseIIKeying decodes an IIKeying payload.
func ParseIIKeying(p []byte) (IIKeying, error) {
	r := Reader{B: p}
	c := IIKeying{ISID: r.U32(), Cookie: r.Field(), Certificate: r.Field(), SKIC: r.Field(), Signature: r.Rest()}
	if r.Err != nil || c.ISID == 0 {
		return IIKeying{}, ErrChunk
	}
	return c, nil
}

// RIKeying (0x78): RSID, SKRC, signature.
type RIKeying struct {
	RSID      uint32
	SKRC      []byte
	Signature []byte
}

// Append appends the chunk.
func (c RIKeying) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkRIKeying)
	b = binary.BigEndian.AppendUint32(b, c.RSID)
	b = AppendField(b, c.SKRC)
	b = append(b, c.Signature...)
	return EndChunk(b, off)
}

// ParseRIKeying decodes an RIKeying payload.
func ParseRIKeying(p []byte) (RIKeying, error) {
	r := Reader{B: p}
	c := RIKeying{RSID: r.U32(), SKRC: r.Field(), Signature: r.Rest()}
	if r.Err != nil || c.RSID == 0 {
		return RIKeying{}, ErrChunk
	}
	return c, nil
}

// FIHello (0x0f): vlu epdLen, EPD, reply address, tag.
type FIHello struct {
	EPD   []byte
	Reply Address
	Tag   []byte
}

// Append appends the chunk.
func (c FIHello) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkFIHello)
	b = AppendField(b, c.EPD)
	b = AppendAddress(b, c.Reply.AddrPort, c.Reply.Origin)
	b = append(b, c.Tag...)
	return EndChunk(b, off)
}

// ParseFIHello decodes a Forwarded IHello payload.
func ParseFIHello(p []byte) (FIHello, error) {
	r := Reader{B: p}
	epd := r.Field()
	if r.Err != nil {
		return FIHello{}, ErrChunk
	}
	a, n, err := ParseAddress(r.B)
	if err != nil {
		return FIHello{}, ErrChunk
	}
	return FIHello{EPD: epd, Reply: a, Tag: r.B[n:]}, nil
}

// User data flags (reference §4.3.3).
const (
	UDOptions      byte = 0x80
	UDFragMask     byte = 0x30
	UDFragWhole    byte = 0x00
	UDFragFirst    byte = 0x10
	UDFragLast     byte = 0x20
	UDFragMiddle   byte = 0x30
	UDAbandon      byte = 0x02
	UDFinal        byte = 0x01
	udReservedBits byte = 0x4c
)

// User data option types.
const (
	OptMetadata   uint64 = 0x00
	OptReturnFlow uint64 = 0x0a
	// OptOptional is the first optional option type: a receiver that
	// does not know one ignores it (RFC 7016 §2.3.11.1.1).
	OptOptional uint64 = 0x2000
)

// UserData is a 0x10 or 0x11 chunk. For 0x11 (Next) the flow ID, sequence
// number and FSN offset are implied by the previous chunk; ParseUserData
// leaves them zero and the caller fills them in.
type UserData struct {
	Next      bool
	Flags     byte
	FlowID    uint64
	Seq       uint64
	FSNOffset uint64
	Options   []byte // raw option list including the end marker; set iff Flags&UDOptions
	Data      []byte
}

// HeaderLen is the encoded size of the chunk without Data.
func (c UserData) HeaderLen() int {
	n := ChunkHeaderLen + 1 + len(c.Options)
	if !c.Next {
		n += VLULen(c.FlowID) + VLULen(c.Seq) + VLULen(c.FSNOffset)
	}
	return n
}

// Append appends the chunk. The OPT flag is set from len(Options).
func (c UserData) Append(b []byte) []byte {
	typ := ChunkUserData
	if c.Next {
		typ = ChunkNextUserData
	}
	flags := c.Flags &^ (UDOptions | udReservedBits)
	if len(c.Options) > 0 {
		flags |= UDOptions
	}
	b, off := BeginChunk(b, typ)
	b = append(b, flags)
	if !c.Next {
		b = AppendVLU(b, c.FlowID)
		b = AppendVLU(b, c.Seq)
		b = AppendVLU(b, c.FSNOffset)
	}
	b = append(b, c.Options...)
	b = append(b, c.Data...)
	return EndChunk(b, off)
}

// ParseUserData decodes a 0x10 (next=false) or 0x11 (next=true) payload.
func ParseUserData(p []byte, next bool) (UserData, error) {
	r := Reader{B: p}
	c := UserData{Next: next, Flags: r.Byte()}
	if !next {
		c.FlowID = r.VLU()
		c.Seq = r.VLU()
		c.FSNOffset = r.VLU()
	}
	if r.Err != nil {
		return UserData{}, ErrChunk
	}
	if !next && c.FSNOffset > c.Seq {
		return UserData{}, ErrChunk
	}
	if c.Flags&UDOptions != 0 {
		n, err := WalkOptionList(r.B, nil)
		if err != nil {
			return UserData{}, ErrChunk
		}
		c.Options = r.B[:n:n]
		r.B = r.B[n:]
	}
	c.Data = r.Rest()
	return c, nil
}

// AckRange is a run of received sequence numbers [Start, End] above the
// cumulative ack.
type AckRange struct{ Start, End uint64 }

// AckRanges (0x51): flow ID, receive window in 1024-byte blocks, cumulative
// ack and ranges above it. AckBitmap (0x50) decodes into the same shape.
type Ack struct {
	FlowID uint64
	Window uint64 // blocks of 1024 bytes
	Cum    uint64
	Ranges []AckRange
}

// Append appends a 0x51 chunk, keeping at most maxLen bytes (header
// included) by dropping trailing ranges, which a truncated ack allows.
// Returns b unchanged if even the obligatory part does not fit.
func (c Ack) Append(b []byte, maxLen int) []byte {
	need := ChunkHeaderLen + VLULen(c.FlowID) + VLULen(c.Window) + VLULen(c.Cum)
	if need > maxLen {
		return b
	}
	orig := len(b)
	b, off := BeginChunk(b, ChunkAckRanges)
	b = AppendVLU(b, c.FlowID)
	b = AppendVLU(b, c.Window)
	b = AppendVLU(b, c.Cum)
	cursor := c.Cum
	for _, r := range c.Ranges {
		if r.Start < cursor+2 || r.End < r.Start {
			break // not canonical; stop rather than encode nonsense
		}
		h := r.Start - cursor - 2
		n := r.End - r.Start
		if len(b)-orig+VLULen(h)+VLULen(n) > maxLen {
			break
		}
		b = AppendVLU(b, h)
		b = AppendVLU(b, n)
		cursor = r.End
	}
	return EndChunk(b, off)
}

// MaxAckRanges bounds the ranges decoded from one ack chunk; a 1192-byte
// packet cannot carry more than this anyway.
const MaxAckRanges = 600

// ParseAckRanges decodes a 0x51 payload.
func ParseAckRanges(p []byte) (Ack, error) {
	r := Reader{B: p}
	a := Ack{FlowID: r.VLU(), Window: r.VLU(), Cum: r.VLU()}
	if r.Err != nil {
		return Ack{}, ErrChunk
	}
	cursor := a.Cum
	for len(r.B) > 0 {
		h := r.VLU()
		n := r.VLU()
		if r.Err != nil {
			return Ack{}, ErrChunk
		}
		start := cursor + h + 2
		end := start + n
		if start < cursor || end < start {
			return Ack{}, ErrChunk // overflow
		}
		if len(a.Ranges) < MaxAckRanges {
			a.Ranges = append(a.Ranges, AckRange{start, end})
		}
		cursor = end
	}
	return a, nil
}

// ParseAckBitmap decodes a 0x50 payload: bit i (LSB first in each byte)
// marks cum+2+i received.
func ParseAckBitmap(p []byte) (Ack, error) {
	r := Reader{B: p}
	a := Ack{FlowID: r.VLU(), Window: r.VLU(), Cum: r.VLU()}
	if r.Err != nil {
		return Ack{}, ErrChunk
	}
	bm := r.Rest()
	var cur *AckRange
	for i := 0; i < len(bm)*8; i++ {
		seq := a.Cum + 2 + uint64(i)
		if seq < a.Cum {
			return Ack{}, ErrChunk
		}
		if bm[i/8]&(1<<(i%8)) == 0 {
			cur = nil
			continue
		}
		if cur != nil {
			cur.End = seq
			continue
		}
		if len(a.Ranges) >= MaxAckRanges {
			break
		}
		a.Ranges = append(a.Ranges, AckRange{seq, seq})
		cur = &a.Ranges[len(a.Ranges)-1]
	}
	return a, nil
}

// AppendBitmap appends a 0x50 chunk (we never send it; tests and fuzzing
// use the encoder).
func (c Ack) AppendBitmap(b []byte) []byte {
	b, off := BeginChunk(b, ChunkAckBitmap)
	b = AppendVLU(b, c.FlowID)
	b = AppendVLU(b, c.Window)
	b = AppendVLU(b, c.Cum)
	var bm []byte
	for _, r := range c.Ranges {
		for s := r.Start; s <= r.End && s >= c.Cum+2; s++ {
			i := s - c.Cum - 2
			if i >= 8*256 {
				break
			}
			for uint64(len(bm)) <= i/8 {
				bm = append(bm, 0)
			}
			bm[i/8] |= 1 << (i % 8)
		}
	}
	b = append(b, bm...)
	return EndChunk(b, off)
}

// AppendFlowIDChunk appends a chunk whose payload is one VLU (buffer probe).
func AppendFlowIDChunk(b []byte, typ byte, flowID uint64) []byte {
	b, off := BeginChunk(b, typ)
	b = AppendVLU(b, flowID)
	return EndChunk(b, off)
}

// ParseBufferProbe decodes a 0x18 payload.
func ParseBufferProbe(p []byte) (uint64, error) {
	v, _, err := ParseVLU(p)
	if err != nil {
		return 0, ErrChunk
	}
	return v, nil
}

// FlowException (0x5e): flow ID and exception code.
type FlowException struct {
	FlowID uint64
	Code   uint64
}

// Append appends the chunk.
func (c FlowException) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkFlowException)
	b = AppendVLU(b, c.FlowID)
	b = AppendVLU(b, c.Code)
	return EndChunk(b, off)
}

// ParseFlowException decodes a 0x5e payload.
func ParseFlowException(p []byte) (FlowException, error) {
	r := Reader{B: p}
	c := FlowException{FlowID: r.VLU(), Code: r.VLU()}
	if r.Err != nil {
		return FlowException{}, ErrChunk
	}
	return c, nil
}

// Fragment (0x7f, RFC 7016 §2.3.1): flags (0x80 = more fragments), packet
// ID, fragment number, bytes. Parsed so it can be recognised; nobody in the
// Flash world sends it and we never do.
type Fragment struct {
	More     bool
	PacketID uint64
	Index    uint64
	Data     []byte
}

// Append appends the chunk.
func (c Fragment) Append(b []byte) []byte {
	b, off := BeginChunk(b, ChunkFragment)
	var f byte
	if c.More {
		f = 0x80
	}
	b = append(b, f)
	b = AppendVLU(b, c.PacketID)
	b = AppendVLU(b, c.Index)
	b = append(b, c.Data...)
	return EndChunk(b, off)
}

// ParseFragment decodes a 0x7f payload.
func ParseFragment(p []byte) (Fragment, error) {
	r := Reader{B: p}
	c := Fragment{More: r.Byte()&0x80 != 0, PacketID: r.VLU(), Index: r.VLU()}
	c.Data = r.Rest()
	if r.Err != nil {
		return Fragment{}, ErrChunk
	}
	return c, nil
}
