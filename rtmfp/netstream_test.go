package rtmfp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

func startServer(t testing.TB) string {
	t.Helper()
	return servertest.Start(t, server.Config{Open: true}).URL("testkey")
}

func dial(t *testing.T, url string) *rtmfp.NetConnection {
	t.Helper()
	nc, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 5 * time.Second, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// waitStatus waits for a status code on a stream, failing on timeout.
func waitStatus(t *testing.T, ns *rtmfp.NetStream, code string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case st := <-ns.Status():
			if st.Code == code {
				return
			}
		case <-timeout:
			t.Fatalf("no %s", code)
		}
	}
}

func publisher(t *testing.T, nc *rtmfp.NetConnection, name string) *rtmfp.NetStream {
	t.Helper()
	ns, err := rtmfp.NewNetStream(nc, rtmfp.DirectConnections)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Publish(name); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, ns, rtmfp.PublishStart)
	return ns
}

func subscribe(t *testing.T, nc *rtmfp.NetConnection, pub *rtmfp.NetConnection, name string) *rtmfp.NetStream {
	t.Helper()
	ns, err := rtmfp.NewNetStream(nc, pub.NearID())
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Play(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestPublishPlay(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	pub := publisher(t, a, "cam")
	accepted := make(chan string, 10)
	pub.OnPeerConnect(func(s *rtmfp.NetStream) bool { accepted <- s.FarID(); return true })
	sub := subscribe(t, b, a, "cam")
	waitStatus(t, sub, rtmfp.StreamConnectSuccess)
	waitStatus(t, sub, rtmfp.PlayReset)
	waitStatus(t, sub, rtmfp.PlayStart)
	waitStatus(t, pub, rtmfp.StreamConnectSuccess)
	if ps := pub.PeerStreams(); len(ps) != 1 || ps[0].FarID() != b.NearID() || len(accepted) != 1 || <-accepted != b.NearID() {
		t.Fatalf("peerStreams %v accepted %v", ps, accepted)
	}
	for i := range 50 {
		pub.WriteAudio(uint32(i*20), []byte{0xaf, 1, byte(i)})
		pub.WriteVideo(uint32(i*40), []byte{0x17, 1, byte(i), 0, 0})
	}
	var audio, video int
	timeout := time.After(10 * time.Second)
	for audio < 50 || video < 50 {
		select {
		case m := <-sub.Messages():
			switch m.Kind {
			case rtmfp.KindAudio:
				if m.Timestamp != uint32(audio*20) || m.Payload[2] != byte(audio) {
					t.Fatalf("audio %d: ts %d payload %x", audio, m.Timestamp, m.Payload)
				}
				audio++
			case rtmfp.KindVideo:
				if m.Timestamp != uint32(video*40) || m.Payload[2] != byte(video) {
					t.Fatalf("video %d: ts %d", video, m.Timestamp)
				}
				video++
			}
		case <-timeout:
			t.Fatalf("got %d audio, %d video", audio, video)
		}
	}
}

func TestRefusedSubscriber(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	pub := publisher(t, a, "private")
	pub.OnPeerConnect(func(*rtmfp.NetStream) bool { return false })
	sub := subscribe(t, b, a, "private")
	waitStatus(t, sub, rtmfp.StreamConnectRejected)
	waitStatus(t, sub, rtmfp.StreamConnectClosed)
	pub.WriteVideo(0, []byte{0x17, 1})
	select {
	case m, ok := <-sub.Messages():
		if ok {
			t.Fatalf("refused subscriber got %+v", m)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if len(pub.PeerStreams()) != 0 {
		t.Fatal("refused subscriber in peerStreams")
	}
}

func TestMaxPeerConnections(t *testing.T) {
	url := startServer(t)
	a := dial(t, url)
	pub := publisher(t, a, "show")
	var subs []*rtmfp.NetStream
	for i := range 9 {
		c := dial(t, url)
		s := subscribe(t, c, a, "show")
		subs = append(subs, s)
		if i < 8 {
			waitStatus(t, s, rtmfp.PlayStart)
		}
	}
	waitStatus(t, subs[8], rtmfp.StreamConnectRejected)
	if n := len(pub.PeerStreams()); n != 8 {
		t.Fatalf("%d subscribers, want 8", n)
	}
	if a.PeerConnections() != 8 {
		t.Fatalf("%d peer connections", a.PeerConnections())
	}
}

func TestSendToAllAndToOne(t *testing.T) {
	url := startServer(t)
	a := dial(t, url)
	pub := publisher(t, a, "chat")
	type got struct {
		who  int
		args []any
	}
	calls := make(chan got, 100)
	var ids []string // subscriber i's peer ID
	for i := range 2 {
		c := dial(t, url)
		s := subscribe(t, c, a, "chat")
		s.Handle("onChat", func(args []any) { calls <- got{i, args} })
		waitStatus(t, s, rtmfp.PlayStart)
		ids = append(ids, c.NearID())
	}
	for i := range 5 {
		pub.Send("onChat", fmt.Sprintf("all %d", i))
	}
	one := pub.PeerStreams()[0]
	one.Send("onChat", "just you")
	want := map[int][]string{}
	timeout := time.After(10 * time.Second)
	for n := 0; n < 11; n++ {
		select {
		case c := <-calls:
			want[c.who] = append(want[c.who], c.args[0].(string))
		case <-timeout:
			t.Fatalf("calls so far %v", want)
		}
	}
	for who, msgs := range want {
		for i := range 5 {
			if msgs[i] != fmt.Sprintf("all %d", i) {
				t.Fatalf("subscriber %d got %v (out of order?)", who, msgs)
			}
		}
	}
	target := 0
	if one.FarID() == ids[1] {
		target = 1
	}
	if len(want[target]) != 6 || want[target][5] != "just you" || len(want[1-target]) != 5 {
		t.Fatalf("send to one (subscriber %d): %v", target, want)
	}
}

func TestPublisherCloseAndConnectionClose(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	pub := publisher(t, a, "live")
	sub := subscribe(t, b, a, "live")
	waitStatus(t, sub, rtmfp.PlayStart)
	pub.Close()
	waitStatus(t, sub, rtmfp.PlayUnpublishNotify)
	waitStatus(t, sub, rtmfp.StreamConnectClosed)

	// Closing a NetConnection closes every stream made from it.
	pub2 := publisher(t, a, "live2")
	sub2 := subscribe(t, b, a, "live2")
	waitStatus(t, sub2, rtmfp.PlayStart)
	b.Close()
	select {
	case <-sub2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber stream still open after its NetConnection closed")
	}
	waitStatus(t, pub2, rtmfp.StreamConnectClosed)
}

func TestUnconnectedPeerStreams(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	sub := subscribe(t, b, a, "later")
	waitStatus(t, sub, rtmfp.StreamConnectSuccess)
	// Flash has no event for a subscriber parked in unconnectedPeerStreams:
	// look at the list until it shows up.
	deadline := time.Now().Add(5 * time.Second)
	for len(a.UnconnectedPeerStreams()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if u := a.UnconnectedPeerStreams(); len(u) != 1 || u[0].Name() != "later" || u[0].FarID() != b.NearID() {
		t.Fatalf("unconnectedPeerStreams %v", u)
	}
	publisher(t, a, "later")
	waitStatus(t, sub, rtmfp.PlayStart)
	if len(a.UnconnectedPeerStreams()) != 0 {
		t.Fatal("still unconnected")
	}
}

func TestUnreachablePublisherFails(t *testing.T) {
	url := startServer(t)
	b, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ns, _ := rtmfp.NewNetStream(b, "ab"+b.NearID()[2:]) // nobody has this ID
	start := time.Now()
	if err := ns.Play(context.Background(), "x"); err == nil {
		t.Fatal("played an unknown peer")
	}
	waitStatus(t, ns, rtmfp.StreamConnectFailed)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failure took %v", d)
	}
}

// A peer that opens play flows without end cannot grow
// unconnectedPeerStreams (or our goroutines) without bound: past 32 open
// play flows the rest are refused.
func TestPlayFlowsPerPeerAreBounded(t *testing.T) {
	url := startServer(t)
	a, b := dial(t, url), dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := b.DialPeer(ctx, a.NearID())
	if err != nil {
		t.Fatal(err)
	}
	play, _ := flash.AppendCommand(nil, "play", 0, nil, "nothing-published")
	var refused int
	writers := make([]*rtmfp.PeerWriter, 40)
	for i := range writers {
		w, err := p.OpenFlow(flash.TCMetadata(uint64(2000000+i), false))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(play)
		writers[i] = w
	}
	for _, w := range writers[32:] {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		if w.WaitComplete(wctx) != nil && wctx.Err() == nil {
			refused++ // rejected by the far end, not timed out
		}
		wcancel()
	}
	// The 32 accepted ones are parked as their play commands are read.
	for deadline := time.Now().Add(5 * time.Second); len(a.UnconnectedPeerStreams()) < 32 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(a.UnconnectedPeerStreams()); n != 32 || refused != 8 {
		t.Fatalf("%d parked in unconnectedPeerStreams, %d refused; want 32 and 8", n, refused)
	}
}
