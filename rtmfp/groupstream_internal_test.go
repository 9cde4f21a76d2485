package rtmfp

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

// A hostile member in the group: it plays the stream like the others,
// then sends its neighbours bogus fragment numbers, huge and malformed
// maps, fragments of streams never announced, announcements of streams
// that do not exist and floods of pulls. The honest players still record
// the stream without stalling, and hold no more than their bounds.
func TestGroupStreamHostileMember(t *testing.T) {
	srv := servertest.Start(t, server.Config{Open: true})
	spec := "G:027f02010101000103010c050e74657374011b00"
	var ncs []*NetConnection
	for range 6 {
		nc, err := Connect(context.Background(), srv.URL("k"), &Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		ncs = append(ncs, nc)
	}
	var streams []*NetStream
	for _, nc := range ncs {
		ns, err := NewGroupStream(nc, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		streams = append(streams, ns)
	}
	pub, evil := streams[0], streams[5]
	// Wait for a full mesh (6 members, all want each other).
	deadline := time.Now().Add(30 * time.Second)
	for _, ns := range streams {
		for ns.grp.ng.NeighborCount() < 5 {
			if time.Now().After(deadline) {
				t.Fatal("no full mesh")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := pub.Publish("live"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range streams[1:] {
		if err := ns.Play(context.Background(), "live"); err != nil {
			t.Fatal(err)
		}
	}
	type rec struct {
		video   int
		lastAt  time.Time
		longest time.Duration
	}
	recs := make([]*rec, 4)
	doneRec := make(chan struct{})
	for i, ns := range streams[1:5] {
		r := &rec{}
		recs[i] = r
		go func() {
			for m := range ns.Messages() {
				now := time.Now()
				if !r.lastAt.IsZero() {
					r.longest = max(r.longest, now.Sub(r.lastAt))
				}
				r.lastAt = now
				if m.Kind == KindVideo && len(m.Payload) > 100 {
					r.video++
				}
			}
			doneRec <- struct{}{}
		}()
	}
	go func() { // drain the hostile member's own stream
		for range evil.Messages() {
		}
	}()
	stop := make(chan struct{})
	attacks := make(chan struct{})
	go func() {
		defer close(attacks)
		r := rand.New(rand.NewPCG(7, 7))
		ng := evil.grp.ng
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			ng.call(func() {
				for _, m := range ng.media {
					for _, mp := range m.peers {
						l := mp.l
						if mp.out11 == nil || mp.in11 == nil {
							continue
						}
						// Huge and malformed maps, claiming far too much.
						l.write(mp.out11, groupmedia.AppendMap(nil, 1<<40-8*16000, 1<<40, func(uint64) bool { return true }))
						l.write(mp.out11, []byte{groupmedia.TypeMap})
						l.write(mp.out11, append([]byte{groupmedia.TypeMap, 0xff, 0xff}, bytes.Repeat([]byte{0xff}, 60000)...))
						// A flood of pulls.
						for range 200 {
							l.write(mp.out11, groupmedia.AppendPull(nil, r.Uint64N(5000)+1))
						}
						// Fragments with bogus numbers, asked for or not.
						if mp.out12 == nil {
							if f, err := l.pc.ps.sess.OpenFlow(groupmedia.MetaData, mp.in11); err == nil {
								mp.out12 = f
							}
						}
						for range 30 {
							id := r.Uint64()>>r.IntN(64) + 1
							l.write(mp.out12, groupmedia.AppendFragment(nil, groupmedia.Fragment{Marker: groupmedia.MarkerWhole, ID: id, Type: 9, Payload: []byte("garbage")}))
						}
						l.write(mp.out12, []byte{0x30, 0xff})
						// Fragments of a stream never announced, and an
						// announcement of one nobody publishes.
						if f, err := l.pc.ps.sess.OpenFlow(groupmedia.MetaData, l.in); err == nil {
							f.TryWrite(groupmedia.AppendFragment(nil, groupmedia.Fragment{Marker: groupmedia.MarkerWhole, ID: 5, Type: 9, Payload: []byte("x")}))
							f.Close()
						}
						if f, err := l.pc.ps.sess.OpenFlow(groupmedia.MetaControl, l.in); err == nil {
							var key [32]byte
							key[0] = byte(r.UintN(256))
							f.TryWrite(groupmedia.AppendAnnounce(nil, groupmedia.Announce{Name: "nothing", Key: key, Params: groupmedia.DefaultParams}))
							f.Close()
						}
					}
				}
			})
		}
	}()
	frames := 0
	start := time.Now()
	for f := 0; f < 6*25; f++ {
		if d := time.Duration(f*40)*time.Millisecond - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		if f == 0 {
			pub.WriteVideo(0, []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f})
		}
		head := byte(0x27)
		if f%25 == 0 {
			head = 0x17
		}
		pub.WriteVideo(uint32(f*40), append([]byte{head, 1, 0, 0, 0}, bytes.Repeat([]byte{byte(f)}, 1200)...))
		frames++
	}
	time.Sleep(2 * time.Second)
	close(stop)
	<-attacks
	for i, ns := range streams[1:5] {
		mi, state := ns.MulticastInfo(), StreamState(ns)
		ns.Close()
		<-doneRec
		r := recs[i]
		t.Logf("player %d: %d/%d frames, longest gap %v; %d fragments refused, %d held", i, r.video, frames, r.longest.Round(time.Millisecond), mi.Refused, mi.FragmentsHeld)
		// At the start the hostile member's map alone, claiming far
		// ahead, can make it a player's pusher; its garbage in the first
		// keyframe's place used to cost that player the first GOP (25
		// frames). Fragments must now match their sender's map
		// (internal/mcast), so the whole stream is asked for.
		if r.video < frames*95/100 {
			t.Errorf("player %d recorded %d of %d frames\n  %+v\n  %s", i, r.video, frames, mi, state)
		}
		if r.longest > 2*time.Second {
			t.Errorf("player %d stalled %v", i, r.longest)
		}
		if mi.FragmentsHeld > 1<<14 || mi.Refused == 0 {
			t.Errorf("player %d: %+v", i, mi)
		}
	}
}

// A publisher that leaves writes the stream's end on its GR 11 flow and
// then ends the neighbourship. The two are read apart, so a player may
// see the neighbourship end first; the end read after it must still end
// the stream (it used to be dropped, and the player waited forever: the
// hang of peertool's TestGroupFLV).
func TestGroupStreamEndAfterNeighbourshipEnded(t *testing.T) {
	ng := testGroup()
	ng.media, ng.players, ng.seenKeys = map[[32]byte]*mediaStream{}, map[string][]*groupStream{}, map[[32]byte]bool{}
	ns := &NetStream{role: roleGroup, status: make(chan Status, 64), media: make(chan Message, 16), done: make(chan struct{})}
	g := &groupStream{ng: ng, ns: ns, name: "cam"}
	ns.grp = g
	key := [32]byte{1}
	m := ng.newMedia(key, "cam", groupmedia.DefaultParams, g, false)
	g.ms = m
	pub := [32]byte{2}
	l := &groupLink{ng: ng, id: pub, closed: true}
	ng.onMediaControl(l, nil, &mediaFlowState{m: m}, groupmedia.AppendEnd(nil, 42))
	if m.st.Ended() != 42 || !m.ended {
		t.Fatalf("end not taken: Ended %d, ended %v", m.st.Ended(), m.ended)
	}
	for {
		select {
		case st := <-ns.status:
			if st.Code == PlayUnpublishNotify {
				return
			}
		default:
			t.Fatal("the player heard no PlayUnpublishNotify")
		}
	}
}
