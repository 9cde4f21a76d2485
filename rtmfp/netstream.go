package rtmfp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// DirectConnections is NetStream.DIRECT_CONNECTIONS: pass it to
// NewNetStream to publish peer to peer.
const DirectConnections = "directConnections"

// NetStream status codes.
const (
	StreamConnectSuccess  = "NetStream.Connect.Success"
	StreamConnectRejected = "NetStream.Connect.Rejected"
	StreamConnectFailed   = "NetStream.Connect.Failed"
	StreamConnectClosed   = "NetStream.Connect.Closed"
	PlayReset             = "NetStream.Play.Reset"
	PlayStart             = "NetStream.Play.Start"
	PlayFailed            = "NetStream.Play.Failed"
	PlayUnpublishNotify   = "NetStream.Play.UnpublishNotify"
	PublishStart          = "NetStream.Publish.Start"
)

// Message kinds carried by a NetStream (TC message types).
const (
	KindAudio = 0x08
	KindVideo = 0x09
	KindData  = 0x12
)

// Message is a media or data message received on a playing NetStream.
// Data messages (send() calls, onMetaData) keep their AMF0 body in Payload
// and are also decoded into Handler and Args.
type Message struct {
	Kind      byte
	Timestamp uint32
	Payload   []byte
	Handler   string
	Args      []any
}

// ErrStreamClosed is returned by operations on a closed NetStream.
var ErrStreamClosed = errors.New("rtmfp: NetStream closed")

type streamRole uint8

const (
	rolePublisher  streamRole = iota // NewNetStream(nc, DirectConnections)
	roleSubscriber                   // NewNetStream(nc, publisherPeerID)
	rolePeer                         // a subscriber as its publisher sees it (peerStreams)
)

// firstPeerStreamID is where Flash numbers peer NetStreams from.
const firstPeerStreamID = 2000000

// NetStream is a peer-to-peer NetStream, as in ActionScript: a publisher
// made with DirectConnections, a subscriber made with the publisher's peer
// ID, or (in PeerStreams and OnPeerConnect) a subscriber as the publisher
// sees it. Methods are safe for concurrent use.
type NetStream struct {
	nc   *NetConnection
	role streamRole

	mu            sync.Mutex
	mediaMu       sync.RWMutex // held for reading while pushing to media; closing takes it for writing
	onPeer        func(subscriber *NetStream) bool
	mediaLifetime time.Duration
	name          string
	farID         string
	closed        bool
	started       bool // subscriber: Play.Start seen
	peers         []*NetStream
	handlers      map[string]func(args []any)
	status        chan Status
	media         chan Message
	done          chan struct{}

	// subscriber, and the publisher's view of one
	pc       *peerConn
	streamID uint64
	playOut  *engine.SendFlow
	playIn   *engine.RecvFlow
	parent   *NetStream
	cmdOut   *engine.SendFlow
	audioOut *engine.SendFlow
	videoOut *engine.SendFlow
	inFlows  int
}

// NewNetStream creates a NetStream on nc: with DirectConnections a
// publisher, with a peer ID (64 hex digits) a subscriber of that peer.
func NewNetStream(nc *NetConnection, peerID string) (*NetStream, error) {
	ns := &NetStream{nc: nc, status: make(chan Status, 64), media: make(chan Message, 1024), done: make(chan struct{}),
		handlers: map[string]func([]any){}}
	if peerID == DirectConnections {
		ns.role = rolePublisher
		return ns, nil
	}
	if _, err := ParsePeerID(peerID); err != nil {
		return nil, err
	}
	ns.role, ns.farID = roleSubscriber, peerID
	return ns, nil
}

func newPeerView(nc *NetConnection, pc *peerConn, play *engine.RecvFlow, id uint64, name string) *NetStream {
	return &NetStream{nc: nc, role: rolePeer, pc: pc, farID: pc.farID, playIn: play, streamID: id, name: name,
		status: make(chan Status, 16), media: make(chan Message, 1), done: make(chan struct{}), handlers: map[string]func([]any){}}
}

// Name is the stream name (published, played, or asked for).
func (ns *NetStream) Name() string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.name
}

// FarID is the peer at the other end: the publisher for a subscriber,
// the subscriber for a stream in PeerStreams ("" for a publisher).
func (ns *NetStream) FarID() string { return ns.farID }

// Status delivers the stream's status events; unread events beyond the
// buffer are dropped.
func (ns *NetStream) Status() <-chan Status { return ns.status }

// Messages delivers what a playing stream receives: audio, video and data
// messages in order per kind. It is closed when the stream closes, so
// ranging over it ends.
func (ns *NetStream) Messages() <-chan Message { return ns.media }

// Done is closed when the stream closes.
func (ns *NetStream) Done() <-chan struct{} { return ns.done }

// Handle registers a handler for data messages (a publisher's send()) or
// commands arriving on a playing stream: the client object's methods.
func (ns *NetStream) Handle(name string, fn func(args []any)) {
	ns.mu.Lock()
	ns.handlers[name] = fn
	ns.mu.Unlock()
}

func (ns *NetStream) emit(level, code, desc string) {
	select {
	case ns.status <- Status{Level: level, Code: code, Description: desc, Info: flash.Info(level, code, desc)}:
	default:
	}
}

// OnPeerConnect sets the publisher's decision on each subscriber that
// plays its name (ActionScript's client.onPeerConnect): return false to
// refuse. Without it everyone is accepted, as in Flash.
func (ns *NetStream) OnPeerConnect(fn func(subscriber *NetStream) bool) {
	ns.mu.Lock()
	ns.onPeer = fn
	ns.mu.Unlock()
}

// SetMediaLifetime makes audio and video unreliable: messages not
// delivered within d are abandoned (audioReliable/videoReliable false).
// 0, the default, is reliable.
func (ns *NetStream) SetMediaLifetime(d time.Duration) {
	ns.mu.Lock()
	ns.mediaLifetime = d
	ns.mu.Unlock()
}

// PeerStreams lists the subscribers a publisher has accepted.
func (ns *NetStream) PeerStreams() []*NetStream {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]*NetStream(nil), ns.peers...)
}

// Publish starts publishing under name (DirectConnections streams only).
// Subscribers already waiting for that name are offered to OnPeerConnect.
func (ns *NetStream) Publish(name string) error {
	if ns.role != rolePublisher {
		return errors.New("rtmfp: Publish needs a NetStream made with DirectConnections")
	}
	nc := ns.nc
	nc.mu.Lock()
	if other := nc.publishers[name]; other != nil && other != ns {
		nc.mu.Unlock()
		return errors.New("rtmfp: " + name + " is already published")
	}
	ns.mu.Lock()
	if ns.name != "" && ns.name != name {
		delete(nc.publishers, ns.name)
	}
	ns.name = name
	ns.mu.Unlock()
	nc.publishers[name] = ns
	var waiting []*NetStream
	keep := nc.unconnected[:0]
	for _, s := range nc.unconnected {
		if s.name == name {
			waiting = append(waiting, s)
		} else {
			keep = append(keep, s)
		}
	}
	nc.unconnected = keep
	nc.mu.Unlock()
	ns.emit(flash.LevelStatus, PublishStart, name+" is now published")
	for _, s := range waiting {
		ns.offer(s)
	}
	return nil
}

// offer runs OnPeerConnect for a subscriber and answers its play.
func (ns *NetStream) offer(sub *NetStream) {
	ns.mu.Lock()
	fn := ns.onPeer
	ns.mu.Unlock()
	accept := true
	if fn != nil {
		accept = fn(sub)
	}
	if !accept {
		sub.playIn.Reject(0)
		sub.pc.release()
		return
	}
	ps := sub.pc.ps
	md := flash.TCMetadata(sub.streamID, false)
	var flows [3]*engine.SendFlow
	for i := range flows {
		f, err := ps.sess.OpenFlow(md, sub.playIn)
		if err != nil { // the session closed meanwhile
			for _, o := range flows[:i] {
				o.Close()
			}
			return
		}
		flows[i] = f
	}
	sub.cmdOut, sub.audioOut, sub.videoOut = flows[0], flows[1], flows[2]
	sub.audioOut.SetTimeCritical(true)
	sub.videoOut.SetTimeCritical(true)
	sub.parent = ns
	name := sub.name
	// Register the subscriber before telling it that playback started:
	// what the publisher writes from then on must reach it.
	ns.mu.Lock()
	closed := ns.closed
	if !closed {
		ns.peers = append(ns.peers, sub)
	}
	ns.mu.Unlock()
	if closed {
		sub.closePeerView(true)
		return
	}
	// What a Flash publisher sends (reference §6.4): Stream Begin, Play.Reset,
	// Play.Start, |RtmpSampleAccess.
	sub.cmdOut.TryWrite(flash.AppendUserControl(nil, flash.EventStreamBegin, uint32(sub.streamID)))
	for _, st := range [][2]string{{PlayReset, "Playing and resetting " + name}, {PlayStart, "Started playing " + name}} {
		if msg, err := flash.AppendCommand(nil, "onStatus", 0, nil, flash.Info(flash.LevelStatus, st[0], st[1], "details", name)); err == nil {
			sub.cmdOut.TryWrite(msg)
		}
	}
	if msg, err := flash.AppendData(nil, 0, "|RtmpSampleAccess", true, true); err == nil {
		sub.cmdOut.TryWrite(msg)
	}
	ns.emit(flash.LevelStatus, StreamConnectSuccess, "subscriber "+sub.farID+" connected")
}

// Send calls handler(args...) on every subscriber (a publisher), or on
// that one subscriber (a stream from PeerStreams).
func (ns *NetStream) Send(handler string, args ...any) error {
	msg, err := flash.AppendData(nil, 0, handler, args...)
	if err != nil {
		return err
	}
	return ns.write(KindData, msg, time.Time{})
}

// WriteAudio, WriteVideo and WriteData send a media message with its
// timestamp (milliseconds) to the subscribers. WriteData takes an AMF0
// data body (handler name and values, as in an FLV script tag).
func (ns *NetStream) WriteAudio(ts uint32, data []byte) error {
	return ns.write(KindAudio, append(flash.AppendMessageHeader(nil, flash.TypeAudio, ts), data...), ns.deadline())
}

// WriteVideo sends a video message.
func (ns *NetStream) WriteVideo(ts uint32, data []byte) error {
	return ns.write(KindVideo, append(flash.AppendMessageHeader(nil, flash.TypeVideo, ts), data...), ns.deadline())
}

// WriteData sends a data message whose body is already AMF0 encoded.
func (ns *NetStream) WriteData(ts uint32, body []byte) error {
	return ns.write(KindData, append(flash.AppendMessageHeader(nil, flash.TypeData, ts), body...), time.Time{})
}

func (ns *NetStream) deadline() time.Time {
	ns.mu.Lock()
	d := ns.mediaLifetime
	ns.mu.Unlock()
	if d > 0 {
		return time.Now().Add(d)
	}
	return time.Time{}
}

// ErrSlowSubscriber counts as a drop: the subscriber's flow already holds
// the maximum unacknowledged data.
var ErrSlowSubscriber = errors.New("rtmfp: subscriber not keeping up: message dropped")

func (ns *NetStream) write(kind byte, msg []byte, deadline time.Time) error {
	var targets []*NetStream
	switch ns.role {
	case rolePublisher:
		targets = ns.PeerStreams()
	case rolePeer:
		targets = []*NetStream{ns}
	default:
		return errors.New("rtmfp: only a publisher writes")
	}
	var firstErr error
	for _, sub := range targets {
		f := sub.cmdOut
		switch kind {
		case KindAudio:
			f = sub.audioOut
		case KindVideo:
			f = sub.videoOut
		}
		if f == nil {
			continue
		}
		if err := f.TryWriteBy(msg, deadline); err != nil && firstErr == nil {
			if errors.Is(err, engine.ErrBufferFull) {
				err = ErrSlowSubscriber
			}
			firstErr = err
		}
	}
	return firstErr
}

// Play subscribes to name at the publisher this stream was made for: the
// server introduces us, a direct session opens, and play goes out on a new
// flow. NetStream.Connect.Success reports the session; Play.Reset and
// Play.Start come from the publisher; a refusal gives
// NetStream.Connect.Rejected, an unreachable publisher
// NetStream.Connect.Failed (within Config.PeerTimeout).
func (ns *NetStream) Play(ctx context.Context, name string) error {
	if ns.role != roleSubscriber {
		return errors.New("rtmfp: Play needs a NetStream made with the publisher's peer ID")
	}
	ns.mu.Lock()
	ns.name = name
	ns.mu.Unlock()
	pc, err := ns.nc.peer(ctx, ns.farID)
	if err != nil {
		ns.emit(flash.LevelError, StreamConnectFailed, "cannot reach "+ns.farID+": "+err.Error())
		ns.finish()
		return &StatusError{Status{Level: flash.LevelError, Code: StreamConnectFailed, Description: err.Error()}}
	}
	id := ns.nc.nextStreamID()
	f, err := pc.ps.sess.OpenFlow(flash.TCMetadata(id, false), nil)
	if err != nil {
		ns.finish()
		return err
	}
	ns.mu.Lock()
	closed := ns.closed
	ns.pc, ns.streamID, ns.playOut = pc, id, f
	ns.mu.Unlock()
	if closed { // Close ran while we were dialing
		f.Close()
		pc.release()
		return ErrStreamClosed
	}
	pc.addSub(f.ID(), ns)
	ns.emit(flash.LevelStatus, StreamConnectSuccess, "connected to "+ns.farID)
	msg, err := flash.AppendCommand(nil, "play", 0, nil, name)
	if err != nil {
		return err
	}
	if err := f.Write(msg); err != nil {
		return err
	}
	ns.nc.spawn(ns.watchPlay)
	return nil
}

// watchPlay turns a refused play flow into NetStream.Connect.Rejected.
func (ns *NetStream) watchPlay() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-ns.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = ns.playOut.WaitComplete(ctx)
	cancel()
	if rej, _ := ns.playOut.Rejected(); rej {
		ns.mu.Lock()
		started := ns.started
		ns.mu.Unlock()
		if !started {
			ns.emit(flash.LevelError, StreamConnectRejected, "no permission to access the other peer")
		}
		ns.emit(flash.LevelStatus, StreamConnectClosed, "stream closed")
		ns.finish()
	}
}

// attach reads one of the publisher's flows for this subscriber.
func (ns *NetStream) attach(f *engine.RecvFlow) {
	ns.mu.Lock()
	ns.inFlows++
	ns.mu.Unlock()
	ctx := context.Background()
	for {
		raw, err := f.Read(ctx)
		if err != nil {
			break
		}
		ns.deliver(raw)
	}
	ns.mu.Lock()
	ns.inFlows--
	last := ns.inFlows == 0
	ns.mu.Unlock()
	if last {
		// Every flow the publisher opened for us has ended.
		ns.emit(flash.LevelStatus, StreamConnectClosed, "publisher closed the stream")
		ns.finish()
	}
}

func (ns *NetStream) deliver(raw []byte) {
	m, err := flash.ParseMessage(raw)
	if err != nil {
		return
	}
	switch {
	case m.Type == flash.TypeAudio || m.Type == flash.TypeVideo:
		ns.push(Message{Kind: m.Type, Timestamp: m.Timestamp, Payload: m.Payload})
	case m.IsData():
		d, err := flash.ParseData(m)
		if err != nil || d.Handler == "|RtmpSampleAccess" {
			return
		}
		body := m.Payload
		if m.Type == flash.TypeDataAMF3 && len(body) > 0 {
			body = body[1:]
		}
		ns.push(Message{Kind: KindData, Timestamp: m.Timestamp, Payload: body, Handler: d.Handler, Args: d.Args})
		ns.call(d.Handler, d.Args)
	case m.IsCommand():
		cmd, err := flash.ParseCommand(m)
		if err != nil && cmd.Name == "" {
			return
		}
		if cmd.Name == "onStatus" {
			st := statusOf(cmd.Arguments())
			if st.Code == PlayStart {
				ns.mu.Lock()
				ns.started = true
				ns.mu.Unlock()
			}
			if st.Code != "" {
				select {
				case ns.status <- st:
				default:
				}
			}
			return
		}
		ns.call(cmd.Name, cmd.Arguments())
	}
}

func (ns *NetStream) call(name string, args []any) {
	ns.mu.Lock()
	h := ns.handlers[name]
	ns.mu.Unlock()
	if h != nil {
		h(args)
	}
}

func (ns *NetStream) push(m Message) {
	ns.mediaMu.RLock()
	defer ns.mediaMu.RUnlock()
	select {
	case <-ns.done:
		return // closed: media is (about to be) closed too
	default:
	}
	select {
	case ns.media <- m:
	case <-ns.done:
	}
}

// markClosed closes the stream's done channel once; it reports whether
// this call did it.
func (ns *NetStream) markClosed() bool {
	ns.mu.Lock()
	if ns.closed {
		ns.mu.Unlock()
		return false
	}
	ns.closed = true
	close(ns.done) // unblocks pushers first
	ns.mu.Unlock()
	ns.mediaMu.Lock()
	close(ns.media) // so that "for m := range Messages()" ends
	ns.mediaMu.Unlock()
	return true
}

// finish marks the stream closed (once).
func (ns *NetStream) finish() {
	if !ns.markClosed() {
		return
	}
	ns.mu.Lock()
	pc, out := ns.pc, ns.playOut
	ns.mu.Unlock()
	if pc != nil && out != nil {
		pc.removeSub(out.ID())
	}
}

// Close closes the stream. A subscriber sends closeStream and finishes its
// play flow; a publisher tells each subscriber NetStream.Play.UnpublishNotify
// and finishes their flows; a stream from PeerStreams drops that subscriber.
func (ns *NetStream) Close() error {
	switch ns.role {
	case roleSubscriber:
		ns.mu.Lock()
		out, pc := ns.playOut, ns.pc
		ns.mu.Unlock()
		if out != nil {
			if msg, err := flash.AppendCommand(nil, "closeStream", 0, nil); err == nil {
				out.TryWrite(msg)
			}
			out.Close()
		}
		ns.finish()
		if pc != nil {
			ns.nc.spawn(pc.release) // let the peer session go if nothing else uses it
		}
	case rolePublisher:
		nc := ns.nc
		nc.mu.Lock()
		if nc.publishers[ns.name] == ns {
			delete(nc.publishers, ns.name)
		}
		nc.mu.Unlock()
		ns.mu.Lock()
		peers := ns.peers
		ns.peers = nil
		ns.mu.Unlock()
		for _, sub := range peers {
			sub.closePeerView(true)
		}
		ns.markClosed()
	case rolePeer:
		ns.closePeerView(true)
	}
	return nil
}

// closePeerView ends one subscriber of a publisher.
func (sub *NetStream) closePeerView(notify bool) {
	if !sub.markClosed() {
		return
	}
	if notify && sub.cmdOut != nil {
		if msg, err := flash.AppendCommand(nil, "onStatus", 0, nil,
			flash.Info(flash.LevelStatus, PlayUnpublishNotify, sub.name+" is now unpublished")); err == nil {
			sub.cmdOut.TryWrite(msg)
		}
	}
	for _, f := range []*engine.SendFlow{sub.cmdOut, sub.audioOut, sub.videoOut} {
		if f != nil {
			f.Close()
		}
	}
	if p := sub.parent; p != nil {
		p.mu.Lock()
		for i, x := range p.peers {
			if x == sub {
				p.peers = append(p.peers[:i], p.peers[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		p.emit(flash.LevelStatus, StreamConnectClosed, "subscriber "+sub.farID+" left")
	}
	sub.nc.mu.Lock()
	for i, x := range sub.nc.unconnected {
		if x == sub {
			sub.nc.unconnected = append(sub.nc.unconnected[:i], sub.nc.unconnected[i+1:]...)
			break
		}
	}
	sub.nc.mu.Unlock()
}

// UnconnectedPeerStreams lists subscribers whose play named a stream that
// nothing here publishes yet.
func (nc *NetConnection) UnconnectedPeerStreams() []*NetStream {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return append([]*NetStream(nil), nc.unconnected...)
}

func (nc *NetConnection) nextStreamID() uint64 {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	nc.streamSeq++
	return firstPeerStreamID + nc.streamSeq - 1
}

var _ = amf.Undefined{}
