// Package rtmfp is a Go client for RTMFP rendezvous servers and peers that
// mirrors Flash's ActionScript API: NetConnection to a server (Stratus,
// Cirrus, or anything Flash-compatible), then direct peer-to-peer
// NetStreams. It speaks the Flash profile byte for byte, so it works with
// other Flash-compatible servers and peers, not only with Stratus.
package rtmfp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// NetConnection status codes, as Flash reports them.
const (
	ConnectSuccess       = "NetConnection.Connect.Success"
	ConnectFailed        = "NetConnection.Connect.Failed"
	ConnectRejected      = "NetConnection.Connect.Rejected"
	ConnectClosed        = "NetConnection.Connect.Closed"
	ConnectNetworkChange = "NetConnection.Connect.NetworkChange"
	ConnectAppShutdown   = "NetConnection.Connect.AppShutdown"
	CallFailed           = "NetConnection.Call.Failed"
)

// Status is a status event: the info object's level, code and description.
type Status struct {
	Level, Code, Description string
	Info                     *amf.Object
}

func (s Status) String() string { return s.Code + ": " + s.Description }

// StatusError is a failed Connect or Call, carrying the status Flash would
// report.
type StatusError struct{ Status Status }

func (e *StatusError) Error() string { return e.Status.Code + " (" + e.Status.Description + ")" }

// Config tunes a NetConnection. The zero value works.
type Config struct {
	// ConnectTimeout bounds how long Connect waits for the server: Flash
	// waits 90 s before NetConnection.Connect.Failed; the default here is
	// 30 s.
	ConnectTimeout time.Duration
	// LocalAddr is the UDP address to bind (default ":0", all interfaces).
	LocalAddr string
	// PacketConn, if set, is used instead of binding LocalAddr (the
	// connection owns and closes it).
	PacketConn net.PacketConn
	// AMF0 sends objectEncoding 0 in connect instead of Flash's default 3.
	AMF0 bool
	// RequireHMAC and RequireSequenceNumbers insist on the optional RFC
	// 7425 packet HMAC and session sequence numbers in both directions;
	// by default each is offered, as Flash does.
	RequireHMAC            bool
	RequireSequenceNumbers bool
	// PeerTimeout bounds how long Play waits for a direct session with the
	// publisher before NetStream.Connect.Failed (default 20 s).
	PeerTimeout time.Duration
	// MaxGroupNeighbors bounds the neighbours of each NetGroup (default
	// 64). Group neighbours do not count against MaxPeerConnections,
	// which is for direct NetStreams: a group aims for about 13 + log2
	// of its size neighbours, more than Flash's default 8.
	MaxGroupNeighbors int
	// PeerAddresses overrides the local addresses sent in setPeerInfo
	// (default: the socket's port on every non-loopback interface address,
	// or the bound address itself).
	PeerAddresses []netip.AddrPort
	Logger        *slog.Logger
}

// NetConnection is a connection to an RTMFP server, as in ActionScript.
// Its methods are safe for concurrent use.
type NetConnection struct {
	cfg    Config
	url    string
	e      *engine.Engine
	id     *handshake.Identity
	sess   *engine.Session
	ctrl   *engine.SendFlow
	server netip.AddrPort
	log    *slog.Logger

	mu       sync.Mutex
	nextTx   float64
	calls    map[float64]chan callResult
	closed   bool
	closeErr error
	status   chan Status
	handlers map[string]func(args []any)
	// inHandler counts Handle callbacks running: Close called from one of
	// them cannot wait for the reader that runs it.
	inHandler atomic.Int32
	peerKA    time.Duration
	srvKA     time.Duration
	gotKA     chan struct{} // closed at the first set-keepalive

	// MaxPeerConnections bounds the direct peer sessions, incoming and
	// outgoing (ActionScript's default: 8). Lowering it refuses new ones
	// only.
	MaxPeerConnections int

	publishers  map[string]*NetStream
	unconnected []*NetStream
	peers       map[string]*peerConn // the current session with each peer
	bySess      map[*engine.Session]*peerConn
	dialing     map[string]chan struct{}
	streamSeq   uint64
	rawFlows    chan peerFlow
	groups      map[string]*NetGroup // by group ID (hex)
	srvCtrl     *engine.RecvFlow     // the server's NetConnection flow

	done chan struct{}
	wg   sync.WaitGroup
}

type callResult struct {
	ok   bool
	args []any
	// closed: no answer, the connection closed first (closed0).
	closed bool
}

// Connect connects to rtmfp://host[:port]/app... (port 1935 by default),
// sends connect with the given extra arguments, and returns once the
// server answers. A refusal or no answer returns a *StatusError with
// NetConnection.Connect.Rejected or .Failed.
func Connect(ctx context.Context, rawURL string, cfg *Config, args ...any) (*NetConnection, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 30 * time.Second
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	addrs, app, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	conn := c.PacketConn
	if conn == nil {
		local := c.LocalAddr
		if local == "" {
			local = ":0"
		}
		if conn, err = net.ListenPacket("udp", local); err != nil {
			return nil, err
		}
	}
	id, err := handshake.NewClientIdentity(nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	nc := &NetConnection{cfg: c, url: rawURL, id: id, log: c.Logger, calls: map[float64]chan callResult{}, nextTx: 2,
		status: make(chan Status, 64), handlers: map[string]func([]any){}, MaxPeerConnections: 8, peerKA: 10 * time.Second, gotKA: make(chan struct{}),
		done: make(chan struct{}), publishers: map[string]*NetStream{}, peers: map[string]*peerConn{}, rawFlows: make(chan peerFlow, 16),
		bySess: map[*engine.Session]*peerConn{}, dialing: map[string]chan struct{}{}, groups: map[string]*NetGroup{}}
	e, err := engine.New(conn, engine.Config{Identity: id, Policy: handshake.Requiring(c.RequireHMAC, c.RequireSequenceNumbers), OpenTimeout: c.ConnectTimeout, Logger: c.Logger,
		Keepalive: 15 * time.Second, DeadAfter: 60 * time.Second,
		// Multicast fragments (GR 12) are numbered by the stream and
		// reassembled there: each is taken as it arrives rather than
		// held behind a lost one until it is sent again (under loss,
		// that wait made pull answers look lost and pulls repeat).
		ArrivalOrder: func(md []byte) bool { return group.FlowKind(md) == group.FlowKind(group.MetaMediaData) }})
	if err != nil {
		conn.Close()
		return nil, err
	}
	nc.e = e
	fail := func(err error) (*NetConnection, error) {
		e.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	sess, err := e.Connect(cctx, handshake.AncillaryEPD(rawURL), engine.ConnectOptions{Introducer: true}, addrs...)
	if err != nil {
		return fail(&StatusError{Status{Level: flash.LevelError, Code: ConnectFailed, Description: "no answer from " + rawURL + ": " + err.Error()}})
	}
	nc.sess, nc.server = sess, sess.RemoteAddr()
	ctrl, err := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	if err != nil {
		return fail(err)
	}
	nc.ctrl = ctrl
	obj := amf.NewObject("app", app, "flashVer", "WIN 32,0,0,465", "swfUrl", amf.Undefined{}, "tcUrl", rawURL,
		"fpad", false, "capabilities", 235.0, "audioCodecs", 3575.0, "videoCodecs", 252.0, "videoFunction", 1.0,
		"pageUrl", amf.Undefined{}, "objectEncoding", objectEncoding(c.AMF0))
	msg, err := flash.AppendCommand(nil, "connect", 1, obj, args...)
	if err != nil {
		return fail(err)
	}
	reply := make(chan callResult, 1)
	nc.calls[1] = reply
	if err := ctrl.Write(msg); err != nil {
		return fail(err)
	}
	nc.wg.Add(1)
	go nc.serve()
	var r callResult
	select {
	case r = <-reply:
	case <-cctx.Done():
		nc.Close()
		return nil, &StatusError{Status{Level: flash.LevelError, Code: ConnectFailed, Description: "no answer to connect"}}
	case <-nc.done:
		// A server that refuses closes the connection right after its
		// answer, which the reader hands out before it reports the
		// close: both may be ready here, and select picks either. The
		// answer says why.
		select {
		case r = <-reply:
		default:
			r.closed = true
		}
	}
	if r.closed {
		nc.Close()
		return nil, &StatusError{Status{Level: flash.LevelError, Code: ConnectFailed, Description: "connection closed during connect"}}
	}
	st := statusOf(r.args)
	if !r.ok || st.Code != ConnectSuccess {
		if st.Code == "" {
			st = Status{Level: flash.LevelError, Code: ConnectRejected, Description: "refused"}
		}
		nc.Close()
		return nil, &StatusError{st}
	}
	nc.emit(st)
	sent, err := nc.sendPeerInfo()
	if err != nil {
		nc.log.Warn("setPeerInfo", "err", err)
	}
	nc.wg.Add(2)
	go nc.acceptPeers()
	go nc.watchNetwork(sent)
	return nc, nil
}

func objectEncoding(amf0 bool) float64 {
	if amf0 {
		return 0
	}
	return 3
}

// ParseURL resolves rtmfp://host[:port]/app... into UDP addresses and the
// application path (what connect calls app: the path without its leading
// slash).
func ParseURL(raw string) ([]netip.AddrPort, string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "rtmfp" || u.Hostname() == "" {
		return nil, "", fmt.Errorf("rtmfp: %q is not an rtmfp://host[:port]/app URL", raw)
	}
	port := uint16(1935)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, "", fmt.Errorf("rtmfp: bad port in %q", raw)
		}
		port = uint16(n)
	}
	ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", u.Hostname())
	if err != nil {
		return nil, "", err
	}
	var out []netip.AddrPort
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), port))
	}
	return out, strings.TrimPrefix(u.Path, "/"), nil
}

// statusOf finds a command's info object: the first of its arguments
// (flash.Command.Arguments) that is an object with a code.
func statusOf(args []any) Status {
	for _, a := range args {
		if o, ok := a.(*amf.Object); ok {
			if code, level, desc := flash.InfoCode(o); code != "" {
				return Status{Level: level, Code: code, Description: desc, Info: o}
			}
		}
	}
	return Status{}
}

// serve reads the server's flows: command replies, status events,
// set-keepalive, onRelay and the close command.
func (nc *NetConnection) serve() {
	defer nc.wg.Done()
	ctx := context.Background()
	var readers sync.WaitGroup
	for {
		f, err := nc.sess.AcceptFlow(ctx)
		if err != nil {
			// Let the readers hand out what arrived before the close
			// (a rejection, say) before reporting the close.
			readers.Wait()
			nc.closed0(err)
			return
		}
		md, ok := flash.ParseTCMetadata(f.Metadata())
		if !ok {
			// The server's side of a NetGroup server channel.
			if ng := nc.groupOfServerFlow(f); ng != nil {
				readers.Add(1)
				go func() {
					defer readers.Done()
					ng.readServer(f)
				}()
				continue
			}
			f.Reject(0)
			continue
		}
		if md.StreamID == 0 {
			nc.mu.Lock()
			if nc.srvCtrl == nil {
				nc.srvCtrl = f
			}
			nc.mu.Unlock()
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			nc.readFlow(f, md.StreamID)
		}()
	}
}

func (nc *NetConnection) readFlow(f *engine.RecvFlow, stream uint64) {
	ctx := context.Background()
	for {
		msg, err := f.Read(ctx)
		if err != nil {
			if stream == 0 {
				// The server finished its NetConnection flow: it closed us.
				nc.closed0(errors.New("server closed the connection"))
			}
			return
		}
		m, err := flash.ParseMessage(msg)
		if err != nil {
			continue
		}
		switch {
		case m.IsCommand():
			cmd, err := flash.ParseCommand(m)
			if err != nil && cmd.Name == "" {
				continue
			}
			nc.onCommand(cmd)
		case m.Type == flash.TypeUserControl:
			ev, data, err := flash.ParseUserControl(m)
			if err == nil && ev == flash.EventSetKeepalive {
				if srvMS, peerMS, err := flash.ParseSetKeepalive(data); err == nil {
					nc.setKeepalive(srvMS, peerMS)
				}
			}
		}
	}
}

func (nc *NetConnection) setKeepalive(serverMS, peerMS uint32) {
	// RFC 7425 floor: 5 s.
	srv := max(time.Duration(serverMS)*time.Millisecond, 5*time.Second)
	peer := max(time.Duration(peerMS)*time.Millisecond, 5*time.Second)
	nc.mu.Lock()
	nc.peerKA, nc.srvKA = peer, srv
	select {
	case <-nc.gotKA:
	default:
		close(nc.gotKA)
	}
	nc.mu.Unlock()
	nc.sess.SetKeepalive(srv, 4*srv)
}

// Keepalive waits until the server's set-keepalive event (0x29) has
// arrived, or ctx ends, and returns the server and peer periods it set.
func (nc *NetConnection) Keepalive(ctx context.Context) (server, peer time.Duration, err error) {
	select {
	case <-nc.gotKA:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.srvKA, nc.peerKA, nil
}

// PeerKeepalive is the keepalive period the server asked for peer sessions.
func (nc *NetConnection) PeerKeepalive() time.Duration {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.peerKA
}

func (nc *NetConnection) onCommand(cmd flash.Command) {
	switch cmd.Name {
	case "_result", "_error":
		nc.mu.Lock()
		ch := nc.calls[cmd.TxID]
		delete(nc.calls, cmd.TxID)
		nc.mu.Unlock()
		if ch != nil {
			ch <- callResult{ok: cmd.Name == "_result", args: cmd.Arguments()}
		} else if cmd.Name == "_error" {
			nc.emit(statusOf(cmd.Arguments())) // e.g. a post-connect rejection (tx 1)
		}
	case "onStatus":
		nc.emit(statusOf(cmd.Arguments()))
	case "close":
		nc.closed0(errors.New("server sent close"))
	default:
		nc.mu.Lock()
		h := nc.handlers[cmd.Name]
		nc.mu.Unlock()
		if h != nil {
			nc.inHandler.Add(1)
			defer nc.inHandler.Add(-1)
			h(cmd.Arguments())
		}
	}
}

// spawn runs fn on a goroutine that Close waits for; once the connection
// has closed, fn is not run (everything made from the connection stops
// with it).
func (nc *NetConnection) spawn(fn func()) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.closed {
		return
	}
	nc.wg.Add(1)
	go func() {
		defer nc.wg.Done()
		fn()
	}()
}

// Handle registers a handler for a command the server calls on the client
// (onRelay, for instance). Handlers run one at a time, in order, on the
// connection's reader. A handler may call Close. Close called while a
// handler runs (from it or from elsewhere) returns without waiting for the
// connection's goroutines, which end once the handler returns; otherwise
// Close returns after they have ended.
func (nc *NetConnection) Handle(name string, fn func(args []any)) {
	nc.mu.Lock()
	nc.handlers[name] = fn
	nc.mu.Unlock()
}

func (nc *NetConnection) emit(s Status) {
	if s.Code == "" {
		return
	}
	select {
	case nc.status <- s:
	default: // nobody listening: drop rather than block the protocol
	}
}

// Status delivers status events (NetConnection.Connect.Success, .Closed,
// ...). It is buffered; events nobody reads are dropped.
func (nc *NetConnection) Status() <-chan Status { return nc.status }

// Done is closed when the connection closes.
func (nc *NetConnection) Done() <-chan struct{} { return nc.done }

// Err is why the connection closed.
func (nc *NetConnection) Err() error {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	return nc.closeErr
}

func (nc *NetConnection) closed0(err error) {
	nc.mu.Lock()
	if nc.closed {
		nc.mu.Unlock()
		return
	}
	nc.closed, nc.closeErr = true, err
	calls := nc.calls
	nc.calls = map[float64]chan callResult{}
	nc.mu.Unlock()
	for _, ch := range calls {
		ch <- callResult{ok: false, args: []any{flash.Info(flash.LevelError, ConnectClosed, "connection closed")}, closed: true}
	}
	nc.emit(Status{Level: flash.LevelStatus, Code: ConnectClosed, Description: err.Error()})
	close(nc.done)
}

// Call invokes a server method and waits for its _result (the returned
// values) or _error (a *StatusError).
func (nc *NetConnection) Call(ctx context.Context, name string, args ...any) ([]any, error) {
	nc.mu.Lock()
	if nc.closed {
		nc.mu.Unlock()
		return nil, &StatusError{Status{Level: flash.LevelError, Code: ConnectClosed, Description: "connection closed"}}
	}
	tx := nc.nextTx
	nc.nextTx++
	ch := make(chan callResult, 1)
	nc.calls[tx] = ch
	nc.mu.Unlock()
	msg, err := flash.AppendCommand(nil, name, tx, nil, args...)
	if err != nil {
		return nil, err
	}
	if err := nc.ctrl.Write(msg); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if !r.ok {
			st := statusOf(r.args)
			if st.Code == "" {
				st = Status{Level: flash.LevelError, Code: CallFailed}
			}
			return nil, &StatusError{st}
		}
		return r.args, nil
	case <-ctx.Done():
		nc.mu.Lock()
		delete(nc.calls, tx)
		nc.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Send invokes a server method without waiting for an answer
// (transaction ID 0).
func (nc *NetConnection) Send(name string, args ...any) error {
	msg, err := flash.AppendCommand(nil, name, 0, nil, args...)
	if err != nil {
		return err
	}
	return nc.ctrl.Write(msg)
}

// networkCheck is how often local addresses are compared.
var networkCheck = 5 * time.Second

// watchNetwork reports NetConnection.Connect.NetworkChange when the local
// addresses change (a new Wi-Fi network, say), as Flash does, and tells the
// server the new ones; the sessions themselves follow by RTMFP mobility.
func (nc *NetConnection) watchNetwork(sent []netip.AddrPort) {
	defer nc.wg.Done()
	if nc.cfg.PeerAddresses != nil {
		return
	}
	// Compare with what setPeerInfo told the server, not with what the
	// interfaces say when this goroutine gets to run: they may have
	// changed in between.
	last := fmt.Sprint(sent)
	t := time.NewTicker(networkCheck)
	defer t.Stop()
	for {
		select {
		case <-nc.done:
			return
		case <-t.C:
			now := fmt.Sprint(localAddresses(nc.e.LocalAddr()))
			if now == last {
				continue
			}
			nc.emit(Status{Level: flash.LevelStatus, Code: ConnectNetworkChange, Description: "local addresses changed"})
			sent, err := nc.sendPeerInfo()
			if err != nil {
				nc.log.Warn("setPeerInfo", "err", err)
			}
			last = fmt.Sprint(sent)
		}
	}
}

func (nc *NetConnection) sendPeerInfo() ([]netip.AddrPort, error) {
	addrs := nc.cfg.PeerAddresses
	if addrs == nil {
		addrs = localAddresses(nc.e.LocalAddr())
	}
	args := make([]any, 0, len(addrs))
	for _, a := range addrs {
		args = append(args, a.String())
	}
	return addrs, nc.Send("setPeerInfo", args...)
}

// interfaceAddrs is net.InterfaceAddrs; tests replace it to simulate a
// network change.
var interfaceAddrs = net.InterfaceAddrs

// localAddresses lists the socket's port on each usable interface
// address (what Flash reports in setPeerInfo).
func localAddresses(local net.Addr) []netip.AddrPort {
	ua, ok := local.(*net.UDPAddr)
	if !ok {
		return nil
	}
	port := uint16(ua.Port)
	if ip, ok := netip.AddrFromSlice(ua.IP); ok && !ip.Unmap().IsUnspecified() {
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)}
	}
	ifaddrs, _ := interfaceAddrs()
	var out []netip.AddrPort
	for _, a := range ifaddrs {
		pn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, port))
		if len(out) == 8 {
			break
		}
	}
	return out
}

// NearID is this client's peer ID (64 hex digits): SHA-256 of its
// certificate, as the server and peers compute it.
func (nc *NetConnection) NearID() string { return hex.EncodeToString(nc.id.PeerID[:]) }

// FarID is the server's peer ID.
func (nc *NetConnection) FarID() string {
	id := nc.sess.PeerID()
	return hex.EncodeToString(id[:])
}

// NearNonce and FarNonce are the session nonces (NetConnection.nearNonce,
// farNonce).
func (nc *NetConnection) NearNonce() []byte { return nc.sess.NearNonce() }

// FarNonce is the server's session nonce.
func (nc *NetConnection) FarNonce() []byte { return nc.sess.FarNonce() }

// URI is the URL this connection was made with.
func (nc *NetConnection) URI() string { return nc.url }

// LocalAddr is the UDP socket's address.
func (nc *NetConnection) LocalAddr() net.Addr { return nc.e.LocalAddr() }

// ServerAddr is the address the server session lives at.
func (nc *NetConnection) ServerAddr() netip.AddrPort { return nc.server }

// Close closes the connection: the NetConnection flow is finished, the
// session closed, and everything created from it stops.
func (nc *NetConnection) Close() error {
	nc.mu.Lock()
	groups := make([]*NetGroup, 0, len(nc.groups))
	for _, g := range nc.groups {
		groups = append(groups, g)
	}
	nc.mu.Unlock()
	for _, g := range groups {
		g.Close()
	}
	nc.mu.Lock()
	already := nc.closed
	var pubs []*NetStream
	for _, p := range nc.publishers {
		pubs = append(pubs, p)
	}
	var peers []*peerConn
	for _, pc := range nc.bySess {
		peers = append(peers, pc)
	}
	nc.mu.Unlock()
	// Everything created from the connection goes with it.
	for _, p := range pubs {
		p.Close()
	}
	var closing sync.WaitGroup
	for _, pc := range peers {
		if pc.ps.sess.Closing() {
			continue // the peer closed it; the engine finishes it
		}
		closing.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if pc.ps.Close(ctx) != nil {
				pc.ps.sess.Abort()
			}
			cancel()
		})
	}
	closing.Wait()
	if !already && nc.ctrl != nil {
		nc.ctrl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = nc.ctrl.WaitComplete(ctx)
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		if nc.sess.Close(ctx) != nil {
			nc.sess.Abort()
		}
		cancel()
	}
	nc.closed0(errors.New("closed by the application"))
	err := nc.e.Close()
	if nc.inHandler.Load() == 0 {
		nc.wg.Wait()
	}
	return err
}
