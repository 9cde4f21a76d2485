package wire

import (
	"encoding/binary"
)

// Header flag bits (RFC 7016 §2.2.4).
const (
	FlagTimeCritical        byte = 0x80
	FlagTimeCriticalReverse byte = 0x40
	FlagTimestamp           byte = 0x08
	FlagTimestampEcho       byte = 0x04
	ModeMask                byte = 0x03
)

// Header modes.
const (
	ModeInvalid   byte = 0
	ModeInitiator byte = 1
	ModeResponder byte = 2
	ModeStartup   byte = 3
)

// Size limits (reference §1.8).
const (
	// MaxSendSize is the largest datagram we send: Flash-family peers ignore
	// anything bigger.
	MaxSendSize = 1192
	// MaxRecvSize is the largest datagram we accept. rtmfp-cpp sends startup
	// packets of up to 4256 bytes (large certificates); round up to blocks.
	MaxRecvSize = 4 + 4256 + 16 + 32
	// MinPacketSize: 4-byte scrambled SID and one AES block.
	MinPacketSize = 20
)

// Header is the RTMFP common header.
type Header struct {
	Flags         byte // TC, TCR and mode bits; TS/TSE bits follow HasTimestamp/HasEcho
	Timestamp     uint16
	TimestampEcho uint16
}

// Mode returns the header mode.
func (h Header) Mode() byte { return h.Flags & ModeMask }

// HasTimestamp reports the TS flag.
func (h Header) HasTimestamp() bool { return h.Flags&FlagTimestamp != 0 }

// HasEcho reports the TSE flag.
func (h Header) HasEcho() bool { return h.Flags&FlagTimestampEcho != 0 }

// AppendHeader appends the flags byte and the timestamps its flags announce.
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, h.Flags&^0x30)
	if h.HasTimestamp() {
		b = binary.BigEndian.AppendUint16(b, h.Timestamp)
	}
	if h.HasEcho() {
		b = binary.BigEndian.AppendUint16(b, h.TimestampEcho)
	}
	return b
}

// ParseHeader decodes the common header at the start of a decrypted packet
// (after the checksum) and returns the header and its length. Every legal
// flag combination is accepted, including packets without a timestamp.
func ParseHeader(b []byte) (Header, int, error) {
	if len(b) < 1 {
		return Header{}, 0, ErrShort
	}
	h := Header{Flags: b[0]}
	if h.Mode() == ModeInvalid {
		return Header{}, 0, ErrMode
	}
	n := 1
	if h.HasTimestamp() {
		if len(b) < n+2 {
			return Header{}, 0, ErrShort
		}
		h.Timestamp = binary.BigEndian.Uint16(b[n:])
		n += 2
	}
	if h.HasEcho() {
		if len(b) < n+2 {
			return Header{}, 0, ErrShort
		}
		h.TimestampEcho = binary.BigEndian.Uint16(b[n:])
		n += 2
	}
	return h, n, nil
}

// Checksum is RTMFP's 16-bit ones'-complement sum over b (a trailing odd
// byte is added as the low-order byte).
func Checksum(b []byte) uint16 {
	var sum uint64
	i := 0
	// Sum 8 bytes at a time: four 16-bit words per step in a 64-bit
	// accumulator cannot overflow for any datagram size we handle.
	for ; i+8 <= len(b); i += 8 {
		v := binary.BigEndian.Uint64(b[i:])
		sum += v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
	}
	for ; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if i < len(b) {
		sum += uint64(b[i])
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// PadLen is the number of 0xff bytes that make n plaintext bytes a whole
// number of AES blocks.
func PadLen(n int) int { return (16 - n%16) % 16 }

// ScrambleSID computes the on-wire session ID word from a session ID and the
// first 8 bytes of ciphertext (its own inverse).
func ScrambleSID(sid uint32, ciphertext []byte) uint32 {
	return sid ^ binary.BigEndian.Uint32(ciphertext[0:4]) ^ binary.BigEndian.Uint32(ciphertext[4:8])
}

// SessionID recovers the session ID of a received datagram. It checks only
// what it needs; Open validates the rest.
func SessionID(datagram []byte) (uint32, error) {
	if len(datagram) < 12 {
		return 0, ErrPacketSize
	}
	return binary.BigEndian.Uint32(datagram[0:4]) ^ binary.BigEndian.Uint32(datagram[4:8]) ^ binary.BigEndian.Uint32(datagram[8:12]), nil
}
