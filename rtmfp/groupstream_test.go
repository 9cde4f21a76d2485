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
func publishReal(ns *rtmfp.NetStream, tags []tag) error { return publishRealFrom(ns, tags, 0) }

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
func (r *recorder) waitHolds(t testing.TB, who string, src []tag, frac float64, within time.Duration) {
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
			t.Fatalf("%s holds %d/%d video, %d/%d audio tags after %v; first missing video at %v ms; got %d messages, first video at %v ms", who, v, nv, a, na, within, r.firstMissing(src, rtmfp.KindVideo), len(r.got), r.firstVideo())
		}
	}
}

// firstMissing is the timestamp of the first source tag of a kind the
// recording lacks (-1 if none), as holds counts.
func (r *recorder) firstMissing(src []tag, kind byte) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := 0
	for _, t := range src {
		if t.kind != kind {
			continue
		}
		found := false
		for k := j; k < len(r.got); k++ {
			m := r.got[k]
			if m.Kind == kind && m.Timestamp == t.ts && bytes.Equal(m.Payload, t.data) {
				j, found = k+1, true
				break
			}
		}
		if !found {
			return int64(t.ts)
		}
	}
	return -1
}

func (r *recorder) firstVideo() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.got {
		if m.Kind == rtmfp.KindVideo {
			return int64(m.Timestamp)
		}
	}
	return -1
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

func groupStream(t testing.TB, nc *rtmfp.NetConnection) *rtmfp.NetStream {
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
		if t.Failed() {
			for i, p := range players {
				mi := p.MulticastInfo()
				mi.BytesFromPeer = nil
				t.Logf("player %d: %+v\n  %s", i, mi, rtmfp.StreamState(p))
			}
		}
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

// gaps is the longest time between two messages a recorder got within
// [from, to].
func (r *recorder) longestGap(from, to time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range r.at {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// multicast starts a group of n members, the first publishing "live"
// (with settings) and the next playing it (all of them unless playing
// says how many).
func multicast(t testing.TB, n, playing int, settings rtmfp.MulticastSettings, o groupOpts) (pub *rtmfp.NetStream, players []*rtmfp.NetStream, recs []*recorder, ms []*member) {
	t.Helper()
	url := startServer(t)
	ms, h := startMembers(t, url, n, o)
	h.waitAll(t, "an overlay", 60*time.Second, func(*string) bool { return overlayConnected(ms) })
	pub = groupStream(t, ms[0].nc)
	pub.SetMulticast(settings)
	if err := pub.Publish("live"); err != nil {
		t.Fatal(err)
	}
	if playing == 0 {
		playing = n - 1
	}
	for _, m := range ms[1 : 1+playing] {
		p := groupStream(t, m.nc)
		if err := p.Play(context.Background(), "live"); err != nil {
			t.Fatal(err)
		}
		players = append(players, p)
		recs = append(recs, record(p))
	}
	return pub, players, recs, ms
}

// With 10% of the datagrams lost in each direction on every member's
// socket, players still record more than 95% of the video frames.
func TestGroupStreamUnderLoss(t *testing.T) {
	noLeaks(t)
	pub, players, recs, _ := multicast(t, 9, 0, rtmfp.MulticastSettings{}, groupOpts{spec: testSpec, loss: 0.10})
	defer func() {
		if t.Failed() {
			for i, p := range players {
				t.Logf("player %d: %+v\n  %s", i, p.MulticastInfo(), rtmfp.StreamState(p))
			}
		}
	}()
	tags := synthMedia(6, 300)
	if err := publishReal(pub, tags); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		r.waitHolds(t, fmt.Sprint("player ", i), tags, 0.95, 20*time.Second)
	}
	for i, r := range recs {
		v, nv := r.holds(tags, rtmfp.KindVideo)
		t.Logf("player %d: %d/%d video frames", i, v, nv)
	}
}

// A player that starts while the stream runs gets video from the next
// keyframe (after its AVC header), within 2 s.
func TestGroupStreamLateJoiner(t *testing.T) {
	noLeaks(t)
	// A short window, so that the stream's beginning is soon gone.
	pub, _, _, ms := multicast(t, 4, 2, rtmfp.MulticastSettings{WindowDuration: 2 * time.Second}, groupOpts{spec: testSpec})
	tags := synthMedia(9, 300)
	done := make(chan error, 1)
	go func() { done <- publishReal(pub, tags) }()
	time.Sleep(5 * time.Second)
	late := groupStream(t, ms[3].nc)
	start := time.Now()
	if err := late.Play(context.Background(), "live"); err != nil {
		t.Fatal(err)
	}
	var first rtmfp.Message
	timeout := time.After(5 * time.Second)
	for first.Payload == nil {
		select {
		case m := <-late.Messages():
			if m.Kind == rtmfp.KindVideo {
				first = m
			}
		case <-timeout:
			t.Fatal("no video for the late player")
		}
	}
	took := time.Since(start)
	isHeader := first.Payload[0] == 0x17 && first.Payload[1] == 0
	if !isHeader && first.Payload[0]>>4 != 1 {
		t.Fatalf("the late player's first video is not a keyframe: %x", first.Payload[:2])
	}
	if first.Timestamp < 4000 {
		t.Fatalf("the late player started at %d ms, from the stream's beginning", first.Timestamp)
	}
	if took > 2*time.Second {
		t.Fatalf("first video after %v", took)
	}
	t.Logf("late player: first video (%s, at %d ms of the stream) %v after play", map[bool]string{true: "AVC header", false: "keyframe"}[isHeader], first.Timestamp, took.Round(time.Millisecond))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A player that relays to others leaves mid-stream: the others do not
// stall for more than 2 s and still record the stream.
func TestGroupStreamRelayLeaves(t *testing.T) {
	noLeaks(t)
	pub, players, recs, ms := multicast(t, 10, 0, rtmfp.MulticastSettings{}, groupOpts{spec: testSpec})
	tags := synthMedia(7, 300)
	done := make(chan error, 1)
	go func() { done <- publishReal(pub, tags) }()
	time.Sleep(3 * time.Second)
	relay, most := -1, uint64(0)
	for i, p := range players {
		if n := p.MulticastInfo().FragmentsPushedToPeers; n > most {
			relay, most = i, n
		}
	}
	if relay < 0 {
		t.Fatal("no player relays")
	}
	left := time.Now()
	players[relay].Close()
	ms[relay+1].nc.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	worst := time.Duration(0)
	for i, r := range recs {
		if i == relay {
			continue
		}
		r.waitHolds(t, fmt.Sprint("player ", i), tags, 0.98, 20*time.Second)
		gap := r.longestGap(left, left.Add(3*time.Second))
		if gap > 2*time.Second {
			t.Errorf("player %d stalled %v after the relay left", i, gap)
		}
		worst = max(worst, gap)
	}
	t.Logf("relay %d (%d fragments pushed on) left; the longest gap at another player in the next 3 s: %v", relay, most, worst.Round(time.Millisecond))
}
