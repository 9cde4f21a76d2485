package rtmfp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
)

// ErrTooManyPeers is returned when MaxPeerConnections sessions are open.
var ErrTooManyPeers = errors.New("rtmfp: maxPeerConnections reached")

// refusedLinger is how long a session whose requests we refused stays
// open, so that the refusals reach the peer before the close.
const refusedLinger = 2 * time.Second

// idleAccepted is how long a session a peer opened may stay without any
// use (no stream, group neighbourship or raw flow) before we close it.
var idleAccepted = 30 * time.Second

// peerConn is one session with a peer, shared by every NetStream between
// the two (in either direction), every NetGroup in which they are
// neighbours, and raw flows. Its router hands each flow the peer opens to
// the right place.
type peerConn struct {
	nc    *NetConnection
	ps    *PeerSession
	farID string
	// direct: the session serves direct NetStreams, so it counts against
	// MaxPeerConnections. Group neighbourships have their own bound.
	direct atomic.Bool
	raw    atomic.Bool // raw flows (DialPeer, AcceptPeerFlow)

	mu     sync.Mutex
	subs   map[uint64]*NetStream // our subscriber streams, by their play flow ID
	views  int                   // subscribers of ours on this session
	plays  int                   // play flows the peer has open (read or not)
	groups map[*NetGroup]*groupLink
	byFlow map[uint64]*groupLink // group links by our GR 1c flow ID
	// byMedia: multicast streams by our GR 11 flow ID (the far side's
	// GR 12 flows are associated with it)
	byMedia map[uint64]mediaRef
	gone    bool
}

func newPeerConn(nc *NetConnection, ps *PeerSession) *peerConn {
	return &peerConn{nc: nc, ps: ps, farID: ps.FarID(), subs: map[uint64]*NetStream{}, groups: map[*NetGroup]*groupLink{},
		byFlow: map[uint64]*groupLink{}}
}

// peer returns the session with peerID for a direct NetStream, opening it
// through the server's introduction if needed (bounded by
// Config.PeerTimeout).
func (nc *NetConnection) peer(ctx context.Context, peerID string) (*peerConn, error) {
	return nc.dialPeer(ctx, peerID, true, nil)
}

// dialPeer returns the open session with peerID or opens one: IHellos to
// the server (which introduces us) and to the extra addresses. direct
// sessions are bounded by MaxPeerConnections.
func (nc *NetConnection) dialPeer(ctx context.Context, peerID string, direct bool, extra []netip.AddrPort) (*peerConn, error) {
	if _, err := ParsePeerID(peerID); err != nil {
		return nil, err
	}
	for {
		nc.mu.Lock()
		if nc.closed {
			nc.mu.Unlock()
			return nil, ErrStreamClosed
		}
		if pc := nc.peers[peerID]; pc != nil && !pc.ps.sess.Closing() {
			if direct && !pc.direct.Load() {
				if nc.directCountLocked() >= nc.maxPeers() {
					nc.mu.Unlock()
					return nil, ErrTooManyPeers
				}
				pc.direct.Store(true)
			}
			nc.mu.Unlock()
			return pc, nil
		}
		if d := nc.dialing[peerID]; d != nil {
			nc.mu.Unlock()
			select {
			case <-d:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if direct && nc.directCountLocked() >= nc.maxPeers() {
			nc.mu.Unlock()
			return nil, ErrTooManyPeers
		}
		d := make(chan struct{})
		nc.dialing[peerID] = d
		nc.mu.Unlock()

		dctx, cancel := context.WithTimeout(ctx, nc.cfg.PeerTimeout)
		ps, err := nc.dialSession(dctx, peerID, extra)
		cancel()
		nc.mu.Lock()
		delete(nc.dialing, peerID)
		close(d)
		if err != nil {
			nc.mu.Unlock()
			return nil, err
		}
		pc, created := nc.attachLocked(ps)
		if direct {
			pc.direct.Store(true)
		}
		nc.mu.Unlock()
		if created {
			nc.wg.Add(1)
			go pc.route()
		}
		return pc, nil
	}
}

// attachLocked returns the peerConn of a session, making it if new; nc.mu
// held.
func (nc *NetConnection) attachLocked(ps *PeerSession) (*peerConn, bool) {
	if pc := nc.bySess[ps.sess]; pc != nil {
		return pc, false
	}
	pc := newPeerConn(nc, ps)
	nc.bySess[ps.sess] = pc
	if old := nc.peers[pc.farID]; old == nil || old.ps.sess.Closing() {
		nc.peers[pc.farID] = pc
	}
	return pc, true
}

func (nc *NetConnection) directCountLocked() int {
	n := 0
	for _, pc := range nc.bySess {
		if pc.direct.Load() {
			n++
		}
	}
	return n
}

func (nc *NetConnection) maxPeers() int {
	if nc.MaxPeerConnections <= 0 {
		return 8
	}
	return nc.MaxPeerConnections
}

// acceptPeers takes sessions peers open to us.
func (nc *NetConnection) acceptPeers() {
	defer nc.wg.Done()
	for {
		sess, err := nc.e.Accept(context.Background())
		if err != nil {
			return
		}
		if sess == nc.sess {
			continue
		}
		nc.applyPeerKeepalive(sess)
		nc.mu.Lock()
		pc, created := nc.attachLocked(&PeerSession{nc: nc, sess: sess})
		nc.mu.Unlock()
		if !created {
			continue // glare resolved onto the session we dialled
		}
		nc.wg.Add(1)
		go pc.route()
		nc.spawn(func() { pc.after(idleAccepted, true) })
	}
}

// route dispatches the flows the peer opens until the session ends.
func (pc *peerConn) route() {
	nc := pc.nc
	defer nc.wg.Done()
	ctx := context.Background()
	for {
		f, err := pc.ps.sess.AcceptFlow(ctx)
		if err != nil {
			break
		}
		md, isTC := flash.ParseTCMetadata(f.Metadata())
		assoc, hasAssoc := f.Assoc()
		pc.mu.Lock()
		sub := pc.subs[assoc]
		pc.mu.Unlock()
		switch kind := group.FlowKind(f.Metadata()); {
		case kind == group.FlowKind(group.MetaSession):
			nc.spawn(func() { nc.onGroupSessionFlow(pc, f) }) // a group member's handshake
		case kind != 0:
			nc.spawn(func() { nc.attachGroupFlow(pc, f, kind) })
		case !isTC:
			// A raw application flow: AcceptPeerFlow's.
			select {
			case nc.rawFlows <- peerFlow{pc.ps, f}:
				pc.raw.Store(true)
			default:
				f.Reject(0)
			}
		case hasAssoc && sub != nil:
			nc.spawn(func() { sub.attach(f) }) // the publisher's flow for one of our streams
		case !hasAssoc && md.StreamID != 0:
			if !pc.takePlay() {
				f.Reject(0) // a peer opening play flows without end
				continue
			}
			nc.spawn(func() {
				defer pc.donePlay()
				pc.onPlayFlow(f, md.StreamID) // the peer subscribes to us
			})
		default:
			f.Reject(0)
		}
	}
	// The session ended: every stream and neighbourship on it is closed.
	pc.mu.Lock()
	pc.gone = true
	subs := make([]*NetStream, 0, len(pc.subs))
	for _, s := range pc.subs {
		subs = append(subs, s)
	}
	links := make([]*groupLink, 0, len(pc.groups))
	for _, l := range pc.groups {
		links = append(links, l)
	}
	pc.mu.Unlock()
	for _, s := range subs {
		s.emit(flash.LevelStatus, StreamConnectClosed, "peer session closed")
		s.finish()
	}
	for _, l := range links {
		l.ng.sessionEnded(l)
	}
	nc.mu.Lock()
	if nc.peers[pc.farID] == pc {
		delete(nc.peers, pc.farID)
	}
	delete(nc.bySess, pc.ps.sess)
	var views []*NetStream
	for _, p := range nc.publishers {
		for _, v := range p.PeerStreams() {
			if v.pc == pc {
				views = append(views, v)
			}
		}
	}
	for _, v := range nc.unconnected {
		if v.pc == pc {
			views = append(views, v)
		}
	}
	nc.mu.Unlock()
	for _, v := range views {
		v.closePeerView(false)
	}
}

// linkFor finds the group link a group flow belongs to: by its
// association with our GR 1c flow, or, without one, the session's only
// link.
func (pc *peerConn) linkFor(f *engine.RecvFlow) *groupLink {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if assoc, ok := f.Assoc(); ok {
		if l := pc.byFlow[assoc]; l != nil {
			return l
		}
	}
	if len(pc.groups) == 1 {
		for _, l := range pc.groups {
			return l
		}
	}
	return nil
}

// maxPlaysPerPeer bounds the play flows one peer may have open towards
// us: each is a subscriber (or one parked in unconnectedPeerStreams) and
// a goroutine. Flash opens one per NetStream it plays.
const maxPlaysPerPeer = 32

func (pc *peerConn) takePlay() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.plays >= maxPlaysPerPeer {
		return false
	}
	pc.plays++
	return true
}

func (pc *peerConn) donePlay() {
	pc.mu.Lock()
	pc.plays--
	pc.mu.Unlock()
}

// onPlayFlow reads a subscriber's play and offers it to the publisher of
// that name, or parks it in unconnectedPeerStreams.
func (pc *peerConn) onPlayFlow(f *engine.RecvFlow, streamID uint64) {
	nc := pc.nc
	nc.mu.Lock()
	if !pc.direct.Load() && nc.directCountLocked() >= nc.maxPeers() {
		// maxPeerConnections: refuse, and let the session go unless
		// something else uses it.
		nc.mu.Unlock()
		f.Reject(0)
		nc.spawn(func() { pc.after(refusedLinger, false) })
		return
	}
	pc.direct.Store(true)
	nc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	raw, err := f.Read(ctx)
	cancel()
	if err != nil {
		pc.release()
		return
	}
	m, err := flash.ParseMessage(raw)
	if err != nil || !m.IsCommand() {
		f.Reject(0)
		pc.release()
		return
	}
	cmd, err := flash.ParseCommand(m)
	name, _ := firstString(cmd.Arguments())
	if (err != nil && cmd.Name == "") || cmd.Name != "play" || name == "" {
		f.Reject(0)
		pc.release()
		return
	}
	sub := newPeerView(nc, pc, f, streamID, name)
	pc.mu.Lock()
	pc.views++
	pc.mu.Unlock()
	nc.mu.Lock()
	pub := nc.publishers[name]
	if pub == nil {
		nc.unconnected = append(nc.unconnected, sub)
	}
	nc.mu.Unlock()
	if pub != nil {
		pub.offer(sub)
	}
	// Keep reading: closeStream or the end of the flow means the
	// subscriber left.
	for {
		raw, err := f.Read(context.Background())
		if err != nil {
			break
		}
		if m, err := flash.ParseMessage(raw); err == nil && m.IsCommand() {
			if c, _ := flash.ParseCommand(m); c.Name == "closeStream" {
				break
			}
		}
	}
	sub.closePeerView(false)
	pc.mu.Lock()
	pc.views--
	pc.mu.Unlock()
	pc.release()
}

func firstString(args []any) (string, bool) {
	for _, a := range args {
		if s, ok := a.(string); ok {
			return s, true
		}
	}
	return "", false
}

func (pc *peerConn) addSub(id uint64, ns *NetStream) {
	pc.mu.Lock()
	pc.subs[id] = ns
	pc.mu.Unlock()
}

func (pc *peerConn) removeSub(id uint64) {
	pc.mu.Lock()
	delete(pc.subs, id)
	pc.mu.Unlock()
}

// after waits d (or until the connection closes), then releases the
// session as releaseIf does.
func (pc *peerConn) after(d time.Duration, onlyIfNeverUsed bool) {
	select {
	case <-time.After(d):
		pc.releaseIf(onlyIfNeverUsed)
	case <-pc.nc.done:
	}
}

// release closes the session when nothing uses it any more; a session
// still used by group neighbourships stops counting as a direct one.
func (pc *peerConn) release() { pc.releaseIf(false) }

// releaseIf closes the session if unused; with onlyIfNeverUsed, only if it
// never served anything (the idle check of accepted sessions).
func (pc *peerConn) releaseIf(onlyIfNeverUsed bool) {
	pc.mu.Lock()
	noStreams := len(pc.subs) == 0 && pc.views == 0
	idle := noStreams && len(pc.groups) == 0 && !pc.raw.Load()
	gone := pc.gone
	pc.mu.Unlock()
	if onlyIfNeverUsed && pc.direct.Load() {
		return
	}
	if noStreams {
		pc.direct.Store(false)
	}
	if !idle || gone {
		return
	}
	nc := pc.nc
	nc.mu.Lock()
	if nc.peers[pc.farID] == pc {
		delete(nc.peers, pc.farID)
	}
	nc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if pc.ps.Close(ctx) != nil {
		pc.ps.sess.Abort()
	}
}

// PeerConnections is the number of open sessions serving direct
// NetStreams (what MaxPeerConnections bounds; group neighbours are not
// counted).
func (nc *NetConnection) PeerConnections() int {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.directCountLocked()
}
