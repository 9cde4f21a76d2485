package rtmfp

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// ErrBadPeerID is returned for a peer ID that is not 64 hex digits.
var ErrBadPeerID = errors.New("rtmfp: a peer ID is 64 hex digits")

// ParsePeerID decodes a 64-hex-digit peer ID.
func ParsePeerID(s string) ([32]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return [32]byte{}, ErrBadPeerID
	}
	return [32]byte(b), nil
}

// PeerSession is a direct RTMFP session with another peer, opened through
// the server's introduction. NetStream builds on it; it is exposed for
// applications that want raw flows between peers.
type PeerSession struct {
	nc   *NetConnection
	sess *engine.Session
}

// DialPeer opens a direct session to the peer with that ID (or returns
// the open one): an IHello to the server, which introduces us (Redirect to
// us, Forwarded IHello to the peer); the first RHello from the peer wins.
// Bounded by Config.PeerTimeout and ctx.
func (nc *NetConnection) DialPeer(ctx context.Context, peerID string) (*PeerSession, error) {
	pc, err := nc.peer(ctx, peerID)
	if err != nil {
		return nil, err
	}
	pc.raw.Store(true)
	return pc.ps, nil
}

// dialSession runs the introduction and handshake for peer: IHellos to
// the server and to any addresses already known for the peer.
func (nc *NetConnection) dialSession(ctx context.Context, peerID string, extra []netip.AddrPort) (*PeerSession, error) {
	id, err := ParsePeerID(peerID)
	if err != nil {
		return nil, err
	}
	sess, err := nc.e.Connect(ctx, handshake.FingerprintEPD(id), engine.ConnectOptions{Reuse: true}, append([]netip.AddrPort{nc.server}, extra...)...)
	if err != nil {
		return nil, err
	}
	nc.applyPeerKeepalive(sess)
	return &PeerSession{nc: nc, sess: sess}, nil
}

// AcceptPeerFlow waits for a peer to open a flow that is not a NetStream
// flow (raw application flows between peers), on a session either side
// opened.
func (nc *NetConnection) AcceptPeerFlow(ctx context.Context) (*PeerSession, *PeerFlow, error) {
	select {
	case pf := <-nc.rawFlows:
		return pf.ps, &PeerFlow{f: pf.f}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-nc.done:
		return nil, nil, ErrStreamClosed
	}
}

type peerFlow struct {
	ps *PeerSession
	f  *engine.RecvFlow
}

func (nc *NetConnection) applyPeerKeepalive(s *engine.Session) {
	ka := nc.PeerKeepalive()
	s.SetKeepalive(ka, 4*ka)
}

// FarID is the peer's ID.
func (p *PeerSession) FarID() string {
	id := p.sess.PeerID()
	return hex.EncodeToString(id[:])
}

// RemoteAddr is the peer's current address.
func (p *PeerSession) RemoteAddr() netip.AddrPort { return p.sess.RemoteAddr() }

// OpenFlow opens a flow to the peer with the given metadata (what the
// peer's AcceptPeerFlow sees as PeerFlow.Metadata).
func (p *PeerSession) OpenFlow(metadata []byte) (*PeerWriter, error) {
	f, err := p.sess.OpenFlow(metadata, nil)
	if err != nil {
		return nil, err
	}
	return &PeerWriter{f: f}, nil
}

// PeerFlow is a flow a peer opened to us: a reliable, ordered sequence of
// messages.
type PeerFlow struct{ f *engine.RecvFlow }

// ID is the flow ID the peer chose.
func (f *PeerFlow) ID() uint64 { return f.f.ID() }

// Metadata is what the peer passed to OpenFlow.
func (f *PeerFlow) Metadata() []byte { return f.f.Metadata() }

// Read returns the next message, or io.EOF once the peer finished the
// flow (or the session closed) and every message was read.
func (f *PeerFlow) Read(ctx context.Context) ([]byte, error) { return f.f.Read(ctx) }

// Reject refuses the flow (an RTMFP flow exception with the code).
func (f *PeerFlow) Reject(code uint64) { f.f.Reject(code) }

// PeerWriter is a flow we opened to a peer.
type PeerWriter struct{ f *engine.SendFlow }

// ID is the flow ID.
func (w *PeerWriter) ID() uint64 { return w.f.ID() }

// Write queues a message, blocking while 1 MiB is not yet acknowledged.
func (w *PeerWriter) Write(msg []byte) error { return w.f.Write(msg) }

// Close finishes the flow after what was written.
func (w *PeerWriter) Close() { w.f.Close() }

// WaitComplete waits until the peer has acknowledged everything through
// the end of the flow; it fails if the peer refused the flow or the
// session closed.
func (w *PeerWriter) WaitComplete(ctx context.Context) error { return w.f.WaitComplete(ctx) }

// Done is closed when the session closes.
func (p *PeerSession) Done() <-chan struct{} { return p.sess.Done() }

// Close closes the session.
func (p *PeerSession) Close(ctx context.Context) error { return p.sess.Close(ctx) }
