// Package wire holds the RTMFP wire codecs: VLUs, option lists, socket
// addresses, the packet framing (scrambled session ID, AES-128-CBC,
// checksum, common header) and every chunk type. Everything here is a pure
// function over byte slices; nothing keeps state or does I/O.
package wire

import "errors"

// Sentinel errors returned by the parsers. Callers drop the packet (or the
// chunk) and count the reason; none of them is fatal to an endpoint.
var (
	ErrShort        = errors.New("wire: truncated input")
	ErrVLUOverflow  = errors.New("wire: VLU overflows 64 bits")
	ErrOptionLength = errors.New("wire: option length overruns its container")
	ErrNoMarker     = errors.New("wire: option list has no end marker")
	ErrAddress      = errors.New("wire: malformed socket address")
	ErrPacketSize   = errors.New("wire: datagram size is not 4+16n or is out of bounds")
	ErrChecksum     = errors.New("wire: checksum mismatch")
	ErrMode         = errors.New("wire: invalid header mode")
	ErrHMAC         = errors.New("wire: packet HMAC mismatch")
	ErrSequence     = errors.New("wire: session sequence number replayed or too old")
	ErrChunk        = errors.New("wire: malformed chunk")
	ErrTooLarge     = errors.New("wire: encoded value does not fit")
)
