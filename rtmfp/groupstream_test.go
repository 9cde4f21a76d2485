package rtmfp_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// tag is one synthetic media message: AVC-like video (a header, then a
// keyframe every second and smaller frames at 25 fps) and AAC-like audio.
type tag struct {
	kind byte
	ts   uint32
	data []byte
}

// synthMedia makes seconds of media at about kbps kbit/s.
func synthMedia(seconds, kbps int) []tag {
	var out []tag
	out = append(out, tag{rtmfp.KindVideo, 0, []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f}})
	out = append(out, tag{rtmfp.KindAudio, 0, []byte{0xaf, 0, 0x12, 0x10}})
	frame := kbps * 1000 / 8 / 25 // bytes per video frame
	for f := 0; f < seconds*25; f++ {
		ts := uint32(f * 40)
		size := frame * 8 / 10
		head := []byte{0x27, 1, 0, 0, 0}
		if f%25 == 0 {
			size, head = frame*4, []byte{0x17, 1, 0, 0, 0}
		}
		v := append(head, bytes.Repeat([]byte{byte(f), byte(f >> 8), 0x5a}, size/3)...)
		out = append(out, tag{rtmfp.KindVideo, ts, v})
		if f%2 == 0 {
			a := append([]byte{0xaf, 1, byte(f), byte(f >> 8)}, bytes.Repeat([]byte{byte(f)}, 60)...)
			out = append(out, tag{rtmfp.KindAudio, ts, a})
		}
	}
	return out
}

func mediaBytes(tags []tag) int {
	n := 0
	for _, t := range tags {
		n += len(t.data)
	}
	return n
}

// publishReal writes the tags at their timestamps; it stops at the first
// error.
func publishReal(ns *rtmfp.NetStream, tags []tag) error {
	start := time.Now()
	for _, tg := range tags {
		if d := time.Duration(tg.ts)*time.Millisecond - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		var err error
		switch tg.kind {
		case rtmfp.KindVideo:
			err = ns.WriteVideo(tg.ts, tg.data)
		case rtmfp.KindAudio:
			err = ns.WriteAudio(tg.ts, tg.data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// recorder keeps what a player receives.
type recorder struct {
	mu      sync.Mutex
	got     []rtmfp.Message
	at      []time.Time
	changed chan struct{} // closed and replaced at each message
	done    chan struct{}
}

func record(ns *rtmfp.NetStream) *recorder {
	r := &recorder{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for m := range ns.Messages() {
			r.mu.Lock()
			r.got = append(r.got, m)
			r.at = append(r.at, time.Now())
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	return r
}

// waitHolds waits until the recording holds at least frac of the
// source's video and audio tags, in order, re-checking at each message.
func (r *recorder) waitHolds(t *testing.T, who string, src []tag, frac float64, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		v, nv := r.holds(src, rtmfp.KindVideo)
		a, na := r.holds(src, rtmfp.KindAudio)
		if float64(v) >= frac*float64(nv) && float64(a) >= frac*float64(na) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s holds %d/%d video, %d/%d audio tags after %v", who, v, nv, a, na, within)
		}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// holds reports how many of the source's tags of a kind the recording
// holds in order (extra tags, such as headers the publisher repeats for
// late joiners, are allowed between them).
func (r *recorder) holds(src []tag, kind byte) (found, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := 0
	for _, t := range src {
		if t.kind != kind {
			continue
		}
		total++
		for k := j; k < len(r.got); k++ {
			m := r.got[k]
			if m.Kind == kind && m.Timestamp == t.ts && bytes.Equal(m.Payload, t.data) {
				found++
				j = k + 1
				break
			}
		}
	}
	return found, total
}

// countingConn counts the bytes a member sends.
type countingConn struct {
	net.PacketConn
	sent atomic.Int64
}

func (c *countingConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.sent.Add(int64(len(b)))
	return c.PacketConn.WriteTo(b, a)
}

func groupStream(t *testing.T, nc *rtmfp.NetConnection) *rtmfp.NetStream {
	t.Helper()
	ns, err := rtmfp.NewGroupStream(nc, testSpec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func TestGroupStreamSmall(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	ms, h := startMembers(t, url, 4, groupOpts{spec: testSpec})
	h.waitAll(t, "an overlay", 20*time.Second, func(*string) bool { return overlayConnected(ms) })
	pub := groupStream(t, ms[0].nc)
	if err := pub.Publish("live"); err != nil {
		t.Fatal(err)
	}
	var recs []*recorder
	for _, m := range ms[1:] {
		p := groupStream(t, m.nc)
		if err := p.Play(context.Background(), "live"); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record(p))
	}
	tags := synthMedia(3, 300)
	if err := publishReal(pub, tags); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		r.waitHolds(t, fmt.Sprint("player ", i), tags, 1, 10*time.Second)
	}
}

// One publisher and 20 players in one group over loopback UDP through
// stratus server: every player records every tag of the source, in
// order, while the publisher sends each fragment to a bounded number of
// neighbours, its upload staying below 3x the stream's rate.
func TestGroupStreamTo20Players(t *testing.T) {
	url := startServer(t)
	noLeaks(t)
	var up *countingConn
	ms, h := startMembers(t, url, 21, groupOpts{spec: testSpec, wrap: func(i int, c net.PacketConn) net.PacketConn {
		if i != 0 {
			return c
		}
		up = &countingConn{PacketConn: c}
		return up
	}})
	h.waitAll(t, "an overlay", 30*time.Second, func(*string) bool { return overlayConnected(ms) })
	pub := groupStream(t, ms[0].nc)
	if err := pub.Publish("live"); err != nil {
		t.Fatal(err)
	}
	var recs []*recorder
	var players []*rtmfp.NetStream
	for _, m := range ms[1:] {
		p := groupStream(t, m.nc)
		if err := p.Play(context.Background(), "live"); err != nil {
			t.Fatal(err)
		}
		players = append(players, p)
		recs = append(recs, record(p))
	}
	defer func() {
		var pulls, pushes, dups uint64
		for _, p := range players {
			in := p.MulticastInfo()
			pulls += in.FragmentsRequestedFromPeers
			pushes += in.FragmentsPushedFromPeers
			dups += in.Duplicates
		}
		t.Logf("players: %d fragments pulled, %d pushed in, %d duplicates", pulls, pushes, dups)
	}()
	tags := synthMedia(8, 300)
	before := up.sent.Load()
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		last := up.sent.Load()
		lastInfo := pub.MulticastInfo()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			now := up.sent.Load()
			in := pub.MulticastInfo()
			t.Logf("publisher: %d bytes/s; pushed %d pulled %d fragments in that second", now-last, in.FragmentsPushedToPeers-lastInfo.FragmentsPushedToPeers, in.FragmentsRequestedByPeers-lastInfo.FragmentsRequestedByPeers)
			last, lastInfo = now, in
		}
	}()
	if err := publishReal(pub, tags); err != nil {
		t.Fatal(err)
	}
	close(stop)
	for i, r := range recs {
		r.waitHolds(t, fmt.Sprint("player ", i), tags, 1, 20*time.Second)
	}
	for i, m := range ms[1:4] {
		_ = m
		_ = i
	}
	sent := up.sent.Load() - before
	media := mediaBytes(tags)
	ratio := float64(sent) / float64(media)
	info := pub.MulticastInfo()
	t.Logf("20 players hold every tag %v after the start; publisher sent %d bytes for %d bytes of media (%.2fx), %d fragments pushed, %d pulled",
		time.Since(start).Round(time.Millisecond), sent, media, ratio, info.FragmentsPushedToPeers, info.FragmentsRequestedByPeers)
	if ratio >= 3 {
		t.Fatalf("the publisher's upload is %.2fx the stream", ratio)
	}
}
