package rtmfp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// ErrTooManyPeers is returned when MaxPeerConnections sessions are open.
var ErrTooManyPeers = errors.New("rtmfp: maxPeerConnections reached")

// peerConn is one direct session with a peer, shared by every NetStream
// between the two (in either direction). Its router hands each flow the
// peer opens to the right place.
type peerConn struct {
	nc      *NetConnection
	ps      *PeerSession
	farID   string
	refuse  bool // over MaxPeerConnections: refuse what the peer asks
	mu      sync.Mutex
	subs    map[uint64]*NetStream // our subscriber streams, by their play flow ID
	views   int                   // subscribers of ours on this session
	plays   int                   // play flows the peer has open (read or not)
	dialing chan struct{}
}

// peer returns the session with peerID, opening it through the server's
// introduction if needed (bounded by Config.PeerTimeout).
func (nc *NetConnection) peer(ctx context.Context, peerID string) (*peerConn, error) {
	nc.mu.Lock()
	if pc := nc.peers[peerID]; pc != nil {
		d := pc.dialing
		nc.mu.Unlock()
		if d != nil {
			select {
			case <-d:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return nc.peer(ctx, peerID)
		}
		return pc, nil
	}
	if len(nc.peers) >= nc.maxPeers() {
		nc.mu.Unlock()
		return nil, ErrTooManyPeers
	}
	pc := &peerConn{nc: nc, farID: peerID, subs: map[uint64]*NetStream{}, dialing: make(chan struct{})}
	nc.peers[peerID] = pc
	nc.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, nc.cfg.PeerTimeout)
	ps, err := nc.dialSession(dctx, peerID)
	cancel()
	nc.mu.Lock()
	close(pc.dialing)
	pc.dialing = nil
	if err != nil {
		delete(nc.peers, peerID)
		nc.mu.Unlock()
		return nil, err
	}
	pc.ps = ps
	nc.mu.Unlock()
	nc.wg.Add(1)
	go pc.route()
	return pc, nil
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
		ps := &PeerSession{nc: nc, sess: sess}
		id := ps.FarID()
		nc.mu.Lock()
		if old := nc.peers[id]; old != nil && old.ps != nil && old.ps.sess == ps.sess {
			nc.mu.Unlock()
			continue // glare resolved onto the session we already route
		}
		pc := &peerConn{nc: nc, ps: ps, farID: id, subs: map[uint64]*NetStream{}}
		if len(nc.peers) >= nc.maxPeers() {
			// maxPeerConnections: refuse whatever this peer asks, then
			// close the session.
			pc.refuse = true
		} else {
			nc.peers[id] = pc
		}
		nc.mu.Unlock()
		nc.wg.Add(1)
		go pc.route()
	}
}

// route dispatches the flows the peer opens until the session ends.
func (pc *peerConn) route() {
	nc := pc.nc
	defer nc.wg.Done()
	if pc.refuse {
		nc.spawn(func() {
			select { // let the refusals reach the peer, then close
			case <-time.After(2 * time.Second):
			case <-nc.done:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			pc.ps.Close(ctx)
		})
	}
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
		switch {
		case pc.refuse:
			f.Reject(0)
		case !isTC:
			// A raw application flow: AcceptPeerFlow's.
			select {
			case nc.rawFlows <- peerFlow{pc.ps, f}:
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
	// The session ended: every stream on it is closed.
	pc.mu.Lock()
	subs := make([]*NetStream, 0, len(pc.subs))
	for _, s := range pc.subs {
		subs = append(subs, s)
	}
	pc.mu.Unlock()
	for _, s := range subs {
		s.emit(flash.LevelStatus, StreamConnectClosed, "peer session closed")
		s.finish()
	}
	nc.mu.Lock()
	if nc.peers[pc.farID] == pc {
		delete(nc.peers, pc.farID)
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	raw, err := f.Read(ctx)
	cancel()
	if err != nil {
		return
	}
	m, err := flash.ParseMessage(raw)
	if err != nil || !m.IsCommand() {
		f.Reject(0)
		return
	}
	cmd, err := flash.ParseCommand(m)
	name, _ := firstString(cmd.Arguments())
	if (err != nil && cmd.Name == "") || cmd.Name != "play" || name == "" {
		f.Reject(0)
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

// release closes the session when no stream uses it any more.
func (pc *peerConn) release() {
	pc.mu.Lock()
	idle := len(pc.subs) == 0 && pc.views == 0
	pc.mu.Unlock()
	if !idle || pc.ps == nil {
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

// PeerConnections is the number of open direct sessions (what
// MaxPeerConnections bounds).
func (nc *NetConnection) PeerConnections() int {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return len(nc.peers)
}
