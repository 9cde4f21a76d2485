package rtmfp

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/mesh"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// groupLink is the neighbourship of two members of one group on one
// session: each side's GR 1c flow (group init, begin, reports, disconnect
// requests) and the flows that hang off it (posts, routed messages). Its
// fields belong to the group's loop.
type groupLink struct {
	ng      *NetGroup
	pc      *peerConn
	id      [32]byte
	out     *engine.SendFlow // our GR 1c
	in      *engine.RecvFlow // theirs
	started time.Time
	stop    chan struct{} // closed with the link

	silentConnect   bool // replaces a connected link to the member: its Connect was told
	validated       bool // their init checked
	connected       bool // NetGroup.Neighbor.Connect reported
	capable         bool // a Stratus member: reads our routing flow
	reported        bool // our first report sent
	reportInitiator bool // our report awaits their reply
	closed          bool

	postOut  *engine.SendFlow
	routeOut *engine.SendFlow
	waiting  []waitingFlow // their post and routing flows, until validated

	postCount, postBytes bucket // posts this member may send us
}

// waitingFlow is a flow a member opened before its init was checked.
type waitingFlow struct {
	f     *engine.RecvFlow
	start func()
}

// onGroupSessionFlow reads the group init a peer sends first on its GR
// 1c flow and hands the flow to the group it names.
func (nc *NetConnection) onGroupSessionFlow(pc *peerConn, f *engine.RecvFlow) {
	ctx, cancel := context.WithTimeout(context.Background(), groupHandshakeWait)
	m, err := f.Read(ctx)
	cancel()
	if err != nil {
		return
	}
	in, err := group.ParseInit(m)
	if err != nil {
		f.Reject(0)
		return
	}
	// A Stratus member says what it reads in an option of this flow.
	capable := false
	if v, ok := f.Option(group.CapabilityOption); ok && len(v) > 0 && v[0]&group.CapRouting != 0 {
		capable = true
	}
	nc.mu.Lock()
	ng := nc.groups[strings.ToLower(in.GroupHex)]
	nc.mu.Unlock()
	if ng == nil || !ng.do(func() { ng.onInit(pc, f, in, capable) }) {
		f.Reject(0)
		nc.spawn(func() { pc.after(refusedLinger, false) })
	}
}

// onInit checks a peer's group init: our group, addressed to us, and the
// HMAC only a holder of the groupspec can compute for this session. A
// wrong one gets the flow refused (the peer then closes the session).
func (ng *NetGroup) onInit(pc *peerConn, f *engine.RecvFlow, in group.Init, capable bool) {
	now := time.Now()
	id, _ := ParsePeerID(pc.farID)
	refuse := func(why string) {
		ng.trace("refused " + why)
		ng.c.handshakesRefused.Add(1)
		ng.log.Info("group handshake refused", "peer", groupLog(id), "why", why)
		f.Reject(0)
		if l := ng.links[id]; l != nil && l.pc == pc && !l.validated {
			ng.closeLink(l, false, "")
			ng.mesh.DialFailed(now, id)
		}
		ng.nc.spawn(func() { pc.after(refusedLinger, false) })
	}
	if in.Target != ng.self {
		refuse("init addressed to another peer")
		return
	}
	if in.Key != group.Key(ng.ident.Text, pc.ps.sess.NearNonce()) {
		refuse("wrong group key (another groupspec)")
		return
	}
	l := ng.links[id]
	silent := false
	if l != nil && l.pc != pc {
		// Two sessions with the same member: keep the one opened by
		// the member with the greater peer ID. The neighbour stays one:
		// no Disconnect now, no second Connect (a Disconnect if the new
		// session fails).
		if canonical(ng.self, id, pc.ps.sess.Initiator()) {
			silent = l.connected || l.silentConnect
			ng.closeLink(l, false, "")
			l = nil
		} else {
			refuse("neighbour on another session")
			return
		}
	}
	// The bound holds for neighbourships we asked for too: dials that
	// complete together, or while others ask, must not overshoot it.
	if l == nil || !l.connected {
		ng.mesh.Hear(now, id, 0, nil)
		ok, evict := ng.mesh.CanAccept(now, id)
		if ng.closedLoop || !ok {
			refuse("maximum neighbours")
			return
		}
		if evict != nil {
			if v := ng.links[*evict]; v != nil {
				ng.closeLink(v, false, "replaced by a nearer neighbour")
			}
		}
	}
	if l == nil {
		l = ng.newLink(pc, id, now)
		if l == nil {
			f.Reject(0)
			if silent {
				ng.emitNeighbor(GroupNeighborDisconnect, "neighbour disconnected: session replaced and lost", id)
			}
			return
		}
		l.silentConnect = silent
	}
	if l.in != nil && l.in != f {
		l.in.Reject(0)
	}
	l.in, l.validated = f, true
	for _, w := range l.waiting {
		w.start()
	}
	l.waiting = nil
	l.capable = capable
	ng.mesh.Hear(now, id, 0, nil)
	ng.nc.spawn(func() { ng.readSession(l, f) })
	ng.maybeConnected(l, now)
}

// canonical reports whether a session with peer far should be kept when
// there are two: the one opened by the side with the greater peer ID.
func canonical(self, far [32]byte, weInitiated bool) bool {
	selfGreater := bytes.Compare(self[:], far[:]) > 0
	return weInitiated == selfGreater
}

// startLink begins the group handshake on a session we dialled.
func (ng *NetGroup) startLink(pc *peerConn, id [32]byte, now time.Time) {
	if ng.closedLoop {
		return
	}
	if ng.newLink(pc, id, now) == nil {
		ng.mesh.DialFailed(now, id)
	}
}

// newLink opens our GR 1c flow (with the Stratus capability option) and
// sends our init, 02 and begin.
func (ng *NetGroup) newLink(pc *peerConn, id [32]byte, now time.Time) *groupLink {
	out, err := pc.ps.sess.OpenFlow(group.MetaSession, nil, wire.Option{Type: group.CapabilityOption, Value: group.Capabilities})
	if err != nil {
		return nil
	}
	l := &groupLink{ng: ng, pc: pc, id: id, out: out, started: now, stop: make(chan struct{})}
	pc.mu.Lock()
	if pc.gone {
		pc.mu.Unlock()
		out.Close()
		return nil
	}
	pc.groups[ng] = l
	pc.byFlow[out.ID()] = l
	pc.mu.Unlock()
	ng.links[id] = l
	key := group.Key(ng.ident.Text, pc.ps.sess.FarNonce())
	l.write(out, group.AppendInit(nil, group.Init{GroupHex: ng.ident.HexID(), Key: key, Target: id}))
	l.write(out, group.AppendData(nil, ""))
	l.write(out, []byte{group.TypeBegin})
	ng.nc.spawn(func() { ng.watchOut(l) })
	return l
}

// watchOut notices the peer refusing our GR 1c flow: a failed handshake
// or an accepted disconnect request.
func (ng *NetGroup) watchOut(l *groupLink) {
	ctx, cancel := untilClosed(l.stop)
	defer cancel()
	_ = l.out.WaitComplete(ctx)
	if rej, _ := l.out.Rejected(); rej {
		ng.do(func() {
			if !l.validated {
				ng.mesh.DialFailed(time.Now(), l.id)
			}
			ng.closeLink(l, true, "refused by the peer")
		})
	}
}

// readSession reads the peer's GR 1c flow after its init.
func (ng *NetGroup) readSession(l *groupLink, f *engine.RecvFlow) {
	ctx, cancel := untilClosed(l.stop)
	defer cancel()
	for {
		m, err := f.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				// The peer finished its flow: it left us.
				ng.do(func() { ng.closeLink(l, true, "peer left") })
			}
			return
		}
		ng.do(func() { ng.onSessionMsg(l, m) })
	}
}

// attachGroupFlow takes a flow a group member opened besides its GR 1c
// flow: posts (GR 18/19) or routed messages (GR 1d). It belongs to the
// neighbourship whose GR 1c flow it is associated with (without an
// association, the session's only one), and is read only once that
// member's init has been checked on this very session: anyone can open a
// session to a member, and the group HMAC is what says it is a member.
func (nc *NetConnection) attachGroupFlow(pc *peerConn, f *engine.RecvFlow, kind byte) {
	switch kind {
	case group.FlowKind(group.MetaPosts), group.FlowKind(group.MetaPostKeys), group.FlowKind(group.MetaRouting):
	case group.FlowKind(group.MetaMediaControl), group.FlowKind(group.MetaMediaData):
		if !nc.attachMediaFlow(pc, f, kind) {
			f.Reject(0)
		}
		return
	default:
		f.Reject(0)
		return
	}
	l := pc.linkFor(f)
	if l == nil {
		nc.log.Debug("group flow refused: no neighbourship", "peer", pc.farID[:12], "kind", kind)
		f.Reject(0)
		return
	}
	ng := l.ng
	if !ng.do(func() { ng.admitFlow(l, f, kind) }) {
		f.Reject(0)
	}
}

// maxWaitingFlows bounds the flows a member may open before its init is
// checked (its post and routing flows, and a few reopened ones).
const maxWaitingFlows = 4

// admitFlow starts reading a neighbour's post or routing flow once the
// neighbourship is validated; a flow that comes first (the member
// checked our init before we checked its) waits for that.
func (ng *NetGroup) admitFlow(l *groupLink, f *engine.RecvFlow, kind byte) {
	refuse := func(why string) {
		ng.trace("flow refused " + why)
		ng.log.Debug("group flow refused", "peer", groupLog(l.id), "kind", kind, "why", why)
		f.Reject(0)
	}
	switch {
	case l.closed || ng.links[l.id] != l:
		refuse("no neighbourship")
		return
	case kind == group.FlowKind(group.MetaRouting) && !ng.sp.Routing:
		refuse("routing not enabled")
		return
	case kind != group.FlowKind(group.MetaRouting) && !ng.sp.Posting:
		refuse("posting not enabled")
		return
	}
	ng.whenValidated(l, f, false, func(m []byte) {
		switch kind {
		case group.FlowKind(group.MetaPosts):
			ng.onPost(l, m)
		case group.FlowKind(group.MetaRouting):
			ng.onRouted(m)
		}
	})
}

// whenValidated reads f, a flow of l's member, with handle on the loop
// once l's init has been checked; until then the flow waits (a few at
// most), and it is refused if the neighbourship ends first.
//
// With afterClose, what the flow brings after the neighbourship ended is
// still handled (the handler checks l.closed): a member that leaves
// writes its last words on its other flows just before it ends the
// neighbourship, and those flows are read apart from it, so its end can
// be seen first.
func (ng *NetGroup) whenValidated(l *groupLink, f *engine.RecvFlow, afterClose bool, handle func(m []byte)) {
	if l.closed || ng.links[l.id] != l {
		f.Reject(0)
		return
	}
	start := func() {
		ng.nc.spawn(func() {
			ng.readFlow(f, func(m []byte) {
				if !l.closed || afterClose {
					handle(m)
				}
			})
		})
	}
	if l.validated {
		start()
		return
	}
	if len(l.waiting) >= maxWaitingFlows {
		ng.trace("flow refused too many before the group handshake")
		f.Reject(0)
		return
	}
	l.waiting = append(l.waiting, waitingFlow{f, start})
}

// emitNeighbor reports a Neighbor.Connect or Disconnect for id.
func (ng *NetGroup) emitNeighbor(code, desc string, id [32]byte) {
	ng.emit(flash.LevelStatus, code, desc, "neighbor", group.AddressOf(id).String(), "peerID", hex.EncodeToString(id[:]))
}

// sessionEnded is the router's notice that the link's session closed.
func (ng *NetGroup) sessionEnded(l *groupLink) {
	ng.do(func() { ng.closeLink(l, true, "session closed") })
}

func (ng *NetGroup) maybeConnected(l *groupLink, now time.Time) {
	if l.connected || !l.validated || l.out == nil || l.closed {
		return
	}
	l.connected = true
	ng.connected()
	ng.log.Debug("neighbour", "peer", groupLog(l.id), "initiator", l.pc.ps.sess.Initiator())
	ng.c.neighborsConnected.Add(1)
	ng.mesh.Connected(now, l.id, l.pc.ps.sess.SRTT())
	ng.neighbors.Store(int32(len(ng.mesh.Neighbors())))
	if !l.silentConnect {
		ng.emitNeighbor(GroupNeighborConnect, "neighbour connected", l.id)
	} else {
		ng.trace("neighbour kept on a new session")
	}
	l.silentConnect = false
	ng.soon(now)
	if ng.sp.Posting {
		ng.replayPosts(l, now)
	}
	ng.mediaLinkUp(l)
}

// onSessionMsg handles the peer's group messages after its init.
func (ng *NetGroup) onSessionMsg(l *groupLink, m []byte) {
	if l.closed || len(m) == 0 {
		return
	}
	now := time.Now()
	switch m[0] {
	case group.TypeData:
		// Bare from Flash, librtmfp and Stratus; nothing to act on.
	case group.TypeBegin, group.TypeBeginNear:
		if !l.reported {
			ng.sendReport(l, true, now)
		}
	case group.TypeReport:
		ng.onReport(l, m, now)
	case group.TypeAskClose:
		if ng.mesh.AcceptClose(now, l.id) {
			// Accepting is refusing their flow; they close the session.
			l.in.Reject(0)
			ng.closeLink(l, true, "disconnect request accepted")
		}
	}
}

// onReport learns members and addresses from a report and answers it
// unless it answers ours.
func (ng *NetGroup) onReport(l *groupLink, m []byte, now time.Time) {
	rep, err := group.ParseReport(m)
	if err != nil {
		return
	}
	ng.c.reportsReceived.Add(1)
	ng.mesh.Hear(now, l.id, 0, rep.Self)
	if rep.SeenAs.IsValid() && rep.SeenAs.Port() != 0 && !rep.SeenAs.Addr().IsUnspecified() {
		ng.addMyAddr(l.id, rep.SeenAs, now)
	}
	news := false
	for _, p := range rep.Peers {
		if ng.mesh.HearReported(now, l.id, p.ID, time.Duration(p.Age)*time.Second, p.Addrs) {
			news = true
		}
	}
	if news {
		ng.soon(now)
		if ng.newsAt.IsZero() {
			ng.newsAt = now.Add(groupNewsReport)
		}
	}
	if l.reportInitiator {
		l.reportInitiator = false
		return
	}
	ng.sendReport(l, false, now)
}

// addMyAddr records where a neighbour sees us. What we advertise in
// reports is the addresses most neighbours agree on (at most
// maxMyAddrs), so one lying neighbour cannot make the group knock on a
// door of its choosing in our name; news older than mesh.PeerTimeout is
// forgotten.
func (ng *NetGroup) addMyAddr(from [32]byte, a netip.AddrPort, now time.Time) {
	if ng.seenAs == nil {
		ng.seenAs = map[netip.AddrPort]map[[32]byte]time.Time{}
	}
	for x, by := range ng.seenAs {
		for id, at := range by {
			if now.Sub(at) > mesh.PeerTimeout || id == from && x != a {
				delete(by, id) // stale, or that neighbour now sees us elsewhere
			}
		}
		if len(by) == 0 {
			delete(ng.seenAs, x)
		}
	}
	if ng.seenAs[a] == nil {
		if len(ng.seenAs) >= 4*maxMyAddrs {
			return
		}
		ng.seenAs[a] = map[[32]byte]time.Time{}
	}
	ng.seenAs[a][from] = now
	type cand struct {
		a netip.AddrPort
		n int
	}
	var cs []cand
	for x, by := range ng.seenAs {
		cs = append(cs, cand{x, len(by)})
	}
	slices.SortFunc(cs, func(p, q cand) int {
		if p.n != q.n {
			return q.n - p.n
		}
		return p.a.Compare(q.a)
	})
	ng.myAddrs = ng.myAddrs[:0]
	for _, c := range cs[:min(len(cs), maxMyAddrs)] {
		ng.myAddrs = append(ng.myAddrs, wire.Address{AddrPort: c.a, Origin: group.OriginPublic})
	}
}

// maxMyAddrs bounds the addresses where neighbours see us that we
// advertise.
const maxMyAddrs = 3

// sendReport tells a neighbour where we see it, our addresses, and the
// members its own neighbour choice would want.
func (ng *NetGroup) sendReport(l *groupLink, initiator bool, now time.Time) {
	self := []wire.Address{{AddrPort: ng.nc.server, Origin: group.OriginHost}}
	self = append(self, ng.myAddrs...)
	addrs := ng.nc.cfg.PeerAddresses
	if addrs == nil {
		addrs = localAddresses(ng.nc.e.LocalAddr())
	}
	for _, a := range addrs {
		self = append(self, wire.Address{AddrPort: a, Origin: group.OriginLocal})
	}
	rep := group.Report{SeenAs: l.pc.ps.RemoteAddr(), Self: self}
	for _, p := range ng.mesh.BestFor(now, l.id) {
		var pa []wire.Address
		if p.Host.IsValid() {
			pa = append(pa, wire.Address{AddrPort: p.Host, Origin: group.OriginHost})
		}
		pa = append(pa, p.Addrs...)
		age := max(now.Sub(p.Heard), 0)
		rep.Peers = append(rep.Peers, group.ReportPeer{ID: p.ID, Age: uint64(age / time.Second), Addrs: pa})
	}
	l.reported, l.reportInitiator = true, initiator
	ng.c.reportsSent.Add(1)
	l.write(l.out, group.AppendReport(nil, rep))
}

// write queues a message without blocking; a neighbour that stops
// acknowledging loses messages rather than stalling the group.
func (l *groupLink) write(f *engine.SendFlow, m []byte) {
	if f == nil {
		return
	}
	if err := f.TryWrite(m); err != nil {
		l.ng.log.Debug("group write", "peer", groupLog(l.id), "err", err)
	}
}

// sendPost sends a post on our GR 19 flow, reopening it if the peer
// refused it (librtmfp refuses posts that are not strings or numbers).
func (l *groupLink) sendPost(m []byte) {
	if l.postOut != nil {
		if rej, _ := l.postOut.Rejected(); rej {
			l.postOut = nil
		}
	}
	if l.postOut == nil {
		f, err := l.pc.ps.sess.OpenFlow(group.MetaPosts, l.in)
		if err != nil {
			return
		}
		l.postOut = f
	}
	l.write(l.postOut, m)
}

// sendRouted sends a routed message on our GR 1d flow.
func (l *groupLink) sendRouted(r group.Routed) {
	if l.routeOut == nil {
		f, err := l.pc.ps.sess.OpenFlow(group.MetaRouting, l.in)
		if err != nil {
			return
		}
		l.routeOut = f
	}
	l.write(l.routeOut, group.AppendRouted(nil, r))
}

// closeLink ends a neighbourship. byPeer says the member ended it (left,
// dropped or refused us), why says why for Neighbor.Disconnect ("": no
// event, the group is closing).
func (ng *NetGroup) closeLink(l *groupLink, byPeer bool, why string) {
	if l.closed {
		return
	}
	l.closed = true
	close(l.stop)
	now := time.Now()
	ng.log.Debug("neighbourship ended", "peer", groupLog(l.id), "connected", l.connected, "byPeer", byPeer, "why", why)
	ng.trace("ended " + why)
	if ng.links[l.id] == l {
		delete(ng.links, l.id)
	}
	if l.connected {
		ng.mesh.Disconnected(now, l.id, byPeer)
		ng.neighbors.Store(int32(len(ng.mesh.Neighbors())))
	}
	if (l.connected || l.silentConnect) && why != "" {
		ng.emitNeighbor(GroupNeighborDisconnect, "neighbour disconnected: "+why, l.id)
	}
	ng.mediaLinkDown(l)
	for _, w := range l.waiting {
		w.f.Reject(0)
	}
	l.waiting = nil
	for _, f := range []*engine.SendFlow{l.out, l.postOut, l.routeOut} {
		if f != nil {
			f.Close()
		}
	}
	pc := l.pc
	pc.mu.Lock()
	if pc.groups[ng] == l {
		delete(pc.groups, ng)
	}
	delete(pc.byFlow, l.out.ID())
	pc.mu.Unlock()
	ng.nc.spawn(pc.release)
	ng.soon(now)
}
