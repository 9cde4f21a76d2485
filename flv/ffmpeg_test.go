package flv

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFFmpegFiles checks the package against files from a real muxer:
// ffmpeg writes an FLV, we copy it tag by tag, and the copy must equal the
// original and decode cleanly. Skipped without ffmpeg on PATH.
func TestFFmpegFiles(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not on PATH")
	}
	out, err := exec.Command(ffmpeg, "-hide_banner", "-encoders").Output()
	if err != nil {
		t.Fatalf("ffmpeg -encoders: %v", err)
	}
	encoders := map[string]bool{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			encoders[f[1]] = true
		}
	}

	variants := []struct {
		name     string
		codecs   []string
		encoders []string // ffmpeg encoder names the codecs need
		avc      bool
	}{
		{"flv1+mp3", []string{"-c:v", "flv1", "-c:a", "mp3"}, []string{"flv", "libmp3lame"}, false},
		{"h264+aac", []string{"-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "baseline", "-c:a", "aac"},
			[]string{"libx264", "aac"}, true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for _, e := range v.encoders {
				if !encoders[e] {
					t.Skipf("ffmpeg lacks encoder %s", e)
				}
			}
			dir := t.TempDir()
			orig := filepath.Join(dir, "out.flv")
			args := []string{"-hide_banner", "-loglevel", "error",
				"-f", "lavfi", "-i", "testsrc=size=160x120:rate=15",
				"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
				"-t", "2"}
			args = append(append(args, v.codecs...), "-f", "flv", orig)
			runFFmpeg(t, ffmpeg, args...)

			origBytes, err := os.ReadFile(orig)
			if err != nil {
				t.Fatal(err)
			}
			h, tags, err := readAll(bytes.NewReader(origBytes), ReaderOptions{})
			if err != io.EOF {
				t.Fatalf("reading ffmpeg's file: %v after %d tags", err, len(tags))
			}
			checkFFmpegTags(t, tags, v.avc)

			copyBytes := writeAll(t, h, tags)
			copyPath := filepath.Join(dir, "copy.flv")
			if err := os.WriteFile(copyPath, copyBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			// ffmpeg writes the canonical 9-byte header, so the copy should be
			// the same file; compare the tag section regardless.
			body := 9 + 4
			if len(origBytes) >= 9 {
				body = int(binary.BigEndian.Uint32(origBytes[5:9])) + 4
			}
			if !bytes.Equal(copyBytes[13:], origBytes[body:]) {
				t.Fatal("copied tag section differs from the original")
			}
			if body == 13 && !bytes.Equal(copyBytes, origBytes) {
				t.Errorf("header differs: % x vs % x", copyBytes[:13], origBytes[:13])
			}
			runFFmpeg(t, ffmpeg, "-hide_banner", "-v", "error", "-xerror", "-i", copyPath, "-f", "null", "-")
		})
	}
}

func runFFmpeg(t *testing.T, ffmpeg string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkFFmpegTags sanity-checks the tag mix and the media helpers on real
// encoder output.
func checkFFmpegTags(t *testing.T, tags []Tag, avc bool) {
	t.Helper()
	count := map[uint8]int{}
	var firstAudio, firstVideo, firstFrame []byte
	for _, tag := range tags {
		count[tag.Type]++
		switch tag.Type {
		case TagAudio:
			if firstAudio == nil {
				firstAudio = tag.Data
			}
		case TagVideo:
			if firstVideo == nil {
				firstVideo = tag.Data
			} else if firstFrame == nil {
				firstFrame = tag.Data
			}
		}
	}
	if count[TagScript] < 1 || count[TagAudio] < 10 || count[TagVideo] < 10 {
		t.Fatalf("unexpected tag mix: %v", count)
	}
	if avc {
		if !IsVideoSequenceHeader(firstVideo) || !IsAudioSequenceHeader(firstAudio) {
			t.Errorf("first video/audio tags are not sequence headers: % x / % x", firstVideo[:2], firstAudio[:2])
		}
		if !IsKeyframe(firstFrame) || IsVideoSequenceHeader(firstFrame) {
			t.Errorf("first AVC frame is not a keyframe: % x", firstFrame[:2])
		}
	} else {
		if IsVideoSequenceHeader(firstVideo) || IsAudioSequenceHeader(firstAudio) {
			t.Errorf("sequence header reported for FLV1/MP3")
		}
		if !IsKeyframe(firstVideo) {
			t.Errorf("first FLV1 frame is not a keyframe: % x", firstVideo[:1])
		}
	}
}
