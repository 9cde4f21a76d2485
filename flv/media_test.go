package flv

import "testing"

func TestMediaHelpers(t *testing.T) {
	tests := []struct {
		name             string
		data             []byte
		audioSeq, vidSeq bool
		key              bool
	}{
		{"empty", nil, false, false, false},
		{"AAC sequence header", []byte{0xaf, 0x00, 0x12, 0x10}, true, false, false},
		{"AAC raw frame", []byte{0xaf, 0x01, 0x21}, false, false, false},
		{"AAC header byte only", []byte{0xaf}, false, false, false},
		{"MP3", []byte{0x2f, 0x00, 0xff}, false, false, false},
		{"Enhanced audio SequenceStart", []byte{0x90, 'O', 'p', 'u', 's', 1}, true, true, true},
		{"Enhanced audio CodedFrames", []byte{0x91, 'O', 'p', 'u', 's', 1}, false, false, true},
		{"Enhanced audio, no FourCC", []byte{0x90, 'O'}, false, false, true},
		{"AVC sequence header", []byte{0x17, 0x00, 0, 0, 0, 1}, false, true, true},
		{"AVC keyframe NALUs", []byte{0x17, 0x01, 0, 0, 0}, false, false, true},
		{"AVC inter frame", []byte{0x27, 0x01, 0, 0, 0}, false, false, false},
		{"AVC end of sequence", []byte{0x17, 0x02, 0, 0, 0}, false, false, true},
		{"legacy HEVC sequence header", []byte{0x1c, 0x00, 0, 0, 0}, false, true, true},
		{"H.263 keyframe", []byte{0x12, 0x00, 0x84}, false, false, true},
		{"H.263 inter frame", []byte{0x22, 0x00, 0x84}, false, false, false},
		{"video command frame", []byte{0x57, 0x01}, false, false, false},
		{"Enhanced HEVC SequenceStart", []byte{0x90, 'h', 'v', 'c', '1', 1}, true, true, true},
		{"Enhanced AV1 key CodedFrames", []byte{0x91, 'a', 'v', '0', '1', 1}, false, false, true},
		{"Enhanced inter CodedFramesX", []byte{0xa3, 'a', 'v', '0', '1', 1}, false, false, false},
		{"Enhanced video, no FourCC", []byte{0x90, 'h', 'v'}, false, false, true},
	}
	// Some rows are audio and video at once (0x90 means SoundFormat 9 and
	// an Enhanced key frame), which is fine: callers ask by tag type.
	for _, tc := range tests {
		if got := IsAudioSequenceHeader(tc.data); got != tc.audioSeq {
			t.Errorf("%s: IsAudioSequenceHeader = %v", tc.name, got)
		}
		if got := IsVideoSequenceHeader(tc.data); got != tc.vidSeq {
			t.Errorf("%s: IsVideoSequenceHeader = %v", tc.name, got)
		}
		if got := IsKeyframe(tc.data); got != tc.key {
			t.Errorf("%s: IsKeyframe = %v", tc.name, got)
		}
	}
}
