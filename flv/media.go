package flv

// Helpers that look at the first bytes of audio and video tag bodies (FLV
// 10.1 E.4.2, E.4.3, and Enhanced RTMP's extended headers). A player needs
// them because a decoder cannot start before the codec's sequence header and
// should start on a keyframe; a relay needs them to cache what a late joiner
// must receive first.

const (
	soundFormatAAC      = 10
	soundFormatExHeader = 9 // Enhanced RTMP v2: a FourCC follows, low nibble is the packet type

	codecAVC        = 7
	codecHEVCLegacy = 12 // non-standard but widespread pre-Enhanced-RTMP HEVC

	videoExHeader   = 0x80 // Enhanced RTMP: a FourCC follows, low nibble is the packet type
	frameKey        = 1
	sequenceStart   = 0 // AACPacketType, AVCPacketType and Enhanced PacketType
	fourCCLen       = 4
	exHeaderMinSize = 1 + fourCCLen
)

// IsAudioSequenceHeader reports whether an audio tag body is a codec
// configuration record: AAC (sound format 10) with AACPacketType 0, or an
// Enhanced RTMP audio header with packet type SequenceStart.
func IsAudioSequenceHeader(data []byte) bool {
	if len(data) < 2 {
		return false
	}
	switch data[0] >> 4 {
	case soundFormatAAC:
		return data[1] == sequenceStart
	case soundFormatExHeader:
		return len(data) >= exHeaderMinSize && data[0]&0x0F == sequenceStart
	}
	return false
}

// IsVideoSequenceHeader reports whether a video tag body is a codec
// configuration record: AVC (codec 7) or legacy HEVC (codec 12) with
// AVCPacketType 0, or an Enhanced RTMP video header with packet type
// SequenceStart. Enhanced multitrack bodies are not inspected.
func IsVideoSequenceHeader(data []byte) bool {
	if len(data) < 2 {
		return false
	}
	if data[0]&videoExHeader != 0 {
		return len(data) >= exHeaderMinSize && data[0]&0x0F == sequenceStart
	}
	switch data[0] & 0x0F {
	case codecAVC, codecHEVCLegacy:
		return data[1] == sequenceStart
	}
	return false
}

// IsKeyframe reports whether a video tag body has frame type 1 (keyframe),
// where a decoder can start. It handles both the legacy header and the
// Enhanced RTMP one, whose frame type is 3 bits below the ExHeader bit.
func IsKeyframe(data []byte) bool {
	return len(data) >= 1 && (data[0]>>4)&0x07 == frameKey
}
