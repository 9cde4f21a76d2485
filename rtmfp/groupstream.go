package rtmfp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/groupmedia"
	"github.com/stratus-rtmfp/stratus/internal/mcast"
)

// Multicast status codes.
const (
	MulticastStreamReset     = "NetStream.MulticastStream.Reset"
	GroupMulticastPublish    = "NetGroup.MulticastStream.PublishNotify"
	GroupMulticastUnpublish  = "NetGroup.MulticastStream.UnpublishNotify"
	multicastMediaTimeout    = 5 * time.Minute // a played stream without fragments for this long is gone
	headerReinjectVideo      = 900 * time.Millisecond
	headerReinjectAudio      = time.Second
	maxGroupStreamsPerMember = 64
)

// MulticastSettings are a group NetStream's multicast knobs, as the
// ActionScript NetStream properties of the same names. Zero values keep
// the defaults: window 8 s, relay margin 2 s, availability update period
// 100 ms, fetch period 2.5 s, push neighbour limit 4 (2 for a publisher,
// so that its upload stays near twice the stream's rate however large
// the audience), send-to-all false. A publisher's window, update and
// fetch periods and send-to-all travel in its announcement and apply to
// every member; a player's settings are its own.
type MulticastSettings struct {
	WindowDuration           time.Duration // multicastWindowDuration
	RelayMarginDuration      time.Duration // multicastRelayMarginDuration
	AvailabilityUpdatePeriod time.Duration // multicastAvailabilityUpdatePeriod
	FetchPeriod              time.Duration // multicastFetchPeriod
	PushNeighborLimit        int           // multicastPushNeighborLimit
	AvailabilitySendToAll    bool          // multicastAvailabilitySendToAll
}

// MulticastInfo is a group NetStream's statistics (multicastInfo).
type MulticastInfo struct {
	FragmentsPushedToPeers, BytesPushedToPeers           uint64 // pushed to neighbours
	FragmentsRequestedByPeers, BytesRequestedByPeers     uint64 // pulled by neighbours (answered)
	FragmentsPushedFromPeers, BytesPushedFromPeers       uint64 // new fragments pushed to us
	FragmentsRequestedFromPeers, BytesRequestedFromPeers uint64 // new fragments we pulled
	Duplicates, Refused                                  uint64 // fragments dropped: already held; unrequested or implausible
	PullsSent, PullsTimedOut                             uint64
	MessagesDelivered, HolesSkipped, FragmentsSkipped    uint64
	MessagesDropped                                      uint64 // delivered while the application was not reading
	FragmentsHeld                                        int
	StreamNeighbors                                      int               // neighbours taking part in the stream (announcements exchanged)
	BytesFromPeer                                        map[string]uint64 // media bytes each neighbour gave us
}

// groupStream is the group side of a NetStream made by NewGroupStream.
type groupStream struct {
	ng       *NetGroup
	ownGroup bool
	ns       *NetStream

	// Owned by the group's loop.
	settings  MulticastSettings
	publisher bool
	name      string
	ms        *mediaStream
	dropped   uint64
	gateVideo bool // player: video waits for a keyframe (after its AVC header)
	gotVHead  bool
	gateAudio bool // player: AAC waits for its header
	vHeader   []byte
	aHeader   []byte
	vHeadAt   time.Time
	aHeadAt   time.Time
	lastTime  uint32
}

// mediaStream is one multicast stream (one stream key) this member takes
// part in, as its publisher or as a player that relays it.
type mediaStream struct {
	ng     *NetGroup
	key    [32]byte
	name   string
	params groupmedia.Params
	st     *mcast.Stream
	local  *groupStream
	peers  map[[32]byte]*mediaPeer
	window time.Duration
	ended  bool
}

// mediaPeer is a neighbour in a stream: each side's GR 11 (announcement,
// maps, push, pull) and our GR 12 (fragments).
type mediaPeer struct {
	l     *groupLink
	out11 *engine.SendFlow
	in11  *engine.RecvFlow
	out12 *engine.SendFlow
	added bool
}

// mediaRef names a stream from one of our GR 11 flows (the far side's GR
// 12 flows are associated with it).
type mediaRef struct {
	ng  *NetGroup
	key [32]byte
}

// NewGroupStream makes a NetStream in a group, as new NetStream(nc,
// groupspec) does in ActionScript: Publish puts a stream into the group,
// where members relay it to each other (application-level multicast, so
// the publisher's uplink no longer bounds the audience); Play receives a
// stream by name. The NetConnection's NetGroup for that groupspec is
// used if there is one; otherwise the stream joins the group itself and
// leaves it when closed.
func NewGroupStream(nc *NetConnection, groupspec string) (*NetStream, error) {
	ident, err := group.IdentityOf(groupspec)
	if err != nil {
		return nil, err
	}
	nc.mu.Lock()
	ng := nc.groups[ident.HexID()]
	nc.mu.Unlock()
	own := false
	if ng == nil {
		if ng, err = NewNetGroup(nc, groupspec); err != nil {
			return nil, err
		}
		own = true
	}
	ns := &NetStream{nc: nc, role: roleGroup, status: make(chan Status, 64), media: make(chan Message, 1024), done: make(chan struct{}),
		handlers: map[string]func([]any){}}
	ns.grp = &groupStream{ng: ng, ownGroup: own, ns: ns}
	return ns, nil
}

// Group is the NetGroup a group NetStream belongs to (nil for a direct
// one).
func (ns *NetStream) Group() *NetGroup {
	if ns.grp == nil {
		return nil
	}
	return ns.grp.ng
}

// SetMulticast changes a group stream's multicast settings; call it
// before Publish or Play.
func (ns *NetStream) SetMulticast(s MulticastSettings) {
	if g := ns.grp; g != nil {
		g.ng.call(func() { g.settings = s })
	}
}

// MulticastInfo returns a group stream's statistics.
func (ns *NetStream) MulticastInfo() MulticastInfo {
	var mi MulticastInfo
	g := ns.grp
	if g == nil {
		return mi
	}
	g.ng.call(func() {
		mi.MessagesDropped = g.dropped
		if g.ms == nil {
			return
		}
		st := g.ms.st.Stats()
		mi = MulticastInfo{FragmentsPushedToPeers: st.FragmentsPushedOut, BytesPushedToPeers: st.BytesPushedOut,
			FragmentsRequestedByPeers: st.FragmentsPulledOut, BytesRequestedByPeers: st.BytesPulledOut,
			FragmentsPushedFromPeers: st.FragmentsPushedIn, BytesPushedFromPeers: st.BytesPushedIn,
			FragmentsRequestedFromPeers: st.FragmentsPulledIn, BytesRequestedFromPeers: st.BytesPulledIn,
			Duplicates: st.Duplicates, Refused: st.Unrequested + st.OutOfRange, PullsSent: st.PullsSent, PullsTimedOut: st.PullsTimeout,
			MessagesDelivered: st.MessagesDelivered, HolesSkipped: st.HolesSkipped, FragmentsSkipped: st.FragmentsSkipped,
			MessagesDropped: g.dropped, FragmentsHeld: st.Held, StreamNeighbors: len(g.ms.st.Peers()), BytesFromPeer: map[string]uint64{}}
		for id, n := range g.ms.st.BytesFrom() {
			mi.BytesFromPeer[groupHex(id)] = n
		}
	})
	return mi
}

func groupHex(id [32]byte) string { return hex.EncodeToString(id[:]) }

func (g *groupStream) mcastConfig(publisher bool, p groupmedia.Params) mcast.Config {
	s := g.settings
	c := mcast.Config{Publisher: publisher, Window: ms(p.WindowDuration), RelayMargin: s.RelayMarginDuration,
		UpdatePeriod: ms(p.UpdatePeriod), FetchPeriod: ms(p.FetchPeriod), PushLimit: s.PushNeighborLimit, SendToAll: p.SendToAll}
	if !publisher {
		// A player's own settings override the announced ones.
		if s.WindowDuration > 0 {
			c.Window = s.WindowDuration
		}
		if s.AvailabilityUpdatePeriod > 0 {
			c.UpdatePeriod = s.AvailabilityUpdatePeriod
		}
		if s.FetchPeriod > 0 {
			c.FetchPeriod = s.FetchPeriod
		}
	}
	return c
}

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

func durMS(d time.Duration, def uint32) uint32 {
	if d <= 0 {
		return def
	}
	return uint32(min(d.Milliseconds(), 1<<31))
}

// publish starts a group publication (Publish on a group stream).
func (g *groupStream) publish(name string) error {
	if name == "" || len(name) > groupmedia.MaxName {
		return errors.New("rtmfp: a multicast stream name is 1 to 126 bytes")
	}
	var err error
	ok := g.ng.call(func() {
		ng := g.ng
		if g.ms != nil || g.name != "" {
			err = errors.New("rtmfp: this NetStream already publishes or plays")
			return
		}
		for _, o := range ng.media {
			if o.local != nil && o.local.publisher && o.name == name {
				err = errors.New("rtmfp: " + name + " is already published here")
				return
			}
		}
		if len(ng.media) >= maxGroupStreamsPerMember {
			err = errors.New("rtmfp: too many multicast streams")
			return
		}
		var key [32]byte
		rand.Read(key[:])
		s := g.settings
		p := groupmedia.Params{WindowDuration: durMS(s.WindowDuration, 8000), UpdatePeriod: durMS(s.AvailabilityUpdatePeriod, 100),
			FetchPeriod: durMS(s.FetchPeriod, 2500), SendToAll: s.AvailabilitySendToAll, Option04: groupmedia.DefaultParams.Option04}
		m := ng.newMedia(key, name, p, g, true)
		g.publisher, g.name, g.ms = true, name, m
		for _, l := range ng.links {
			if l.connected {
				m.announceTo(l)
			}
		}
	})
	if !ok {
		return ErrGroupClosed
	}
	if err == nil {
		g.ns.mu.Lock()
		g.ns.name = name
		g.ns.mu.Unlock()
		g.ns.emit(flash.LevelStatus, PublishStart, name+" is now published")
	}
	return err
}

// play subscribes to a stream name in the group (Play on a group stream).
func (g *groupStream) play(name string) error {
	if name == "" || len(name) > groupmedia.MaxName {
		return errors.New("rtmfp: a multicast stream name is 1 to 126 bytes")
	}
	var err error
	if !g.ng.call(func() {
		if g.ms != nil || g.name != "" {
			err = errors.New("rtmfp: this NetStream already publishes or plays")
			return
		}
		g.name, g.gateVideo, g.gateAudio = name, true, true
		g.ng.players[name] = append(g.ng.players[name], g)
		g.ng.takePending(name, time.Now())
		// A stream of that name may already be known here.
		for _, m := range g.ng.media {
			if m.name == name && !m.ended && (m.local == nil || !m.local.publisher) {
				g.attach(m)
				break
			}
		}
	}) {
		return ErrGroupClosed
	}
	if err != nil {
		return err
	}
	g.ns.mu.Lock()
	g.ns.name = name
	g.ns.mu.Unlock()
	g.ns.emit(flash.LevelStatus, PlayReset, "Playing and resetting "+name)
	g.ns.emit(flash.LevelStatus, PlayStart, "Started playing "+name)
	return nil
}

// attach makes a player receive a stream (on the loop).
func (g *groupStream) attach(m *mediaStream) {
	if g.ms == m {
		return
	}
	if g.ms != nil {
		old := g.ms
		old.local = nil
		g.ns.emit(flash.LevelStatus, MulticastStreamReset, "the stream "+g.name+" was published again")
		g.gateVideo, g.gotVHead, g.gateAudio = true, false, true
		old.close(false)
	}
	g.ms, m.local = m, g
	if fp := g.settings.FetchPeriod; fp > 0 {
		m.st.SetFetchPeriod(fp)
	}
}

// newMedia makes a stream's state (on the loop).
func (ng *NetGroup) newMedia(key [32]byte, name string, p groupmedia.Params, local *groupStream, publisher bool) *mediaStream {
	var cfg mcast.Config
	if local != nil {
		cfg = local.mcastConfig(publisher, p)
	} else {
		cfg = mcast.Config{Window: ms(p.WindowDuration), UpdatePeriod: ms(p.UpdatePeriod), FetchPeriod: ms(p.FetchPeriod)}
	}
	m := &mediaStream{ng: ng, key: key, name: name, params: p, st: mcast.New(cfg), local: local, peers: map[[32]byte]*mediaPeer{},
		window: cfg.Window}
	ng.media[key] = m
	return m
}

// announceTo opens our GR 11 to a neighbour for this stream (associated
// with its GR 1c flow) and announces the stream there, once.
func (m *mediaStream) announceTo(l *groupLink) *mediaPeer {
	mp := m.peers[l.id]
	if mp != nil && mp.l != l {
		m.dropPeer(l.id)
		mp = nil
	}
	if mp == nil {
		mp = &mediaPeer{l: l}
		m.peers[l.id] = mp
	}
	if mp.out11 != nil || l.in == nil {
		return mp
	}
	f, err := l.pc.ps.sess.OpenFlow(groupmedia.MetaControl, l.in)
	if err != nil {
		return mp
	}
	mp.out11 = f
	l.pc.mu.Lock()
	if l.pc.byMedia == nil {
		l.pc.byMedia = map[uint64]mediaRef{}
	}
	l.pc.byMedia[f.ID()] = mediaRef{ng: m.ng, key: m.key}
	l.pc.mu.Unlock()
	m.ng.log.Debug("stream announced", "peer", groupLog(l.id), "name", m.name, "flow", f.ID())
	l.write(f, groupmedia.AppendAnnounce(nil, groupmedia.Announce{Name: m.name, Key: m.key, Params: m.params}))
	if m.ended {
		l.write(f, groupmedia.AppendEnd(nil, m.st.Ended()))
	}
	m.maybeAdd(l.id, mp)
	return mp
}

// maybeAdd takes the neighbour into the stream once both sides announced.
func (m *mediaStream) maybeAdd(id [32]byte, mp *mediaPeer) {
	if !mp.added && mp.out11 != nil && mp.in11 != nil {
		m.ng.log.Debug("stream peer", "peer", groupLog(id), "name", m.name)
		mp.added = true
		m.st.AddPeer(id, !mp.l.capable) // not a Stratus member: answer its pulls as it expects
	}
}

// dropPeer forgets a neighbour's part in the stream and closes our flows
// to it.
func (m *mediaStream) dropPeer(id [32]byte) {
	mp := m.peers[id]
	if mp == nil {
		return
	}
	delete(m.peers, id)
	m.st.RemovePeer(time.Now(), id)
	for _, f := range []*engine.SendFlow{mp.out11, mp.out12} {
		if f != nil {
			f.Close()
		}
	}
	if mp.out11 != nil {
		pc := mp.l.pc
		pc.mu.Lock()
		delete(pc.byMedia, mp.out11.ID())
		pc.mu.Unlock()
	}
}

// close ends our part in the stream: a publisher sends the in-band
// unpublish (onStatus, closeStream) and the end of stream first.
func (m *mediaStream) close(unpublish bool) {
	now := time.Now()
	if unpublish && !m.ended {
		t := uint32(0)
		if m.local != nil {
			t = m.local.lastTime
		}
		if msg, err := flash.AppendCommand(nil, "onStatus", 0, nil, flash.Info(flash.LevelStatus, PlayUnpublishNotify, m.name+" is now unpublished")); err == nil {
			m.st.Publish(now, flash.TypeCommand, t, msg[5:], m)
		}
		if msg, err := flash.AppendCommand(nil, "closeStream", 0, nil); err == nil {
			m.st.Publish(now, flash.TypeCommand, t, msg[5:], m)
		}
		m.ended = true
		m.st.OnEnd(m.st.NextID())
		for _, mp := range m.peers {
			mp.l.write(mp.out11, groupmedia.AppendEnd(nil, m.st.NextID()))
		}
	}
	for id := range m.peers {
		m.dropPeer(id)
	}
	if m.ng.media[m.key] == m {
		delete(m.ng.media, m.key)
	}
}

// SendFragment implements mcast.Sink: on our GR 12 to that neighbour
// (associated with its GR 11), kept reliable for a window, then given up.
func (m *mediaStream) SendFragment(to [32]byte, f *groupmedia.Fragment, pulled bool) {
	mp := m.peers[to]
	if mp == nil || mp.in11 == nil {
		return
	}
	if mp.out12 == nil {
		out, err := mp.l.pc.ps.sess.OpenFlow(groupmedia.MetaData, mp.in11)
		if err != nil {
			return
		}
		out.SetTimeCritical(true)
		mp.out12 = out
	}
	if err := mp.out12.TryWriteBy(groupmedia.AppendFragment(nil, *f), time.Now().Add(m.window)); err != nil {
		m.ng.log.Debug("fragment not sent", "peer", groupLog(to), "err", err)
	}
}

// SendMap, SendPush and SendPull implement mcast.Sink on our GR 11.
func (m *mediaStream) SendMap(to [32]byte, b []byte) { m.control(to, b) }

// SendPush sends a push request.
func (m *mediaStream) SendPush(to [32]byte, mask byte) {
	m.control(to, groupmedia.AppendPush(nil, mask))
}

// SendPull sends a pull request.
func (m *mediaStream) SendPull(to [32]byte, id uint64) { m.control(to, groupmedia.AppendPull(nil, id)) }

func (m *mediaStream) control(to [32]byte, b []byte) {
	if mp := m.peers[to]; mp != nil && mp.out11 != nil {
		mp.l.write(mp.out11, b)
	}
}

// Deliver implements mcast.Sink: a reassembled message for our player.
func (m *mediaStream) Deliver(msg mcast.Message) {
	if g := m.local; g != nil && !g.publisher {
		g.deliver(msg)
	}
}

// deliver hands a message to the playing NetStream (on the loop, never
// blocking): video waits for a keyframe after its AVC header, AAC for its
// header, so that a player that joins late starts cleanly.
func (g *groupStream) deliver(m mcast.Message) {
	ns := g.ns
	switch m.Type {
	case flash.TypeVideo:
		if len(m.Payload) == 0 {
			return
		}
		if g.gateVideo {
			isAVC := m.Payload[0]&0x0f == 7
			switch {
			case isAVC && len(m.Payload) > 1 && m.Payload[1] == 0:
				g.gotVHead = true // the AVC header: pass it on
			case m.Payload[0]>>4 == 1 && (!isAVC || g.gotVHead):
				g.gateVideo = false
			default:
				return
			}
		}
		g.push(Message{Kind: KindVideo, Timestamp: m.Time, Payload: m.Payload})
	case flash.TypeAudio:
		if len(m.Payload) == 0 {
			return
		}
		if g.gateAudio && m.Payload[0]>>4 == 10 { // AAC
			if len(m.Payload) < 2 || m.Payload[1] != 0 {
				return
			}
		}
		g.gateAudio = false
		g.push(Message{Kind: KindAudio, Timestamp: m.Time, Payload: m.Payload})
	case flash.TypeData, flash.TypeDataAMF3:
		body := m.Payload
		if m.Type == flash.TypeDataAMF3 {
			if len(body) == 0 || body[0] != 0 {
				return
			}
			body = body[1:]
		}
		d, err := flash.ParseData(flash.Message{Type: flash.TypeData, Payload: body})
		if err != nil || d.Handler == "|RtmpSampleAccess" {
			return
		}
		g.push(Message{Kind: KindData, Timestamp: m.Time, Payload: body, Handler: d.Handler, Args: d.Args})
		ns.call(d.Handler, d.Args)
	case flash.TypeCommand, flash.TypeCommandAMF3:
		body := m.Payload
		// librtmfp publishers write type 11 without its 00 format byte.
		if m.Type == flash.TypeCommandAMF3 && len(body) > 0 && body[0] == 0 {
			body = body[1:]
		}
		cmd, err := flash.ParseCommand(flash.Message{Type: flash.TypeCommand, Payload: body})
		if err != nil && cmd.Name == "" {
			return
		}
		if cmd.Name == "onStatus" {
			if st := statusOf(cmd.Arguments()); st.Code != "" {
				select {
				case ns.status <- st:
				default:
				}
			}
			return
		}
		if cmd.Name != "closeStream" {
			ns.call(cmd.Name, cmd.Arguments())
		}
	}
}

// push hands a message to the application without blocking the group.
func (g *groupStream) push(m Message) {
	ns := g.ns
	ns.mediaMu.RLock()
	defer ns.mediaMu.RUnlock()
	select {
	case <-ns.done:
		return
	default:
	}
	select {
	case ns.media <- m:
	default:
		g.dropped++
	}
}

// write publishes one media message (on the loop). Before a keyframe the
// last AVC header is put in again (at most every 0.9 s), and before AAC
// audio the AAC header (every second), as Flash and librtmfp publishers
// do, so that members who join late can start.
func (g *groupStream) write(kind byte, ts uint32, payload []byte) error {
	m := g.ms
	if m == nil || m.ended {
		return ErrStreamClosed
	}
	now := time.Now()
	g.lastTime = ts
	publish := func(typ byte, b []byte) error { return m.st.Publish(now, typ, ts, b, m) }
	switch kind {
	case KindVideo:
		if len(payload) >= 2 && payload[0]&0x0f == 7 && payload[1] == 0 {
			g.vHeader, g.vHeadAt = append([]byte(nil), payload...), now
		} else if len(payload) > 0 && payload[0]>>4 == 1 && g.vHeader != nil && now.Sub(g.vHeadAt) >= headerReinjectVideo {
			g.vHeadAt = now
			publish(flash.TypeVideo, g.vHeader)
		}
		return publish(flash.TypeVideo, payload)
	case KindAudio:
		if len(payload) >= 2 && payload[0]>>4 == 10 {
			if payload[1] == 0 {
				g.aHeader, g.aHeadAt = append([]byte(nil), payload...), now
			} else if g.aHeader != nil && now.Sub(g.aHeadAt) >= headerReinjectAudio {
				g.aHeadAt = now
				publish(flash.TypeAudio, g.aHeader)
			}
		}
		return publish(flash.TypeAudio, payload)
	default:
		return publish(flash.TypeData, payload)
	}
}

// groupWrite is a group stream's WriteAudio/WriteVideo/WriteData.
func (g *groupStream) groupWrite(kind byte, ts uint32, payload []byte) error {
	if !g.publisher {
		return errors.New("rtmfp: only a publisher writes")
	}
	var err error
	if !g.ng.call(func() { err = g.write(kind, ts, append([]byte(nil), payload...)) }) {
		return ErrGroupClosed
	}
	return err
}

// groupClose closes a group stream: a publisher unpublishes, a player
// stops relaying; the stream's own NetGroup, if it made one, is left.
func (g *groupStream) groupClose() {
	g.ng.call(func() {
		if ps := g.ng.players[g.name]; ps != nil {
			for i, x := range ps {
				if x == g {
					g.ng.players[g.name] = append(ps[:i], ps[i+1:]...)
					break
				}
			}
			if len(g.ng.players[g.name]) == 0 {
				delete(g.ng.players, g.name)
			}
		}
		if m := g.ms; m != nil {
			g.ms = nil
			m.local = nil
			m.close(g.publisher)
		}
	})
	g.ns.markClosed()
	if g.ownGroup {
		g.ng.Close()
	}
}

// onMediaControl handles a message on a neighbour's GR 11 flow for us.
// The first must announce a stream we publish or play; what follows are
// its maps, push and pull requests, or its end.
func (ng *NetGroup) onMediaControl(l *groupLink, f *engine.RecvFlow, fs *mediaFlowState, msg []byte) {
	now := time.Now()
	peer := l.id
	if len(msg) == 0 {
		return
	}
	if l.closed {
		// A publisher that leaves writes the stream's end and then ends
		// the neighbourship; we may see the neighbourship end first (its
		// GR 1c and this flow are read apart). The end is still taken: a
		// player that misses it waits for the stream forever.
		if m := fs.m; m != nil && msg[0] == groupmedia.TypeMediaInfo && ng.media[m.key] == m {
			if an, end, err := groupmedia.ParseMediaInfo(msg); err == nil && an == nil {
				ng.onMediaEnd(m, peer, end)
			}
		}
		return
	}
	if fs.m == nil {
		an, _, err := groupmedia.ParseMediaInfo(msg)
		if err != nil || an == nil {
			ng.log.Debug("media flow refused: not an announcement", "peer", groupLog(peer), "err", err)
			f.Reject(0)
			return
		}
		ng.log.Debug("stream announcement", "peer", groupLog(peer), "name", an.Name, "flow", f.ID())
		ng.onAnnouncement(l, f, fs, an)
		return
	}
	m := fs.m
	if ng.media[m.key] != m {
		return // closed meanwhile
	}
	var bad error
	defer func() {
		if bad != nil {
			m.st.Strike(now, peer)
		}
	}()
	switch msg[0] {
	case groupmedia.TypeMediaInfo:
		an, end, err := groupmedia.ParseMediaInfo(msg)
		bad = err
		if err == nil && an == nil {
			ng.onMediaEnd(m, peer, end)
		}
	case groupmedia.TypeMap:
		mp, err := groupmedia.ParseMap(msg)
		if bad = err; err == nil {
			m.st.OnMap(now, peer, mp)
		}
	case groupmedia.TypePush:
		mask, err := groupmedia.ParsePush(msg)
		if bad = err; err == nil {
			m.st.OnPush(peer, mask)
		}
	case groupmedia.TypePull:
		id, err := groupmedia.ParsePull(msg)
		if bad = err; err == nil {
			m.st.OnPull(now, peer, id, m)
		}
	default:
		bad = groupmedia.ErrType
	}
}

// onMediaEnd takes a neighbour's word that the stream ended at end.
func (ng *NetGroup) onMediaEnd(m *mediaStream, peer [32]byte, end uint64) {
	was := m.st.Ended()
	m.st.OnEnd(end)
	// Pass the end on: a member that is no neighbour of the publisher
	// hears it only from its relays, and a player that never hears it
	// waits for the stream forever.
	if e := m.st.Ended(); e != was {
		for id, mp := range m.peers {
			if id != peer && mp.out11 != nil {
				mp.l.write(mp.out11, groupmedia.AppendEnd(nil, e))
			}
		}
	}
	if !m.ended && (m.local == nil || !m.local.publisher) {
		m.ended = true
		ng.notifyUnpublish(m)
	}
}

// mediaFlowState is what a neighbour's GR 11 flow turned out to be for.
type mediaFlowState struct{ m *mediaStream }

// pendingAnnounce is a stream a neighbour announced that nothing here
// plays (yet): its flow is kept, unanswered, in case a NetStream plays
// that name soon (librtmfp would only announce it again at its next
// report).
type pendingAnnounce struct {
	l  *groupLink
	f  *engine.RecvFlow
	fs *mediaFlowState
	an groupmedia.Announce
	at time.Time
}

// Bounds on announcements of streams nobody plays here.
const (
	maxPendingAnnounces = 256
	pendingAnnounceTTL  = 2 * time.Minute
)

// onAnnouncement takes a neighbour's announcement (its GR 11's first
// message): joins the stream if we publish or play it, else keeps it
// pending.
func (ng *NetGroup) onAnnouncement(l *groupLink, f *engine.RecvFlow, fs *mediaFlowState, an *groupmedia.Announce) {
	peer := l.id
	m := ng.media[an.Key]
	if m == nil {
		ng.notifyPublish(an.Key, an.Name)
		players := ng.players[an.Name]
		if len(players) == 0 || len(ng.media) >= maxGroupStreamsPerMember {
			if len(ng.pending) >= maxPendingAnnounces {
				ng.log.Debug("media flow refused: too many streams", "peer", groupLog(peer), "name", an.Name)
				f.Reject(0)
				return
			}
			ng.pending = append(ng.pending, &pendingAnnounce{l: l, f: f, fs: fs, an: *an, at: time.Now()})
			return
		}
		m = ng.newMedia(an.Key, an.Name, an.Params, players[0], false)
		for _, g := range players {
			g.attach(m)
		}
		// Let it spread: announce it to the other neighbours.
		defer func() {
			for _, o := range ng.links {
				if o.connected && o != l {
					m.announceTo(o)
				}
			}
		}()
	}
	if m.local != nil && m.local.publisher && m.ended {
		f.Reject(0)
		return
	}
	mp := m.peers[peer]
	if mp != nil && mp.in11 != nil && mp.in11 != f {
		ng.log.Debug("media flow refused: a second one", "peer", groupLog(peer), "name", an.Name)
		f.Reject(0) // already in this stream on another flow
		return
	}
	if mp == nil || mp.out11 == nil {
		mp = m.announceTo(l) // (waits for the neighbourship if it is not up yet)
	}
	mp.in11, fs.m = f, m
	m.maybeAdd(peer, mp)
}

// takePending joins the pending announcements of a name a NetStream now
// plays, and drops those that are too old or whose neighbour left.
func (ng *NetGroup) takePending(name string, now time.Time) {
	keep := ng.pending[:0]
	var take []*pendingAnnounce
	for _, p := range ng.pending {
		switch {
		case p.l.closed:
		case now.Sub(p.at) > pendingAnnounceTTL:
			p.f.Reject(0)
		case p.an.Name == name:
			take = append(take, p)
		default:
			keep = append(keep, p)
		}
	}
	ng.pending = keep
	for _, p := range take {
		ng.onAnnouncement(p.l, p.f, p.fs, &p.an)
	}
}

// onMediaData handles a fragment on a neighbour's GR 12 flow.
func (ng *NetGroup) onMediaData(key [32]byte, peer [32]byte, msg []byte) {
	m := ng.media[key]
	if m == nil {
		return
	}
	f, err := groupmedia.ParseFragment(msg)
	if err != nil {
		m.st.Strike(time.Now(), peer)
		return
	}
	m.st.OnFragment(time.Now(), peer, f, m)
}

// notifyPublish reports a stream seen for the first time.
func (ng *NetGroup) notifyPublish(key [32]byte, name string) {
	if ng.seenKeys[key] {
		return
	}
	if len(ng.seenKeys) > 4*maxGroupStreamsPerMember {
		clear(ng.seenKeys)
	}
	ng.seenKeys[key] = true
	ng.emit(flash.LevelStatus, GroupMulticastPublish, name+" is published in the group", "name", name)
	for _, g := range ng.players[name] {
		g.ns.emit(flash.LevelStatus, GroupMulticastPublish, name+" is published in the group")
	}
}

// notifyUnpublish reports the end of a played stream.
func (ng *NetGroup) notifyUnpublish(m *mediaStream) {
	ng.emit(flash.LevelStatus, GroupMulticastUnpublish, m.name+" is no longer published", "name", m.name)
	if g := m.local; g != nil && !g.publisher {
		g.ns.emit(flash.LevelStatus, GroupMulticastUnpublish, m.name+" is no longer published")
		g.ns.emit(flash.LevelStatus, PlayUnpublishNotify, m.name+" is now unpublished")
	}
}

// mediaTick runs every stream's periodic work (on the loop).
// misbehaviourBan is how long a neighbour that misbehaved in a stream is
// refused.
const misbehaviourBan = 10 * time.Minute

func (ng *NetGroup) mediaTick(now time.Time) {
	for _, m := range ng.media {
		for _, id := range m.st.Misbehaving(now) {
			ng.log.Info("neighbour dropped: it misbehaved in a multicast stream", "peer", groupLog(id), "stream", m.name)
			ng.mesh.Ban(now, id, misbehaviourBan)
			if l := ng.links[id]; l != nil {
				ng.closeLink(l, false, "misbehaved in a multicast stream")
			}
			m.dropPeer(id)
		}
	}
	if len(ng.pending) > 0 && now.Sub(ng.pending[0].at) > pendingAnnounceTTL {
		ng.takePending("", now)
	}
	for _, m := range ng.media {
		m.st.Tick(now, m)
		if m.local == nil || m.local.publisher {
			continue
		}
		if last := m.st.LastReceived(); !last.IsZero() && now.Sub(last) > multicastMediaTimeout {
			if !m.ended {
				ng.notifyUnpublish(m)
			}
			g := m.local
			g.ms, m.local = nil, nil
			m.close(false)
		}
	}
}

// mediaLinkUp announces our streams on a new neighbourship: those we
// publish, and those we play and already have fragments of.
func (ng *NetGroup) mediaLinkUp(l *groupLink) {
	for _, m := range ng.media {
		mp := m.peers[l.id]
		waiting := mp != nil && mp.l == l && mp.in11 != nil // it announced before we were ready
		if waiting || m.local != nil && (m.local.publisher || m.st.Stats().Held > 0) {
			mp = m.announceTo(l)
			if waiting {
				m.maybeAdd(l.id, mp)
			}
		}
	}
}

// mediaLinkDown drops a neighbour from every stream.
func (ng *NetGroup) mediaLinkDown(l *groupLink) {
	for _, m := range ng.media {
		if mp := m.peers[l.id]; mp != nil && mp.l == l {
			m.dropPeer(l.id)
		}
	}
}

// attachMediaFlow reads a neighbour's GR 11 or GR 12 flow.
func (nc *NetConnection) attachMediaFlow(pc *peerConn, f *engine.RecvFlow, kind byte) bool {
	peer, _ := ParsePeerID(pc.farID)
	switch kind {
	case groupmedia.MetaControl[2]:
		l := pc.linkFor(f)
		if l == nil {
			return false
		}
		ng := l.ng
		fs := &mediaFlowState{}
		// Only from a member whose group init was checked on this session.
		return ng.do(func() { ng.whenValidated(l, f, true, func(m []byte) { ng.onMediaControl(l, f, fs, m) }) })
	case groupmedia.MetaData[2]:
		assoc, ok := f.Assoc()
		if !ok {
			return false
		}
		pc.mu.Lock()
		ref, ok := pc.byMedia[assoc]
		pc.mu.Unlock()
		if !ok {
			return false
		}
		ref.ng.readFlow(f, func(m []byte) { ref.ng.onMediaData(ref.key, peer, m) })
		return true
	}
	return false
}
