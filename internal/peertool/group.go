package peertool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/flv"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// GroupOptions configure the NetGroup commands.
type GroupOptions struct {
	Group     string   // groupspec
	Neighbors []string // peer IDs to connect to at once (AddNeighbor)
	// Wait bounds how long GroupPost waits for its first neighbour.
	Wait time.Duration
	// Post: how many posts, the gap between them, and how long to stay
	// afterwards so that they spread.
	Count    int
	Interval time.Duration
	Stay     time.Duration
	// Listen: stop after this long (0: until ctx ends).
	Duration time.Duration
}

// ErrNoNeighbor is returned when no neighbour came within Wait.
var ErrNoNeighbor = errors.New("peertool: no group neighbour came")

// groupEvents writes one JSON line per group event: the Flash code as
// "event", and the info fields that matter.
type groupEvents struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (g *groupEvents) line(fields map[string]any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.enc.Encode(fields)
}

func (g *groupEvents) status(st rtmfp.Status) {
	f := map[string]any{"event": st.Code}
	if st.Info != nil {
		for _, k := range []string{"peerID", "neighbor", "messageID", "from", "fromLocal"} {
			if v, ok := st.Info.Get(k); ok {
				f[k] = v
			}
		}
		if v, ok := st.Info.Get("message"); ok {
			f["message"] = jsonValue(v)
		}
	}
	g.line(f)
}

// jsonValue turns decoded AMF into something encoding/json writes.
func jsonValue(v any) any {
	switch x := v.(type) {
	case *amf.Object:
		m := map[string]any{}
		for _, p := range x.Pairs {
			m[p.Key] = jsonValue(p.Value)
		}
		return m
	case amf.ECMAArray:
		m := map[string]any{}
		for _, p := range x {
			m[p.Key] = jsonValue(p.Value)
		}
		return m
	case amf.Array:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case amf.Undefined:
		return nil
	}
	return v
}

func joinGroup(ctx context.Context, nc *rtmfp.NetConnection, o GroupOptions, ev *groupEvents) (*rtmfp.NetGroup, error) {
	ng, err := rtmfp.NewNetGroup(nc, o.Group)
	if err != nil {
		return nil, err
	}
	for _, p := range o.Neighbors {
		if !ng.AddNeighbor(p) {
			ng.Close()
			return nil, fmt.Errorf("peertool: bad neighbour peer ID %q", p)
		}
	}
	addr, _ := rtmfp.ConvertPeerIDToGroupAddress(nc.NearID())
	ev.line(map[string]any{"event": "joining", "peerID": nc.NearID(), "groupAddress": addr, "groupID": ng.GroupID()})
	return ng, nil
}

// newGroupEvents writes events as JSON lines, with <, > and & as they
// are (messages are text for people and scripts, not HTML).
func newGroupEvents(out io.Writer) *groupEvents {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	return &groupEvents{enc: enc}
}

// GroupPost joins the group, waits for a first neighbour, posts message
// Count times (each a new post), stays Stay so that the posts spread, and
// leaves. Events go to out as JSON lines.
func GroupPost(ctx context.Context, nc *rtmfp.NetConnection, out io.Writer, message string, o GroupOptions) error {
	if o.Count <= 0 {
		o.Count = 1
	}
	ev := newGroupEvents(out)
	ng, err := joinGroup(ctx, nc, o, ev)
	if err != nil {
		return err
	}
	defer ng.Close()
	wait := time.After(o.Wait)
	for have := false; !have; {
		select {
		case st := <-ng.Status():
			ev.status(st)
			have = st.Code == rtmfp.GroupNeighborConnect
		case <-wait:
			return ErrNoNeighbor
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	posted := 0
	next := time.NewTimer(0)
	defer next.Stop()
	stay := time.NewTimer(time.Hour)
	stay.Stop()
	for {
		select {
		case <-next.C:
			id, err := ng.Post(message)
			if err != nil {
				return err
			}
			posted++
			ev.line(map[string]any{"event": "posted", "message": message, "messageID": id, "neighbors": ng.NeighborCount()})
			if posted < o.Count {
				next.Reset(o.Interval)
			} else {
				stay.Reset(o.Stay)
			}
		case st := <-ng.Status():
			ev.status(st)
		case <-stay.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// GroupListen joins the group and writes every event (posts, neighbours,
// routed messages) to out as JSON lines, until Duration or ctx ends.
func GroupListen(ctx context.Context, nc *rtmfp.NetConnection, out io.Writer, o GroupOptions) error {
	ev := newGroupEvents(out)
	ng, err := joinGroup(ctx, nc, o, ev)
	if err != nil {
		return err
	}
	defer ng.Close()
	var stop <-chan time.Time
	if o.Duration > 0 {
		stop = time.After(o.Duration)
	}
	for {
		select {
		case st := <-ng.Status():
			ev.status(st)
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-nc.Done():
			return closedError(nc)
		}
	}
}

// closedError says that nc closed, and why when the server said: the
// last error status it sent (AppShutdown when it is drained, Rejected
// when the developer key was revoked).
func closedError(nc *rtmfp.NetConnection) error {
	var why rtmfp.Status
	for len(nc.Status()) > 0 {
		if st := <-nc.Status(); st.Level == flash.LevelError {
			why = st
		}
	}
	if why.Code == "" {
		return errors.New("peertool: the connection closed")
	}
	return fmt.Errorf("peertool: the connection closed: %s (%s)", why.Code, why.Description)
}

// GroupPublishOptions configure GroupPublish.
type GroupPublishOptions struct {
	Group string // groupspec
	Name  string
	Loop  bool
	// Wait for this many group neighbours before the file starts
	// (default 1); members that come later join live.
	Wait      int
	Multicast rtmfp.MulticastSettings
	Log       io.Writer
}

// GroupPublish publishes the FLV at path into a NetGroup (multicast) in
// real time: the members playing Name relay it to each other.
func GroupPublish(ctx context.Context, nc *rtmfp.NetConnection, path string, o GroupPublishOptions) error {
	if o.Wait <= 0 {
		o.Wait = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	ns, err := rtmfp.NewGroupStream(nc, o.Group)
	if err != nil {
		return err
	}
	defer ns.Close()
	ns.SetMulticast(o.Multicast)
	if err := ns.Publish(o.Name); err != nil {
		return err
	}
	ng := ns.Group()
	for ng.NeighborCount() < o.Wait {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ng.Done():
			return rtmfp.ErrGroupClosed
		case st := <-ns.Status():
			fmt.Fprintln(o.Log, st.Code)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Then a moment for all of them to take part in the stream
	// (announcements exchanged), so that their first map shows its first
	// fragment: librtmfp players start where their first map says the
	// stream is. Neighbours that do not play it never do, hence the bound.
	for t0 := time.Now(); ns.MulticastInfo().StreamNeighbors < ng.NeighborCount() && time.Since(t0) < streamJoinWait; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintf(o.Log, "%d neighbour(s), %d in the stream: publishing\n", ng.NeighborCount(), ns.MulticastInfo().StreamNeighbors)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var werr error
	err = eachTag(ctx, path, o.Loop, func(t flv.Tag, _ bool) {
		select {
		case <-tick.C:
			mi := ns.MulticastInfo()
			fmt.Fprintf(o.Log, "%d neighbours; %d fragments pushed, %d pulled by peers\n", ng.NeighborCount(), mi.FragmentsPushedToPeers, mi.FragmentsRequestedByPeers)
		default:
		}
		var err error
		switch t.Type {
		case flv.TagAudio:
			err = ns.WriteAudio(t.Timestamp, t.Data)
		case flv.TagVideo:
			err = ns.WriteVideo(t.Timestamp, t.Data)
		case flv.TagScript:
			err = ns.WriteData(0, t.Data)
		}
		if err != nil && werr == nil {
			werr = err
		}
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		lingerForPulls(ctx, ns, o.Log)
	}
	return err
}

// Linger after the last tag: members that get much of a stream by pulling
// (librtmfp and, it is believed, Flash pull what they miss only after the
// fetch period, 2.5 s) still find the last fragments here. The publisher
// stays at least lingerMin, then until its pull answers have been quiet
// for lingerQuiet, at most lingerMax.
var streamJoinWait = 2 * time.Second

var lingerMin, lingerQuiet, lingerMax = 3500 * time.Millisecond, 2 * time.Second, 10 * time.Second

func lingerForPulls(ctx context.Context, ns *rtmfp.NetStream, log io.Writer) {
	start := time.Now()
	last, quietSince := ns.MulticastInfo().FragmentsRequestedByPeers, start
	fmt.Fprintln(log, "end of file: staying for the members' last pulls")
	for {
		now := time.Now()
		if n := ns.MulticastInfo().FragmentsRequestedByPeers; n != last {
			last, quietSince = n, now
		}
		if now.Sub(start) >= lingerMax || now.Sub(start) >= lingerMin && now.Sub(quietSince) >= lingerQuiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ns.Group().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
