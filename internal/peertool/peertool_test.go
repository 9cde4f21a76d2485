package peertool

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stratus-rtmfp/stratus/flv"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// needFFmpeg skips without ffmpeg, except in CI, which installs it.
func needFFmpeg(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is missing in CI: .ci/run installs it")
		}
		t.Skip("ffmpeg not installed")
	}
}

func readTags(t *testing.T, path string) []flv.Tag {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := flv.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var tags []flv.Tag
	for {
		tg, err := r.Next()
		if err == io.EOF {
			return tags
		}
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, tg)
	}
}

// byType keeps the tags of one type in order: audio, video and data travel
// on separate flows, so only each kind's own order is preserved.
func byType(tags []flv.Tag, typ uint8) []flv.Tag {
	var out []flv.Tag
	for _, t := range tags {
		if t.Type == typ {
			out = append(out, t)
		}
	}
	return out
}

// makeFLV makes a 3-second FLV with ffmpeg (H.264 and AAC, or Flash's
// own codecs where libx264 is missing).
func makeFLV(t *testing.T, dir string) string {
	t.Helper()
	needFFmpeg(t)
	in := filepath.Join(dir, "in.flv")
	gen := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "3",
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "baseline", "-g", "25", "-c:a", "aac", "-f", "flv", in)
	if out, err := gen.CombinedOutput(); err != nil {
		// Some ffmpeg builds lack libx264: fall back to Flash's own codecs.
		gen = exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "3", "-c:v", "flv1", "-c:a", "mp3", "-f", "flv", in)
		if out2, err := gen.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s\n%s", err, out, out2)
		}
	}
	return in
}

// ffmpegClean checks a recording with ffmpeg -v error -xerror.
func ffmpegClean(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-xerror", "-i", path, "-f", "null", "-")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg rejects the recording %s: %v\n%s", path, err, msg)
	}
}

func TestFLVPeerToPeerThroughServer(t *testing.T) {
	dir := t.TempDir()
	in := makeFLV(t, dir)
	srv := servertest.Start(t, server.Config{Open: true})
	url := srv.URL("key")
	ctx := context.Background()
	pubNC, err := rtmfp.Connect(ctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer pubNC.Close()
	playNC, err := rtmfp.Connect(ctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer playNC.Close()

	pubErr := make(chan error, 1)
	go func() { pubErr <- Publish(ctx, pubNC, in, PublishOptions{Name: "cam"}) }()
	before := srv.EngineStats()
	var rec bytes.Buffer
	st, err := Play(ctx, playNC, &rec, PlayOptions{Peer: pubNC.NearID(), Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	after := srv.EngineStats()
	out := filepath.Join(dir, "out.flv")
	os.WriteFile(out, rec.Bytes(), 0o644)

	src, got := readTags(t, in), readTags(t, out)
	for _, typ := range []uint8{flv.TagAudio, flv.TagVideo, flv.TagScript} {
		a, b := byType(src, typ), byType(got, typ)
		if len(a) != len(b) {
			t.Fatalf("type %d: %d tags sent, %d recorded", typ, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i].Data, b[i].Data) || typ != flv.TagScript && a[i].Timestamp != b[i].Timestamp {
				t.Fatalf("type %d tag %d differs (ts %d vs %d)", typ, i, a[i].Timestamp, b[i].Timestamp)
			}
		}
	}
	ffmpegClean(t, out)
	media := int64(0)
	for _, tg := range src {
		media += int64(len(tg.Data))
	}
	if in := int64(after.BytesIn - before.BytesIn); in*10 > media {
		t.Fatalf("the server received %d bytes while %d bytes of media went peer to peer", in, media)
	}
	t.Logf("%d tags, %d bytes recorded; server received %d bytes meanwhile", st.Tags, st.Bytes, after.BytesIn-before.BytesIn)
}
