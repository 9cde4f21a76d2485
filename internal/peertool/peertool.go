// Package peertool is what "stratus peer" does: publish an FLV file peer
// to peer in real time, record a played stream into a valid FLV, and
// exchange send() calls. It sits on the public rtmfp SDK.
package peertool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/flv"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// PublishOptions configure Publish.
type PublishOptions struct {
	Name     string
	Loop     bool
	Allow    []string // if set, only these peer IDs may subscribe
	MaxPeers int      // 0: the NetConnection's MaxPeerConnections
	// Wait for this many subscribers before the file starts (default 1),
	// so that the first viewers see it from the beginning; later ones join
	// live at the next keyframe.
	Wait int
	Log  io.Writer
}

// subState tracks what a live subscriber still needs.
type subState struct {
	headersSent  bool
	wantKeyframe bool
}

// Publish streams the FLV at path to every accepted subscriber in real
// time, until the file ends (or, with Loop, until ctx ends).
func Publish(ctx context.Context, nc *rtmfp.NetConnection, path string, o PublishOptions) error {
	if o.Wait <= 0 {
		o.Wait = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	ns, err := rtmfp.NewNetStream(nc, rtmfp.DirectConnections)
	if err != nil {
		return err
	}
	defer ns.Close()
	var mu sync.Mutex
	states := map[*rtmfp.NetStream]*subState{}
	ns.OnPeerConnect(func(sub *rtmfp.NetStream) bool {
		if len(o.Allow) > 0 && !slices.Contains(o.Allow, sub.FarID()) {
			fmt.Fprintf(o.Log, "refused %s (not allowed)\n", sub.FarID())
			return false
		}
		if o.MaxPeers > 0 && len(ns.PeerStreams()) >= o.MaxPeers {
			fmt.Fprintf(o.Log, "refused %s (--max-peers %d)\n", sub.FarID(), o.MaxPeers)
			return false
		}
		mu.Lock()
		states[sub] = &subState{}
		mu.Unlock()
		fmt.Fprintf(o.Log, "subscriber %s\n", sub.FarID())
		return true
	})
	if err := ns.Publish(o.Name); err != nil {
		return err
	}
	for len(ns.PeerStreams()) < o.Wait {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	var headers []flv.Tag // metadata and codec configuration, for late joiners
	return eachTag(ctx, path, o.Loop, func(t flv.Tag, first bool) {
		isHeader := t.Type == flv.TagScript || t.Type == flv.TagAudio && flv.IsAudioSequenceHeader(t.Data) ||
			t.Type == flv.TagVideo && flv.IsVideoSequenceHeader(t.Data)
		if isHeader && first {
			headers = append(headers, t)
		}
		for _, sub := range ns.PeerStreams() {
			mu.Lock()
			st := states[sub]
			if st == nil {
				st = &subState{headersSent: true}
				states[sub] = st
			}
			sendHeaders := !st.headersSent
			st.headersSent = true
			if sendHeaders && !isHeader {
				st.wantKeyframe = true
			}
			mu.Unlock()
			if sendHeaders && !isHeader {
				for _, h := range headers {
					writeTag(sub, h, t.Timestamp)
				}
			}
			if t.Type == flv.TagVideo && st.wantKeyframe {
				if !flv.IsKeyframe(t.Data) {
					continue // a late joiner starts at a keyframe
				}
				st.wantKeyframe = false
			}
			writeTag(sub, t, t.Timestamp)
		}
	})
}

// eachTag reads the FLV at path and hands each audio, video and script
// tag to fn at its moment (real time), with timestamps that keep growing
// when Loop starts the file again (first: the first pass). It returns
// when the file ends (after half a second for the tail to go out), or
// with Loop when ctx ends.
func eachTag(ctx context.Context, path string, loop bool, fn func(t flv.Tag, first bool)) error {
	var offset uint32
	for pass := 0; ; pass++ {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		r, err := flv.NewReader(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
		start := time.Now()
		var last uint32
		for {
			t, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", path, err)
			}
			if t.Type != flv.TagAudio && t.Type != flv.TagVideo && t.Type != flv.TagScript {
				continue
			}
			// Real time: wait until the tag's moment.
			if wait := time.Duration(t.Timestamp)*time.Millisecond - time.Since(start); wait > 0 {
				select {
				case <-ctx.Done():
					f.Close()
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			last = t.Timestamp
			t.Timestamp += offset
			fn(t, pass == 0)
		}
		f.Close()
		if !loop {
			// Give the subscribers a moment to receive the tail.
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
			return nil
		}
		offset += last + 40
	}
}

func writeTag(sub *rtmfp.NetStream, t flv.Tag, ts uint32) {
	switch t.Type {
	case flv.TagAudio:
		sub.WriteAudio(ts, t.Data)
	case flv.TagVideo:
		sub.WriteVideo(ts, t.Data)
	case flv.TagScript:
		sub.WriteData(0, t.Data)
	}
}

// PlayOptions configure Play.
type PlayOptions struct {
	Peer     string
	Group    string // a groupspec: play the stream from the group (multicast) instead of from Peer
	Name     string
	Duration time.Duration // 0: until the publisher stops
	Log      io.Writer     // progress lines
}

// PlayStats is what Play recorded.
type PlayStats struct {
	Tags  int
	Bytes int64
}

// ErrRefused is returned when the publisher refuses us.
var ErrRefused = errors.New("peertool: the publisher refused the subscription")

// Play subscribes to a peer's stream and records it into out as FLV.
func Play(ctx context.Context, nc *rtmfp.NetConnection, out io.Writer, o PlayOptions) (PlayStats, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	var ns *rtmfp.NetStream
	var err error
	if o.Group != "" {
		ns, err = rtmfp.NewGroupStream(nc, o.Group)
	} else {
		ns, err = rtmfp.NewNetStream(nc, o.Peer)
	}
	if err != nil {
		return PlayStats{}, err
	}
	defer ns.Close()
	w, err := flv.NewWriter(out, flv.Header{HasAudio: true, HasVideo: true})
	if err != nil {
		return PlayStats{}, err
	}
	if err := ns.Play(ctx, o.Name); err != nil {
		return PlayStats{}, err
	}
	var stop <-chan time.Time
	if o.Duration > 0 {
		stop = time.After(o.Duration)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	finish := func(err error) (PlayStats, error) {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return PlayStats{Tags: w.Tags(), Bytes: w.Bytes()}, err
	}
	for {
		select {
		case m, ok := <-ns.Messages():
			if !ok { // the stream ended; everything it received was read
				return finish(nil)
			}
			var t flv.Tag
			switch m.Kind {
			case rtmfp.KindAudio:
				t = flv.Tag{Type: flv.TagAudio, Timestamp: m.Timestamp, Data: m.Payload}
			case rtmfp.KindVideo:
				t = flv.Tag{Type: flv.TagVideo, Timestamp: m.Timestamp, Data: m.Payload}
			case rtmfp.KindData:
				t = flv.Tag{Type: flv.TagScript, Timestamp: m.Timestamp, Data: m.Payload}
			default:
				continue
			}
			if err := w.WriteTag(t); err != nil {
				return finish(err)
			}
		case st := <-ns.Status():
			fmt.Fprintf(o.Log, "%s\n", st.Code)
			switch st.Code {
			case rtmfp.StreamConnectRejected:
				return finish(ErrRefused)
			case rtmfp.StreamConnectFailed:
				return finish(&rtmfp.StatusError{Status: st})
			case rtmfp.PlayUnpublishNotify:
				// In a group the stream stays open (it may be published
				// again); without a duration, its end ends the recording.
				if o.Group != "" && o.Duration == 0 {
					return finish(nil)
				}
			}
		case <-tick.C:
			el := time.Since(start).Seconds()
			fmt.Fprintf(o.Log, "%d tags, %d bytes, %.0f kbit/s\n", w.Tags(), w.Bytes(), float64(w.Bytes())*8/1000/el)
		case <-stop:
			return finish(nil)
		case <-ctx.Done():
			return finish(ctx.Err())
		}
	}
}
