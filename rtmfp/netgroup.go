package rtmfp

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/group"
	"github.com/stratus-rtmfp/stratus/internal/mesh"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// NetGroup status codes, as Flash reports them.
const (
	GroupConnectSuccess     = "NetGroup.Connect.Success"
	GroupConnectFailed      = "NetGroup.Connect.Failed"
	GroupConnectRejected    = "NetGroup.Connect.Rejected"
	GroupNeighborConnect    = "NetGroup.Neighbor.Connect"
	GroupNeighborDisconnect = "NetGroup.Neighbor.Disconnect"
	GroupPostingNotify      = "NetGroup.Posting.Notify"
	GroupSendToNotify       = "NetGroup.SendTo.Notify"
)

// Timers of the group protocol (docs/netgroup.md §7). Variables so that
// tests can shorten them.
var (
	groupTick          = 100 * time.Millisecond // management tick
	groupReportPeriod  = 10 * time.Second       // periodic report to one random neighbour
	groupPlanPeriod    = 10 * time.Second       // neighbour set recomputed at least this often
	groupPlanDebounce  = 300 * time.Millisecond // and this soon after a change
	groupCleanPeriod   = 19 * time.Second       // heard-list hygiene
	groupHandshakeWait = 15 * time.Second       // group init answer
	groupPostMemory    = 5 * time.Minute        // how long post IDs are remembered
	groupNewsReport    = 500 * time.Millisecond // extra report after news of new members
	groupMaxSeen       = 100000                 // post IDs remembered at most
	groupPostReplay    = 10 * time.Second       // posts this recent go to a new neighbour
	groupReplayMax     = 256 << 10              // at most this many bytes of them (kept and replayed)
	groupStatusBuffer  = 1024
	groupPostRate      = 100.0                  // posts a neighbour may send us per second (twice as many at once)
	groupPostByteRate  = 256.0 * 1024           // and bytes of posts
	joinSettle         = 500 * time.Millisecond // a refusal of the join may follow its acknowledgement this late
)

// groupTrace, when set (by tests), hears what a group's loop does that
// has no status event: refused handshakes, ended neighbourships.
var groupTrace func(ng *NetGroup, what string)

func (ng *NetGroup) trace(what string) {
	if groupTrace != nil {
		groupTrace(ng, what)
	}
}

// ErrGroupClosed is returned by operations on a closed NetGroup.
var ErrGroupClosed = errors.New("rtmfp: NetGroup closed")

// GroupStats counts what a NetGroup did.
type GroupStats struct {
	PostsSent, PostsReceived, PostsDuplicate, PostsDropped uint64
	RoutedDelivered, RoutedForwarded, RoutedDropped        uint64
	ReportsSent, ReportsReceived                           uint64
	HandshakesRefused, NeighborsConnected                  uint64
	EventsDropped                                          uint64
}

type groupCounters struct {
	postsSent, postsReceived, postsDuplicate, postsDropped atomic.Uint64
	routedDelivered, routedForwarded, routedDropped        atomic.Uint64
	reportsSent, reportsReceived                           atomic.Uint64
	handshakesRefused, neighborsConnected                  atomic.Uint64
	eventsDropped                                          atomic.Uint64
}

// NetGroup is a member of a peer-to-peer group, as ActionScript's
// NetGroup: it joins through the server channel, keeps a set of
// neighbours (the nearest members on the group's ring plus long links,
// replacing those that leave), floods posts to every member, and routes
// messages to the member nearest a group address. Methods are safe for
// concurrent use.
//
// Serverless groups (rtmfp: URLs on a LAN) are not supported: a NetGroup
// needs a NetConnection to a server.
type NetGroup struct {
	nc       *NetConnection
	spec     string
	ident    group.Identity
	sp       group.Spec
	self     [32]byte
	selfAddr group.Addr
	log      *slog.Logger
	c        groupCounters

	status      chan Status
	mail        chan func()
	quit        chan struct{} // closed when the group closes
	loopDone    chan struct{}
	closing     sync.Once
	gcID        atomic.Uint64 // our GC flow's ID + 1 (0: none)
	heardServer chan struct{} // closed when the server first speaks on the GC flow
	heardOnce   sync.Once

	// Owned by the loop goroutine.
	mesh        *mesh.Mesh
	links       map[[32]byte]*groupLink
	gcOut       *engine.SendFlow
	joined      bool
	seen        map[string]time.Time
	seenQ       []seenPost
	recent      []recentPost // bodies of the last groupPostReplay, at most groupReplayMax bytes
	recentBytes int
	myAddrs     []wire.Address                            // where others see us (their 0d options), as we advertise it
	seenAs      map[netip.AddrPort]map[[32]byte]time.Time // where each neighbour last said it sees us
	planAt      time.Time
	reportAt    time.Time
	cleanAt     time.Time
	newsAt      time.Time
	media       map[[32]byte]*mediaStream // multicast streams we publish or play (and relay)
	players     map[string][]*groupStream // group NetStreams playing each name
	seenKeys    map[[32]byte]bool         // streams reported by PublishNotify
	pending     []*pendingAnnounce        // streams announced that nobody plays here yet
	neighbors   atomic.Int32
	estimate    atomic.Uint64 // float64 bits
	closedLoop  bool
}

type seenPost struct {
	id string
	at time.Time
}

// recentPost is a post kept for neighbours that come later.
type recentPost struct {
	at  time.Time
	msg []byte
}

// NewNetGroup joins the group a groupspec string names (as new
// NetGroup(connection, groupspec) in ActionScript). The string is taken
// exactly as given: it is the group's identity. With
// serverChannelEnabled the join goes to the server, which introduces the
// group's members; NetGroup.Connect.Success follows once the server has
// the join. Status reports the group's events.
func NewNetGroup(nc *NetConnection, groupspec string) (*NetGroup, error) {
	return newNetGroup(nc, groupspec, nil)
}

// newNetGroup is NewNetGroup; prepare, if not nil, runs before the group
// starts (tests change what the group is made of there).
func newNetGroup(nc *NetConnection, groupspec string, prepare func(ng *NetGroup)) (*NetGroup, error) {
	ident, err := group.IdentityOf(groupspec)
	if err != nil {
		return nil, err
	}
	sp, err := group.ParseSpec(groupspec)
	if err != nil {
		return nil, err
	}
	if sp.PeerToPeerDisabled {
		return nil, errors.New("rtmfp: peerToPeerDisabled groups (IP multicast only) are not supported")
	}
	ng := &NetGroup{nc: nc, spec: groupspec, ident: ident, sp: sp, self: nc.id.PeerID, selfAddr: group.AddressOf(nc.id.PeerID),
		log: nc.log.With("group", sp.Name, "self", groupLog(nc.id.PeerID)), status: make(chan Status, groupStatusBuffer), mail: make(chan func()),
		quit: make(chan struct{}), loopDone: make(chan struct{}), heardServer: make(chan struct{}), links: map[[32]byte]*groupLink{}, seen: map[string]time.Time{},
		media: map[[32]byte]*mediaStream{}, players: map[string][]*groupStream{}, seenKeys: map[[32]byte]bool{}}
	maxN := nc.cfg.MaxGroupNeighbors
	ng.mesh = mesh.New(ng.self, mesh.Config{MaxNeighbors: maxN})
	if prepare != nil {
		prepare(ng)
	}
	nc.mu.Lock()
	if nc.closed {
		nc.mu.Unlock()
		return nil, ErrStreamClosed
	}
	if nc.groups[ident.HexID()] != nil {
		nc.mu.Unlock()
		return nil, errors.New("rtmfp: this NetConnection is already in that group")
	}
	nc.groups[ident.HexID()] = ng
	srvCtrl := nc.srvCtrl
	nc.wg.Add(1) // the loop; added under nc.mu, before any Close can wait
	nc.mu.Unlock()

	if sp.ServerChannel {
		gc, err := nc.sess.OpenFlow(group.MetaServerChannel, srvCtrl)
		if err != nil {
			ng.unregister()
			nc.wg.Done()
			return nil, err
		}
		ng.gcOut = gc
		ng.gcID.Store(gc.ID() + 1)
	}
	go ng.run()
	if ng.gcOut != nil {
		nc.spawn(ng.join)
	} else {
		ng.do(func() { ng.connected() })
	}
	for _, id := range sp.BootstrapPeers {
		ng.AddNeighbor(hex.EncodeToString(id[:]))
	}
	return ng, nil
}

func (ng *NetGroup) unregister() {
	nc := ng.nc
	nc.mu.Lock()
	if nc.groups[ng.ident.HexID()] == ng {
		delete(nc.groups, ng.ident.HexID())
	}
	nc.mu.Unlock()
}

// join sends the join on the GC flow and reports its outcome, once:
// Connect.Rejected if the server refused the flow, Connect.Failed if the
// join never reached it (the group then closes), Connect.Success
// otherwise. A server refuses the GC flow as it reads the join (at the
// flow's opening, or at the join itself), but its acknowledgement can go
// first, in a packet of its own, or with it, so
// Success waits a little after the acknowledgement: joinSettle, or four
// round trips if longer, or less if the server already speaks on the
// group's flow (member announcements: it took the join), or a first
// neighbourship forms (Success comes before any Neighbor.Connect, as in
// Flash; the group is then joined whatever the server says later).
func (ng *NetGroup) join() {
	ctx, cancel := untilClosed(ng.quit) // the loop closes quit when the connection closes
	defer cancel()
	fail := func(level, code, desc string) {
		ng.emitConnect(level, code, desc)
		ng.Close()
	}
	r, err := ng.gcOut.WriteMessage(ctx, flash.AppendGroupJoin(nil, ng.ident.ID), time.Time{})
	if err != nil {
		fail(flash.LevelError, GroupConnectFailed, "cannot join: "+err.Error())
		return
	}
	select {
	case <-r.Done():
	case <-ctx.Done():
		fail(flash.LevelError, GroupConnectFailed, "connection closed before the server had the join")
		return
	}
	refused := make(chan struct{})
	go func() {
		if err := ng.gcOut.WaitComplete(ctx); err != nil {
			if rej, _ := ng.gcOut.Rejected(); rej {
				close(refused)
			}
		}
	}()
	if r.Delivered() {
		settle := time.NewTimer(max(joinSettle, 4*ng.nc.sess.SRTT()))
		select {
		case <-settle.C:
		case <-ng.heardServer:
		case <-refused:
		case <-ctx.Done():
		}
		settle.Stop()
	}
	// The refusal can come with the acknowledgement, in one packet, and
	// then end the join's write before the goroutine above saw it.
	rejected, _ := ng.gcOut.Rejected()
	select {
	case <-refused:
		rejected = true
	default:
	}
	if rejected {
		joined := false
		ng.call(func() { joined = ng.joined })
		if !joined { // a neighbourship that formed meanwhile already told Success
			fail(flash.LevelError, GroupConnectRejected, "the server refused the group")
			return
		}
	}
	if !r.Delivered() {
		fail(flash.LevelError, GroupConnectFailed, "the server did not take the join")
		return
	}
	if ctx.Err() != nil {
		return
	}
	ng.do(func() { ng.connected() })
	// A refusal later than that is no answer to the join (a server
	// shutting down refuses its flows, then closes): the group goes on
	// with the members it has.
	select {
	case <-refused:
		ng.log.Info("the server ended the group's channel")
	case <-ctx.Done():
	}
}

func (ng *NetGroup) connected() {
	if ng.joined {
		return
	}
	ng.joined = true
	ng.emitConnect(flash.LevelStatus, GroupConnectSuccess, "joined "+ng.sp.Name)
}

// emitConnect reports a NetGroup.Connect.* event on the group and, as
// Flash does, on the NetConnection (info.group: the groupspec).
func (ng *NetGroup) emitConnect(level, code, desc string) {
	ng.emit(level, code, desc)
	ng.nc.emit(Status{Level: level, Code: code, Description: desc, Info: flash.Info(level, code, desc, "group", ng.spec)})
}

func (ng *NetGroup) emit(level, code, desc string, extra ...any) {
	select {
	case ng.status <- Status{Level: level, Code: code, Description: desc, Info: flash.Info(level, code, desc, extra...)}:
	default:
		ng.c.eventsDropped.Add(1)
	}
}

// Status delivers the group's events: NetGroup.Connect.*,
// NetGroup.Neighbor.Connect/Disconnect (info: neighbor, peerID),
// NetGroup.Posting.Notify (info: message, messageID) and
// NetGroup.SendTo.Notify (info: message, from, fromLocal). The group
// never waits for the reader: events beyond the channel's buffer (1024)
// are dropped and counted (Stats().EventsDropped), posts and neighbour
// events alike. An application that must see every post reads this
// channel without pause (hand slow work to another goroutine). The
// channel is not closed; Done tells when the group has closed.
func (ng *NetGroup) Status() <-chan Status { return ng.status }

// Done is closed when the group is closed.
func (ng *NetGroup) Done() <-chan struct{} { return ng.quit }

// Groupspec is the groupspec string the group was joined with.
func (ng *NetGroup) Groupspec() string { return ng.spec }

// GroupID is the group ID (64 hex digits).
func (ng *NetGroup) GroupID() string { return ng.ident.HexID() }

// LocalAddress is this member's group address (64 hex digits).
func (ng *NetGroup) LocalAddress() string { return ng.selfAddr.String() }

// ConvertPeerIDToGroupAddress gives a peer's group address, as the
// package function does.
func (ng *NetGroup) ConvertPeerIDToGroupAddress(peerID string) (string, error) {
	return ConvertPeerIDToGroupAddress(peerID)
}

// do runs fn on the group's loop; false if the group is closed. The mail
// channel is unbuffered: true means the loop took fn and runs it (with a
// buffer, a send could win against a loop that had already ended, and fn,
// a handshake to answer say, would never run).
func (ng *NetGroup) do(fn func()) bool {
	select {
	case ng.mail <- fn:
		return true
	case <-ng.loopDone:
		return false
	}
}

// call runs fn on the loop and waits for it.
func (ng *NetGroup) call(fn func()) bool {
	done := make(chan struct{})
	if !ng.do(func() { fn(); close(done) }) {
		return false
	}
	select {
	case <-done:
		return true
	case <-ng.loopDone:
		return false
	}
}

// run is the group's loop: it owns the membership state and does every
// write to neighbours (never blocking).
func (ng *NetGroup) run() {
	defer ng.nc.wg.Done()
	defer close(ng.loopDone)
	t := time.NewTicker(groupTick)
	defer t.Stop()
	now := time.Now()
	ng.planAt, ng.reportAt, ng.cleanAt = now.Add(groupPlanDebounce), now.Add(groupReportPeriod), now.Add(groupCleanPeriod)
	for {
		select {
		case fn := <-ng.mail:
			fn()
			if ng.closedLoop {
				return
			}
		case now := <-t.C:
			ng.manage(now)
		case <-ng.nc.done:
			ng.shutdown()
			return
		}
	}
}

// soon asks for the neighbour set to be recomputed shortly.
func (ng *NetGroup) soon(now time.Time) {
	if at := now.Add(groupPlanDebounce); at.Before(ng.planAt) {
		ng.planAt = at
	}
}

func (ng *NetGroup) manage(now time.Time) {
	for _, l := range ng.links {
		if !l.validated && now.Sub(l.started) > groupHandshakeWait {
			ng.closeLink(l, false, "no group handshake")
			ng.mesh.DialFailed(now, l.id)
		}
	}
	if !now.Before(ng.planAt) {
		ng.planAt = now.Add(groupPlanPeriod)
		for id, l := range ng.links {
			if l.connected {
				ng.mesh.SetRTT(id, l.pc.ps.sess.SRTT())
			}
		}
		dial, drop, ask := ng.mesh.Plan(now)
		for _, id := range drop {
			if l := ng.links[id]; l != nil {
				ng.closeLink(l, false, "dropped for a wanted neighbour")
			}
		}
		for _, id := range dial {
			ng.dial(id)
		}
		for _, id := range ask {
			if l := ng.links[id]; l != nil && l.connected {
				l.write(l.out, []byte{group.TypeAskClose})
			}
		}
		ng.neighbors.Store(int32(len(ng.mesh.Neighbors())))
		ng.estimate.Store(floatBits(ng.mesh.EstimatedMemberCount()))
	}
	if !now.Before(ng.reportAt) || (!ng.newsAt.IsZero() && !now.Before(ng.newsAt)) {
		if !now.Before(ng.reportAt) {
			ng.reportAt = now.Add(groupReportPeriod)
		}
		ng.newsAt = time.Time{}
		// One random neighbour that is not awaiting our reply.
		for _, l := range ng.links {
			if l.connected && !l.reportInitiator {
				ng.sendReport(l, true, now)
				break
			}
		}
	}
	if !now.Before(ng.cleanAt) {
		ng.cleanAt = now.Add(groupCleanPeriod)
		ng.mesh.Clean(now)
	}
	ng.mediaTick(now)
	ng.forget(now)
}

// dial opens a session to a member (or uses the open one) and starts the
// group handshake on it.
func (ng *NetGroup) dial(id [32]byte) {
	if l := ng.links[id]; l != nil {
		return
	}
	p := ng.mesh.Peer(id)
	if p == nil {
		return
	}
	ng.mesh.Dialing(id)
	ng.log.Debug("dialling", "peer", groupLog(id))
	var extra []netip.AddrPort
	if p.Host.IsValid() && p.Host != ng.nc.server {
		extra = append(extra, p.Host)
	}
	for _, a := range p.DialAddrs() {
		if len(extra) < 6 {
			extra = append(extra, a.AddrPort)
		}
	}
	ng.nc.spawn(func() {
		ctx, cancel := untilClosed(ng.quit)
		defer cancel()
		pc, err := ng.nc.dialPeer(ctx, hex.EncodeToString(id[:]), false, extra)
		ng.do(func() {
			now := time.Now()
			if errors.Is(err, engine.ErrPeerGone) {
				ng.trace("member gone")
				ng.log.Debug("member gone", "peer", groupLog(id))
				ng.mesh.Gone(now, id)
				ng.soon(now)
				return
			}
			if err != nil {
				ng.log.Debug("dial failed", "peer", hex.EncodeToString(id[:8]), "err", err)
				ng.mesh.DialFailed(now, id)
				ng.soon(now)
				return
			}
			if l := ng.links[id]; l != nil {
				return // the peer's handshake came first
			}
			ng.startLink(pc, id, now)
		})
	})
}

// AddNeighbor connects to a member now (it must be in the group). The
// neighbourship may later be dropped if the group does not need it.
func (ng *NetGroup) AddNeighbor(peerID string) bool {
	id, err := ParsePeerID(peerID)
	if err != nil || id == ng.self {
		return false
	}
	return ng.do(func() {
		ng.mesh.Hear(time.Now(), id, 0, nil)
		ng.dial(id)
	})
}

// AddMemberHint records that a peer is a member; it becomes a neighbour
// only if the group needs it.
func (ng *NetGroup) AddMemberHint(peerID string) bool {
	id, err := ParsePeerID(peerID)
	if err != nil || id == ng.self {
		return false
	}
	return ng.do(func() {
		now := time.Now()
		if ng.mesh.Hear(now, id, 0, nil) {
			ng.soon(now)
		}
	})
}

// onMember handles the server's announcement of a member: connect to it
// now (it has just joined, near us on the ring).
func (ng *NetGroup) onMember(id [32]byte) {
	if id == ng.self {
		return
	}
	now := time.Now()
	ng.mesh.Hear(now, id, 0, nil)
	if p := ng.mesh.Peer(id); p != nil && !p.Connected && !p.Dialing {
		if ok, evict := ng.mesh.CanAccept(now, id); ok && evict == nil {
			ng.dial(id)
		}
	}
}

// readServer reads the server's GC flow: member announcements.
func (ng *NetGroup) readServer(f *engine.RecvFlow) {
	ng.readFlow(f, func(m []byte) {
		ng.heardOnce.Do(func() { close(ng.heardServer) })
		if id, ok := flash.ParseGroupMember(m); ok {
			ng.onMember(id)
		}
	})
}

// readFlow hands each message of f to handle, on the loop, until the
// flow ends or the group closes.
func (ng *NetGroup) readFlow(f *engine.RecvFlow, handle func(m []byte)) {
	ctx, cancel := untilClosed(ng.quit)
	defer cancel()
	for {
		m, err := f.Read(ctx)
		if err != nil {
			return
		}
		ng.do(func() { handle(m) })
	}
}

// groupOfServerFlow finds the group a server GC flow answers.
func (nc *NetConnection) groupOfServerFlow(f *engine.RecvFlow) *NetGroup {
	if !group.IsServerChannel(f.Metadata()) {
		return nil
	}
	assoc, ok := f.Assoc()
	nc.mu.Lock()
	defer nc.mu.Unlock()
	var only *NetGroup
	for _, g := range nc.groups {
		if ok && g.gcID.Load() == assoc+1 {
			return g
		}
		if g.gcID.Load() != 0 {
			only = g
		}
	}
	if !ok && len(nc.groups) == 1 {
		return only
	}
	return nil
}

// NeighborCount is the number of neighbours.
func (ng *NetGroup) NeighborCount() int { return int(ng.neighbors.Load()) }

// EstimatedMemberCount estimates the group's size (this member included)
// from how densely the members nearest on the ring are packed.
func (ng *NetGroup) EstimatedMemberCount() float64 {
	ng.call(func() { ng.estimate.Store(floatBits(ng.mesh.EstimatedMemberCount())) })
	return bitsFloat(ng.estimate.Load()) // the last one once the group is closed
}

// Neighbor is a current neighbour.
type Neighbor struct {
	PeerID       string
	GroupAddress string
	RTT          time.Duration
}

// Neighbors lists the current neighbours.
func (ng *NetGroup) Neighbors() []Neighbor {
	var out []Neighbor
	ng.call(func() {
		for _, id := range ng.mesh.Neighbors() {
			l := ng.links[id]
			var rtt time.Duration
			if l != nil {
				rtt = l.pc.ps.sess.SRTT()
			}
			out = append(out, Neighbor{PeerID: hex.EncodeToString(id[:]), GroupAddress: group.AddressOf(id).String(), RTT: rtt})
		}
	})
	return out
}

// Stats returns the group's counters.
func (ng *NetGroup) Stats() GroupStats {
	c := &ng.c
	return GroupStats{PostsSent: c.postsSent.Load(), PostsReceived: c.postsReceived.Load(), PostsDuplicate: c.postsDuplicate.Load(),
		PostsDropped: c.postsDropped.Load(), RoutedDelivered: c.routedDelivered.Load(), RoutedForwarded: c.routedForwarded.Load(),
		RoutedDropped: c.routedDropped.Load(), ReportsSent: c.reportsSent.Load(), ReportsReceived: c.reportsReceived.Load(),
		HandshakesRefused: c.handshakesRefused.Load(), NeighborsConnected: c.neighborsConnected.Load(), EventsDropped: c.eventsDropped.Load()}
}

// Close leaves the group: each neighbour's group flow is finished (which
// ends the neighbourship), the server channel is finished (the server
// drops the membership), and sessions used by nothing else close.
func (ng *NetGroup) Close() error {
	ng.closing.Do(func() {
		ng.do(func() { ng.shutdown() })
		<-ng.loopDone
	})
	return nil
}

// shutdown runs on the loop and ends it.
func (ng *NetGroup) shutdown() {
	if ng.closedLoop {
		return
	}
	ng.closedLoop = true
	close(ng.quit)
	for _, m := range ng.media {
		m.close(m.local != nil && m.local.publisher)
	}
	for _, l := range ng.links {
		ng.closeLink(l, false, "")
	}
	if ng.gcOut != nil {
		ng.gcOut.Close()
	}
	ng.unregister()
}

func floatBits(f float64) uint64 { return math.Float64bits(f) }
func bitsFloat(b uint64) float64 { return math.Float64frombits(b) }

// groupLog is a short peer label for logs.
func groupLog(id [32]byte) string { return strings.ToLower(hex.EncodeToString(id[:6])) }

// untilClosed is a context that ends when ch is closed (or cancel is
// called).
func untilClosed(ch <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}
