package server

import (
	"net/netip"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/store"
)

type clientState uint8

const (
	waitConnect clientState = iota
	connected
	leaving
)

// peerKey is a peer ID connected with a developer key.
type peerKey struct {
	peer [32]byte
	key  string
}

// setState moves c to state st, counting the connected sessions of each
// (peer ID, key): an identity may be connected with several keys at once
// (one session each), and the exchange's names of each key live as long
// as a session of that key. s.mu held.
func (s *Server) setState(c *client, st clientState) {
	pk := peerKey{c.peerID, c.key}
	switch {
	case c.state != connected && st == connected:
		s.live[pk]++
	case c.state == connected && st != connected:
		if s.live[pk]--; s.live[pk] <= 0 {
			delete(s.live, pk)
		}
	}
	c.state = st
}

// client is the server's state for one session (reference §5.10).
type client struct {
	srv      *Server
	sess     *engine.Session
	e        *engine.Engine
	peerID   [32]byte
	observed netip.AddrPort // guarded by srv.mu
	addrs    []netip.AddrPort
	state    clientState
	gone     bool // SessionClosed handled (guarded by srv.mu)
	// refusal, when set, is why this session is over a limit: it is kept
	// out of the registry and its connect is refused with that
	// description and refusalCode (refusalReason labels the metrics).
	refusal, refusalCode, refusalReason string
	key                                 string
	encoding                            float64
	ctrlIn                              *engine.RecvFlow
	ctrlOut                             *engine.SendFlow
	opened                              time.Time
	since                               time.Time // when connect was accepted
	streams                             uint64    // bitmap of server NetStream IDs 1..63 handed out

	// NetGroup server channels (event goroutine only).
	gc           []*gcFlow
	groupBudget  *rate.Limiter // GC flow opens and messages (made at the first)
	groupAddr    [32]byte
	hasGroupAddr bool

	connectTimer *time.Timer
}

// events adapts Server to engine.Events. Callbacks run on the engine's
// dispatcher goroutine, one at a time per engine.
type events Server

func (ev *events) srv() *Server { return (*Server)(ev) }

func (ev *events) SessionOpened(sess *engine.Session) {
	s := ev.srv()
	addr := sess.RemoteAddr()
	c := &client{srv: s, sess: sess, e: sess.Engine(), peerID: sess.PeerID(), observed: addr, opened: time.Now()}
	s.mu.Lock()
	code, why, reason := s.overLimit(addr)
	switch {
	case reason == "":
		s.sessions++
		s.perIP[ipKey(addr)]++
		s.byAddr[addr] = c
		sess.SetValue(c)
	case s.refusing < maxRefusing:
		// Over a limit: the session stays out of the registry and lives
		// only to tell its client why, at connect.
		s.refusing++
		c.refusal, c.refusalCode, c.refusalReason = why, code, reason
		sess.SetValue(c)
	}
	s.mu.Unlock()
	timeout := s.cfg.ConnectTimeout
	switch {
	case reason != "" && c.refusal == "":
		s.dropped(reason, addr)
		sess.Abort()
		return
	case c.refusal != "":
		s.dropped(reason+"_refused", addr)
		timeout = min(timeout, refusalTimeout)
	default:
		s.metrics.sessions.Inc()
		s.tell(SessionOpened, c)
	}
	// A session must connect in time, whatever else it sends. (The timer
	// is stopped on connect, so idle connected sessions do not carry it.)
	c.connectTimer = time.AfterFunc(timeout, func() {
		s.mu.Lock()
		late := c.state == waitConnect
		s.mu.Unlock()
		if late {
			s.metrics.drops.WithLabelValues("connect_timeout").Inc()
			closeAfter(nil, sess, 0)
		}
	})
}

// tell reports a session event to Config.OnSession.
func (s *Server) tell(kind SessionEventKind, c *client) { s.tellGroup(kind, c, "") }

// tellGroup reports a session event naming a group.
func (s *Server) tellGroup(kind SessionEventKind, c *client, group string) {
	if s.cfg.OnSession == nil {
		return
	}
	s.mu.Lock()
	ev := SessionEvent{Kind: kind, PeerID: hexID(c.peerID), Address: c.observed, Key: c.key, Group: group}
	s.mu.Unlock()
	s.cfg.OnSession(ev)
}

func (ev *events) SessionClosed(sess *engine.Session, err error) {
	s := ev.srv()
	c, ok := sess.Value().(*client)
	if !ok {
		return
	}
	if c.connectTimer != nil {
		c.connectTimer.Stop()
	}
	s.mu.Lock()
	if c.refusal != "" {
		s.refusing--
		s.setState(c, leaving)
		c.gone = true
		s.mu.Unlock()
		return
	}
	s.sessions--
	s.decIP(c.observed)
	if s.byAddr[c.observed] == c {
		delete(s.byAddr, c.observed)
	}
	wasConnected := c.state != waitConnect && c.key != ""
	if wasConnected {
		if s.perKey[c.key]--; s.perKey[c.key] <= 0 {
			delete(s.perKey, c.key)
		}
	}
	s.setState(c, leaving)
	c.gone = true
	s.mu.Unlock()
	c.leaveAllGroups()
	s.dir.Remove(c.peerID, c)
	s.metrics.sessions.Dec()
	if wasConnected {
		// The exchange keeps the names if another session of the same
		// identity is still connected with this key.
		s.exchange.Forget(hexID(c.peerID), c.key)
		s.metrics.clients.Dec()
		s.keys.usage(c.key, store.Usage{SessionSeconds: uint64(time.Since(c.opened) / time.Second), LastSeen: time.Now()})
	}
	s.tell(SessionClosed, c)
	s.log.Debug("session closed", "peer", hexID(c.peerID), "addr", c.observed.String(), "reason", err)
}

func (ev *events) AddressChanged(sess *engine.Session, addr netip.AddrPort) {
	s := ev.srv()
	c, ok := sess.Value().(*client)
	if !ok || c.refusal != "" {
		return
	}
	s.mu.Lock()
	if s.byAddr[c.observed] == c {
		delete(s.byAddr, c.observed)
	}
	s.decIP(c.observed)
	c.observed = addr
	s.byAddr[addr] = c
	s.perIP[ipKey(addr)]++
	s.mu.Unlock()
	c.announce()
}

// record is c's entry in the directory; s.mu held.
func (c *client) record() directory.Peer {
	return directory.Peer{ID: c.peerID, Key: c.key, Observed: c.observed, Addrs: c.addrs, Since: c.since, Local: c}
}

// announce puts a connected client's current addresses in the directory.
func (c *client) announce() {
	c.srv.mu.Lock()
	ok := c.state == connected
	p := c.record()
	c.srv.mu.Unlock()
	if ok {
		c.srv.dir.Put(p)
	}
}

func (ev *events) FlowOpened(f *engine.RecvFlow) {
	c, ok := f.Session().Value().(*client)
	if !ok {
		f.Reject(0)
		return
	}
	md, isTC := flash.ParseTCMetadata(f.Metadata())
	switch {
	case isTC && md.StreamID == 0 && c.ctrlIn == nil:
		c.ctrlIn = f
	case isTC && md.StreamID > 0 && md.StreamID < 64 && c.streams&(1<<md.StreamID) != 0:
		f.Value = md.StreamID // a server NetStream's flow
	case string(f.Metadata()) == string(flash.GroupMetadata):
		c.openGroupFlow(f) // NetGroup server channel
	default:
		f.Reject(0)
	}
}

func (ev *events) FlowClosed(f *engine.RecvFlow) {
	c, ok := f.Session().Value().(*client)
	if !ok {
		return
	}
	if g, ok := f.Value.(*gcFlow); ok {
		c.dropGroupFlow(g) // the client left the group
		return
	}
	if f != c.ctrlIn {
		return
	}
	// The client finished its NetConnection flow: it is leaving.
	c.close()
}

func (ev *events) Message(f *engine.RecvFlow, msg []byte) {
	c, ok := f.Session().Value().(*client)
	if !ok {
		return
	}
	ev.srv().metrics.bytesIn(ev.srv().keyLabel(c.key), len(msg))
	if g, ok := f.Value.(*gcFlow); ok {
		c.onGroupMessage(g, msg) // raw messages, no TC header
		return
	}
	m, err := flash.ParseMessage(msg)
	if err != nil {
		return
	}
	switch {
	case f == c.ctrlIn:
		c.onControl(m)
	default:
		if id, ok := f.Value.(uint64); ok {
			c.onStream(id, m)
		}
	}
}

// send writes a message on the server's control flow; a client that has
// stopped acknowledging (1 MiB outstanding) is closed rather than allowed
// to stall the dispatcher.
func (c *client) send(msg []byte) {
	if c.ctrlOut == nil {
		return // nothing to answer on before connect opened our flow
	}
	if err := c.trySend(msg); err != nil {
		c.srv.mu.Lock()
		leaving := c.state == leaving
		c.srv.mu.Unlock()
		if !leaving {
			c.sess.Abort()
		}
		// Leaving, we finished the flow: what comes after it (the answer
		// to a ping that crossed our close) goes unsaid, and what went
		// before must still reach the client, so no abort.
	}
}

// trySend writes on the control flow without aborting anyone: relays
// towards a client that is behind fail for their sender instead.
func (c *client) trySend(msg []byte) error {
	if c.ctrlOut == nil {
		return engine.ErrBufferFull
	}
	if err := c.ctrlOut.TryWrite(msg); err != nil {
		return err
	}
	c.srv.metrics.bytesOut(c.srv.keyLabel(c.key), len(msg))
	return nil
}

func (c *client) command(name string, tx float64, obj any, args ...any) {
	msg, err := flash.AppendCommand(nil, name, tx, obj, args...)
	if err != nil {
		c.srv.log.Error("encoding command", "name", name, "err", err)
		return
	}
	c.send(msg)
}

// openControl opens the server's NetConnection flow, the return flow of
// the client's. Without it no answer can reach the client, so a session
// where it cannot be opened (closing, or out of flows) is aborted rather
// than left to time out in silence.
func (c *client) openControl() {
	if c.ctrlOut != nil || c.ctrlIn == nil {
		return
	}
	f, err := c.sess.OpenFlow(flash.TCMetadata(0, false), c.ctrlIn)
	if err != nil {
		c.srv.log.Warn("cannot answer a client: opening the NetConnection flow failed", "peer", hexID(c.peerID), "err", err)
		c.srv.metrics.drops.WithLabelValues("control_flow").Inc()
		c.sess.Abort()
		return
	}
	c.ctrlOut = f
}

func (c *client) onControl(m flash.Message) {
	switch {
	case m.IsCommand():
		cmd, err := flash.ParseCommand(m)
		if err != nil && cmd.Name == "" {
			return
		}
		c.onCommand(cmd)
	case m.Type == flash.TypeUserControl:
		ev, data, err := flash.ParseUserControl(m)
		if err == nil && ev == flash.EventPingRequest && len(data) >= 4 {
			var v uint32 = uint32(data[0])<<24 | uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3])
			c.send(flash.AppendUserControl(nil, flash.EventPingResponse, v))
		}
	}
}

func (c *client) onCommand(cmd flash.Command) {
	s := c.srv
	s.mu.Lock()
	state := c.state
	s.mu.Unlock()
	if state == leaving {
		return // refused, revoked or going: nothing more is served
	}
	if c.refusal != "" {
		c.openControl()
		s.metrics.connect("", c.refusalReason)
		c.refuse(cmd.TxID, c.refusalCode, c.refusal)
		return
	}
	if state == waitConnect {
		if cmd.Name != "connect" {
			// Anything before connect: refuse and close (MonaServer).
			c.openControl()
			c.refuse(cmd.TxID, flash.ConnectFailed, "connect first")
			return
		}
		c.onConnect(cmd)
		return
	}
	switch cmd.Name {
	case "connect":
		c.close() // a second connect on one session (zenomt)
	case "setPeerInfo":
		c.onSetPeerInfo(cmd.Arguments())
	case "relay":
		s.relay(c, cmd)
	case "createStream":
		id := c.allocStream()
		if id == 0 {
			c.callFailed(cmd, "too many streams")
			return
		}
		c.command("_result", cmd.TxID, nil, float64(id))
	case "deleteStream":
		if args := cmd.Arguments(); len(args) > 0 {
			if id, ok := args[0].(float64); ok && id > 0 && id < 64 {
				c.streams &^= 1 << uint(id)
			}
		}
	case "initStream":
		// Accepted silently, as Cumulus does.
	case "releaseStream", "FCPublish", "FCUnpublish", "getStreamLength":
		if cmd.TxID > 0 {
			c.command("_result", cmd.TxID, nil, amf.Undefined{})
		}
	default:
		if !s.exchangeCall(c, cmd) {
			c.callFailed(cmd, "no such method: "+cmd.Name)
		}
	}
}

// callFailed answers a call the server does not serve: _error with a
// transaction ID, onStatus without one; never silence.
func (c *client) callFailed(cmd flash.Command, why string) {
	info := flash.Info(flash.LevelError, flash.CallFailed, why)
	if cmd.TxID > 0 {
		c.command("_error", cmd.TxID, nil, info)
	} else {
		c.command("onStatus", 0, nil, info)
	}
	c.srv.metrics.calls.WithLabelValues("failed").Inc()
}

func (c *client) allocStream() uint64 {
	for id := uint64(1); id < 64; id++ {
		if c.streams&(1<<id) == 0 {
			c.streams |= 1 << id
			return id
		}
	}
	return 0
}

// onStream answers commands on a server NetStream: a rendezvous server has
// no media, so play and publish fail cleanly (reference §5.8).
func (c *client) onStream(id uint64, m flash.Message) {
	if !m.IsCommand() {
		return
	}
	cmd, err := flash.ParseCommand(m)
	if err != nil && cmd.Name == "" {
		return
	}
	var info any
	switch cmd.Name {
	case "play":
		info = flash.Info(flash.LevelError, flash.PlayFailed, "this server has no media: play peer to peer")
	case "publish":
		info = flash.Info(flash.LevelError, flash.PublishBadName, "this server has no media: publish with NetStream.DIRECT_CONNECTIONS")
	case "closeStream":
		return
	default:
		if cmd.TxID > 0 {
			c.callFailed(cmd, "no such stream method: "+cmd.Name)
		}
		return
	}
	// The status flow is associated with the client's NetConnection flow,
	// as Cumulus and MonaServer 1 do: Flash accepts that, and rtmfp-cpp
	// only accepts flows that answer its control flow (reference §2.4).
	f, err := c.sess.OpenFlow(flash.TCMetadata(id, false), c.ctrlIn)
	if err != nil {
		return
	}
	if msg, err := flash.AppendCommand(nil, "onStatus", 0, nil, info); err == nil {
		f.TryWrite(msg)
	}
	f.Close()
}

// developerKeys lists where a connect command may carry the developer key,
// best first: the first path segment of tcUrl (the URL the application
// connected to, reference §5.1), then that of app. Flash puts the same path
// in both; librtmfp sends app "live" whatever the URL says.
func developerKeys(app, tcURL string) []string {
	var keys []string
	if p, ok := urlPath(tcURL); ok {
		if k := firstSegment(p); k != "" {
			keys = append(keys, k)
		}
	}
	if k := firstSegment(app); k != "" && (len(keys) == 0 || keys[0] != k) {
		keys = append(keys, k)
	}
	return keys
}

// urlPath is the path (with query) of scheme://host/path, or false.
func urlPath(u string) (string, bool) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", false
	}
	u = u[i+3:]
	if j := strings.IndexByte(u, '/'); j >= 0 {
		return u[j:], true
	}
	return "", true
}

// firstSegment is the first segment of a path, without query or fragment,
// cut to 256 bytes.
func firstSegment(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	p = strings.TrimLeft(strings.TrimSpace(p), "/")
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	if len(p) > 256 {
		p = p[:256]
	}
	return p
}

// parseConnect extracts the candidate developer keys and the object
// encoding from a connect command; ok is false when it names no key.
func parseConnect(cmd flash.Command) (keys []string, encoding float64, ok bool) {
	obj, _ := cmd.Object.(*amf.Object)
	if obj == nil {
		return nil, 0, false
	}
	app, _ := obj.GetString("app")
	tcURL, _ := obj.GetString("tcUrl")
	if enc, ok := obj.GetNumber("objectEncoding"); ok && enc == 3 {
		encoding = 3
	}
	keys = developerKeys(app, tcURL)
	return keys, encoding, len(keys) > 0
}

// pickKey decides which candidate key a connect uses: a stored valid key,
// else a revoked one (an explicit key that must be refused), else one that
// open mode accepts, else the first, unknown.
func (s *Server) pickKey(keys []string) (string, keyStatus) {
	best, bestRank, bestSt := keys[0], 0, keyUnknown
	for _, k := range keys {
		st := s.keys.check(k)
		rank := 0
		switch {
		case st == keyValid && s.keys.stored(k):
			return k, st
		case st == keyRevoked || st == keySuspended:
			rank = 2
		case st == keyValid:
			rank = 1
		}
		if rank > bestRank {
			best, bestRank, bestSt = k, rank, st
		}
	}
	return best, bestSt
}

func (c *client) onConnect(cmd flash.Command) {
	s := c.srv
	keys, enc, ok := parseConnect(cmd)
	c.encoding = enc
	c.openControl()
	if !ok {
		s.metrics.connect("", "bad_request")
		c.refuse(cmd.TxID, flash.ConnectFailed, "connect names no developer key (app and tcUrl empty)")
		return
	}
	key, st := s.pickKey(keys)
	switch st {
	case keyUnknown:
		s.metrics.connect("", "unknown_key")
		c.refuse(cmd.TxID, flash.ConnectFailed, "unknown developer key")
		return
	case keyRevoked:
		s.metrics.connect(s.keyLabel(key), "revoked_key")
		s.keys.usage(key, store.Usage{Rejected: 1, LastSeen: time.Now()})
		c.refuse(cmd.TxID, flash.ConnectRejected, "developer key revoked")
		return
	case keySuspended:
		s.metrics.connect(s.keyLabel(key), "suspended_key")
		s.keys.usage(key, store.Usage{Rejected: 1, LastSeen: time.Now()})
		c.refuse(cmd.TxID, flash.ConnectRejected, "developer account suspended")
		return
	}
	limit := s.cfg.MaxSessionsPerKey
	if own := s.keys.limit(key); own > 0 {
		limit = own // the key's own quota (store.Key.MaxSessions)
	}
	remote := 0 // the key's sessions on the cluster's other nodes
	if limit > 0 {
		remote = s.dir.RemoteSessions(key)
	}
	s.mu.Lock()
	if limit > 0 && s.perKey[key]+remote >= limit {
		s.mu.Unlock()
		s.metrics.connect(s.keyLabel(key), "key_limit")
		c.refuse(cmd.TxID, flash.ConnectRejected, "too many sessions for this developer key")
		return
	}
	if s.draining {
		s.mu.Unlock()
		c.refuse(cmd.TxID, flash.ConnectAppShutdown, "server shutting down")
		return
	}
	c.key, c.since = key, time.Now()
	s.setState(c, connected)
	s.perKey[key]++
	rec := c.record()
	s.mu.Unlock()
	// If the same identity is connected already, this newer session
	// replaces it in the directory.
	s.dir.Put(rec)
	if c.connectTimer != nil {
		c.connectTimer.Stop()
		c.connectTimer = nil
	}
	s.metrics.connect(s.keyLabel(key), "success")
	s.metrics.clients.Inc()
	s.keys.usage(key, store.Usage{Connects: 1, LastSeen: time.Now()})
	tx := cmd.TxID
	if tx == 0 {
		tx = 1
	}
	c.command("_result", tx, nil, flash.Info(flash.LevelStatus, flash.ConnectSuccess, "Connection succeeded", "objectEncoding", c.encoding))
	c.sendKeepalive()
	s.tell(SessionConnected, c)
	s.log.Debug("connected", "peer", hexID(c.peerID), "key", key, "addr", c.sess.RemoteAddr().String())
}

func (c *client) sendKeepalive() {
	cfg := &c.srv.cfg
	c.send(flash.AppendSetKeepalive(nil, uint32(cfg.ClientKeepalive/time.Millisecond), uint32(cfg.PeerKeepalive/time.Millisecond)))
}

// refusalTimeout closes a session kept only to be refused that never
// sends connect.
const refusalTimeout = 5 * time.Second

// refuse answers connect with _error and closes (reference §5.4).
func (c *client) refuse(tx float64, code, description string) {
	if tx == 0 {
		tx = 1
	}
	c.command("_error", tx, nil, flash.Info(flash.LevelError, code, description))
	c.command("close", 0, nil)
	c.close()
}

// close finishes the control flow and, once the client has read what was
// sent (or after two seconds), closes the session in an orderly way.
func (c *client) close() { c.leave(2 * time.Second) }

// leave stops serving the client (commands that arrive from now on are
// not answered), finishes the control flow and, once the client has read
// what was sent (or after wait), closes the session in an orderly way.
func (c *client) leave(wait time.Duration) {
	c.srv.mu.Lock()
	already := c.state == leaving
	c.srv.setState(c, leaving)
	c.srv.mu.Unlock()
	if already {
		return
	}
	c.srv.dir.Remove(c.peerID, c) // nobody is introduced to a leaving client
	if c.ctrlOut != nil {
		c.ctrlOut.Close()
	}
	closeAfter(c.ctrlOut, c.sess, wait)
}

// shutdown tells a connected client the application is going away, then
// closes its session (Shutdown).
func (c *client) shutdown() {
	c.srv.mu.Lock()
	connectedNow := c.state == connected
	c.srv.mu.Unlock()
	if connectedNow && c.ctrlOut != nil {
		c.command("onStatus", 0, nil, flash.Info(flash.LevelError, flash.ConnectAppShutdown, "server shutting down"))
		c.command("close", 0, nil)
	}
	// Leaving, like a client told to close: a command that arrives after
	// this (a setPeerInfo sent right after connect) used to be answered
	// on the finished flow, and the failed write aborted the session
	// before AppShutdown had reached the client.
	c.leave(time.Second)
}

// closeAfter gives the client up to wait to acknowledge what the control
// flow carries (a refusal, a close command), then closes the session in an
// orderly way, aborting it if the client does not answer.
func closeAfter(out *engine.SendFlow, sess *engine.Session, wait time.Duration) {
	sess.CloseAfter(out, wait, 5*time.Second)
}

func (c *client) onSetPeerInfo(args []any) {
	addrs := parsePeerAddresses(args, c.srv.cfg.MaxPeerAddresses)
	c.srv.mu.Lock()
	c.addrs = addrs // a new slice: the directory may hold the old one
	c.srv.mu.Unlock()
	c.announce()
	c.sendKeepalive()
	c.srv.tell(SessionPeerInfo, c)
}

// parsePeerAddresses reads setPeerInfo's "a.b.c.d:port" and "[v6]:port"
// strings, skipping malformed entries one by one, without duplicates, at
// most max.
func parsePeerAddresses(args []any, max int) []netip.AddrPort {
	var addrs []netip.AddrPort
	for _, a := range args {
		str, ok := a.(string)
		if !ok || len(str) > 64 {
			continue
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(str))
		if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			continue // mobile clients send garbage: skip it, keep the rest
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
		dup := false
		for _, x := range addrs {
			dup = dup || x == ap
		}
		if !dup && len(addrs) < max {
			addrs = append(addrs, ap)
		}
	}
	return addrs
}
