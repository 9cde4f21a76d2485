// Package flv reads and writes FLV files (Adobe FLV spec v10.1, Annex E).
//
// A publisher reads an .flv with Reader and sends each tag's body as an
// RTMFP audio, video or data message stamped with the tag's timestamp; a
// player does the reverse with Writer. Tag bodies are the same bytes in both
// worlds, so this package treats them as opaque and only offers a few helpers
// (IsKeyframe, Is*SequenceHeader) that players need to start decoding.
//
// Files are untrusted input: Reader never panics, allocates at most the
// declared tag size (and at most ReaderOptions.MaxTagSize), and grows its
// buffer only as data actually arrives, so a lying size field on a short
// input costs nothing.
package flv

// Tag types (the low 5 bits of a tag's first byte). They equal the RTMP/RTMFP
// message type numbers for audio, video and AMF0 data, which is why a tag
// body can be sent as a message unchanged.
const (
	TagAudio  = 8
	TagVideo  = 9
	TagScript = 18
)

// Sizes fixed by the format.
const (
	headerSize    = 9  // 'F' 'L' 'V', version, flags, u32 data offset
	tagHeaderSize = 11 // type, u24 size, u24 timestamp, u8 ext, u24 stream ID
	prevSizeLen   = 4  // u32 PreviousTagSize after the header and every tag

	// MaxDataSize is the largest tag body the u24 size field can describe.
	MaxDataSize = 0xFFFFFF

	flagAudio = 0x04
	flagVideo = 0x01

	filterBit = 0x20 // tag is encrypted / pre-processed (FLV 10.1 "Filter")
	typeMask  = 0x1F
)

// Header is the part of the file header that carries meaning: the
// audio/video presence flags. Players use them only as hints.
type Header struct {
	HasAudio, HasVideo bool
}

// Tag is one FLV tag. Timestamp is in milliseconds and is the full 32-bit
// value (the u24 field plus the extended byte as the upper 8 bits). Data is
// the tag body, i.e. exactly the payload of the matching RTMFP message.
type Tag struct {
	Type      uint8
	Timestamp uint32
	Data      []byte
}
