package peertool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/flv"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// What "stratus peer post" and "stratus peer listen --group" do: the
// listeners print every post once, with its text, and the neighbour
// events; post exits once it stayed its time.
func TestGroupPostAndListen(t *testing.T) {
	srv := servertest.Start(t, server.Config{Open: true})
	url := srv.URL("key")
	spec := "G:027f02010101000103010c050e74657374011b00"
	connect := func(maxNeighbors int) *rtmfp.NetConnection {
		nc, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", MaxGroupNeighbors: maxNeighbors})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Two listeners, neighbours; the first takes no other neighbour (the
	// server introduces the poster to both), so it gets the posts only as
	// the second relays them.
	l1, l2 := connect(1), connect(0)
	lines := make(chan map[string]any, 100)
	listen := func(nc *rtmfp.NetConnection, who string, neighbors []string) {
		r, w := io.Pipe()
		go func() {
			GroupListen(ctx, nc, w, GroupOptions{Group: spec, Neighbors: neighbors})
			w.Close()
		}()
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Errorf("%s printed %q: %v", who, sc.Text(), err)
					continue
				}
				m["who"] = who
				lines <- m
			}
		}()
	}
	listen(l1, "l1", nil)
	listen(l2, "l2", []string{l1.NearID()})
	wait := func(what string, ok func(map[string]any) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m := <-lines:
				if ok(m) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s", what)
			}
		}
	}
	wait("neighbourship between the listeners", func(m map[string]any) bool {
		return m["who"] == "l1" && m["event"] == rtmfp.GroupNeighborConnect && m["peerID"] == l2.NearID()
	})
	p := connect(0)
	done := make(chan error, 1)
	go func() {
		done <- GroupPost(ctx, p, io.Discard, "hello group", GroupOptions{Group: spec, Neighbors: []string{l2.NearID()},
			Wait: 10 * time.Second, Count: 3, Interval: 50 * time.Millisecond, Stay: time.Second})
	}()
	posts := map[string]map[string]bool{"l1": {}, "l2": {}}
	timeout := time.After(15 * time.Second)
	for len(posts["l1"]) < 3 || len(posts["l2"]) < 3 {
		select {
		case m := <-lines:
			if m["who"] == "l1" && m["event"] == rtmfp.GroupNeighborConnect && m["peerID"] == p.NearID() {
				t.Fatal("the poster became l1's neighbour: nothing is relayed")
			}
			if m["event"] != rtmfp.GroupPostingNotify {
				continue
			}
			who, id := m["who"].(string), m["messageID"].(string)
			if m["message"] != "hello group" || posts[who][id] {
				t.Fatalf("%s: %v (seen: %v)", who, m, posts[who][id])
			}
			posts[who][id] = true
		case <-timeout:
			t.Fatalf("posts seen: %v", posts)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Without any neighbour, post gives up after its wait.
	lonely := connect(0)
	err := GroupPost(ctx, lonely, io.Discard, "x", GroupOptions{Group: "G:027f02010101000103010c060e616c6f6e65011b00", Wait: 200 * time.Millisecond})
	if err != ErrNoNeighbor {
		t.Fatal(err)
	}
}

// What "stratus peer publish --group" and "stratus peer play --group" do:
// an ffmpeg-made FLV published into a group is recorded by three players
// whole (every source tag, in order; the publisher's repeated codec
// headers in between) as FLV files ffmpeg reads without error.
func TestGroupFLV(t *testing.T) {
	dir := t.TempDir()
	in := makeFLV(t, dir)
	srv := servertest.Start(t, server.Config{Open: true})
	url := srv.URL("key")
	spec := "G:027f02010101000103010c050e74657374011b00"
	connect := func() *rtmfp.NetConnection {
		nc, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	ctx := context.Background()
	type result struct {
		st  PlayStats
		err error
	}
	var outs []string
	results := make(chan result, 3)
	for i := range 3 {
		nc := connect()
		out := filepath.Join(dir, fmt.Sprintf("out%d.flv", i))
		outs = append(outs, out)
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			st, err := Play(ctx, nc, f, PlayOptions{Group: spec, Name: "cam"})
			f.Close()
			results <- result{st, err}
		}()
	}
	pub := connect()
	if err := GroupPublish(ctx, pub, in, GroupPublishOptions{Group: spec, Name: "cam", Wait: 3}); err != nil {
		t.Fatal(err)
	}
	pub.Close() // unpublishes: the players' recordings end
	for range 3 {
		if r := <-results; r.err != nil {
			t.Fatal(r.err)
		}
	}
	src := readTags(t, in)
	for _, out := range outs {
		got := readTags(t, out)
		for _, typ := range []uint8{flv.TagAudio, flv.TagVideo} {
			a, b := byType(src, typ), byType(got, typ)
			j := 0
			for _, tg := range a {
				for j < len(b) && !(bytes.Equal(b[j].Data, tg.Data) && b[j].Timestamp == tg.Timestamp) {
					j++
				}
				if j == len(b) {
					t.Fatalf("%s: type %d: a source tag (ts %d) is missing or out of order", out, typ, tg.Timestamp)
				}
				j++
			}
		}
		ffmpegClean(t, out)
	}
	t.Logf("%d source tags recorded by 3 players", len(src))
}

// Event lines print messages as they are: <, > and & are not escaped.
func TestGroupEventsNotHTMLEscaped(t *testing.T) {
	var b bytes.Buffer
	newGroupEvents(&b).line(map[string]any{"event": "posted", "message": "<a & b>"})
	if !bytes.Contains(b.Bytes(), []byte(`"<a & b>"`)) {
		t.Fatalf("%s", b.Bytes())
	}
}

// "stratus peer listen --group" ends with an error that says why the
// connection closed when the server said: a drained server's AppShutdown.
func TestGroupListenSaysWhyTheConnectionClosed(t *testing.T) {
	srv := servertest.Start(t, server.Config{Open: true})
	nc, err := rtmfp.Connect(context.Background(), srv.URL("key"), &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- GroupListen(context.Background(), nc, w, GroupOptions{Group: "G:027f02010101000103010c050e74657374011b00"})
		w.Close()
	}()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["event"] == rtmfp.GroupConnectSuccess {
			break
		}
	}
	go io.Copy(io.Discard, r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), rtmfp.ConnectAppShutdown) {
			t.Fatalf("listen ended with %v, want an error naming %s", err, rtmfp.ConnectAppShutdown)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen did not end when the server shut down")
	}
}
