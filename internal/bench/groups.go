package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/internal/wire"
)

// GroupsConfig shapes the NetGroup load: Members memberships spread evenly
// over Groups groups, held by Clients sessions (each joins Members/Clients
// groups, one GC flow each), joined with Concurrency joins in flight.
type GroupsConfig struct {
	Members, Groups, Clients, Concurrency int
}

// GroupsResult is what Groups measured. The first member of each group
// joins before the clock starts (nobody is there to be told about); every
// later join is timed from the join message to the first bootstrap
// message that names the joiner or reaches it.
type GroupsResult struct {
	Members, Groups, Clients int
	Joins, Failures          int
	Elapsed                  time.Duration
	PerSecond                float64
	Latency                  Latencies
	// Messages is the bootstrap messages the clients received (each
	// once). MaxPerJoin is the most the clients received for one join,
	// counted only when one join runs at a time (Concurrency 1): a
	// message between two members is the later one's join's (the server
	// announces a newcomer to members and members to a newcomer), in the
	// order the joins were sent, which is then the server's; of joins in
	// flight together the client cannot tell which came first.
	Messages   int64
	MaxPerJoin int
	// HeapPerMember is the Go heap the memberships cost the embedded
	// server (the sessions' own cost is measured before the joins).
	HeapPerMember float64
}

// groupSession is one client holding several memberships: it joins
// groups on GC flows of its own and reads and acknowledges whatever the
// server sends, like a real client, with no engine behind it.
type groupSession struct {
	c    *client
	s    *session
	peer [32]byte

	mu       sync.Mutex // guards everything below, and the sealer
	nextFlow uint64
	ours     map[uint64]int     // our GC flow ID -> group index
	acked    map[uint64]bool    // our GC flows whose join the server acknowledged
	flows    map[uint64]*inFlow // server flow ID -> receive state
	pong     chan struct{}      // a ping's reply, when one is awaited
}

// inFlow is a server flow's receive state: the group its return
// association names (-1: not a GC flow of ours) and the sequence numbers
// received.
type inFlow struct {
	group int
	cum   uint64
	ahead map[uint64]bool
}

// groupEvents receives what the sessions read.
type groupEvents interface {
	member(s *groupSession, group int, peer [32]byte)
	acked(s *groupSession, group int)
	refused(s *groupSession, group int)
}

func newGroupSession(c *client, s *session, id *handshake.Identity) *groupSession {
	return &groupSession{c: c, s: s, peer: id.PeerID, nextFlow: 3,
		ours: map[uint64]int{}, acked: map[uint64]bool{}, flows: map[uint64]*inFlow{}}
}

func (g *groupSession) header() []byte {
	return wire.AppendHeader(nil, wire.Header{Flags: wire.FlagTimestamp | wire.ModeInitiator, Timestamp: uint16(time.Now().UnixMilli() / 4)})
}

// send seals and sends a packet; g.mu held.
func (g *groupSession) send(pkt []byte) {
	g.c.conn.WriteToUDPAddrPort(g.s.sealer.Seal(nil, g.s.farSID, pkt), g.s.server)
}

// join opens a GC flow for group and sends the join (Flash's layout:
// metadata "GC", associated with the server's NetConnection flow). It
// returns the flow ID, for retransmissions.
func (g *groupSession) join(group int, id [32]byte) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.nextFlow
	g.nextFlow++
	g.ours[f] = group
	g.sendJoin(f, id)
	return f
}

// sendJoin (re)sends the join on flow f; g.mu held.
func (g *groupSession) sendJoin(f uint64, id [32]byte) {
	opts := wire.AppendOption(nil, wire.OptMetadata, flash.GroupMetadata)
	opts = append(wire.AppendOptionVLU(opts, wire.OptReturnFlow, g.s.ctrlFlow), 0)
	pkt := wire.UserData{FlowID: f, Seq: 1, FSNOffset: 1, Options: opts, Data: flash.AppendGroupJoin(nil, id)}.Append(g.header())
	g.send(pkt)
}

func (g *groupSession) resend(f uint64, id [32]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sendJoin(f, id)
}

// read handles the session's packets until the socket closes.
func (g *groupSession) read(ev groupEvents) {
	buf := make([]byte, 2048)
	for {
		n, _, err := g.c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if sid, err := wire.SessionID(buf[:n]); err != nil || sid != g.s.nearSID {
			continue
		}
		g.packet(buf[:n], ev)
	}
}

type memberMsg struct {
	group int
	peer  [32]byte
}

// packet handles one datagram: user data is recorded and acknowledged,
// acknowledgements of our joins are noted.
func (g *groupSession) packet(d []byte, ev groupEvents) {
	var members []memberMsg
	var acked, refused []int
	g.mu.Lock()
	pt, err := g.s.opener.Open(d)
	if err != nil {
		g.mu.Unlock()
		return
	}
	_, hl, err := wire.ParseHeader(pt)
	if err != nil {
		g.mu.Unlock()
		return
	}
	touched := map[uint64]*inFlow{}
	var prev wire.UserData
	for b := pt[hl:]; ; {
		c, rest, ok := wire.NextChunk(b)
		if !ok {
			break
		}
		b = rest
		switch c.Type {
		case wire.ChunkUserData, wire.ChunkNextUserData:
			next := c.Type == wire.ChunkNextUserData
			ud, err := wire.ParseUserData(c.Payload, next)
			if err != nil {
				continue
			}
			if next {
				ud.FlowID, ud.Seq = prev.FlowID, prev.Seq+1
			}
			prev = ud
			fl := g.flows[ud.FlowID]
			if fl == nil {
				fl = &inFlow{group: -1}
				g.flows[ud.FlowID] = fl
			}
			if fl.group < 0 && ud.Options != nil {
				wire.WalkOptionList(ud.Options, func(o wire.Option) {
					if o.Type != wire.OptReturnFlow {
						return
					}
					if v, _, err := wire.ParseVLU(o.Value); err == nil {
						if gi, ok := g.ours[v]; ok {
							fl.group = gi
						}
					}
				})
			}
			touched[ud.FlowID] = fl
			if ud.Seq <= fl.cum || fl.ahead[ud.Seq] {
				continue // a retransmission
			}
			if ud.Seq == fl.cum+1 {
				fl.cum++
				for fl.ahead[fl.cum+1] {
					delete(fl.ahead, fl.cum+1)
					fl.cum++
				}
			} else {
				if fl.ahead == nil {
					fl.ahead = map[uint64]bool{}
				}
				fl.ahead[ud.Seq] = true
			}
			if p, ok := flash.ParseGroupMember(ud.Data); ok && fl.group >= 0 {
				members = append(members, memberMsg{fl.group, p})
			}
		case wire.ChunkFlowException:
			if fe, err := wire.ParseFlowException(c.Payload); err == nil {
				if gi, ours := g.ours[fe.FlowID]; ours {
					refused = append(refused, gi)
				}
			}
		case wire.ChunkPingReply:
			if g.pong != nil {
				close(g.pong)
				g.pong = nil
			}
		case wire.ChunkAckRanges, wire.ChunkAckBitmap:
			var a wire.Ack
			if c.Type == wire.ChunkAckRanges {
				a, err = wire.ParseAckRanges(c.Payload)
			} else {
				a, err = wire.ParseAckBitmap(c.Payload)
			}
			if gi, ours := g.ours[a.FlowID]; err == nil && ours && a.Cum >= 1 && !g.acked[a.FlowID] {
				g.acked[a.FlowID] = true
				acked = append(acked, gi)
			}
		}
	}
	if len(touched) > 0 {
		pkt := g.header()
		for id, fl := range touched {
			pkt = wire.Ack{FlowID: id, Window: 256, Cum: fl.cum}.Append(pkt, 1100-len(pkt))
		}
		g.send(pkt)
	}
	g.mu.Unlock()
	for _, m := range members {
		ev.member(g, m.group, m.peer)
	}
	for _, gi := range acked {
		ev.acked(g, gi)
	}
	for _, gi := range refused {
		ev.refused(g, gi)
	}
}

// sync pings the server and waits for the reply: the server handles a
// session's packets in order, so by then it has processed every
// acknowledgement this session sent before (its send buffers are free).
func (g *groupSession) sync(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		pong := make(chan struct{})
		g.pong = pong
		g.send(wire.AppendChunk(g.header(), wire.ChunkPing, []byte("sync")))
		g.mu.Unlock()
		select {
		case <-pong:
			return true
		case <-time.After(retransmit):
		}
	}
	return false
}

// close asks the server to close the session, so that a server that is
// not this process frees its sessions (and their memberships) at once.
func (g *groupSession) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.send(wire.AppendChunk(g.header(), wire.ChunkCloseRequest, nil))
}

// forget drops the per-flow state once everything is settled, so that
// the client's bookkeeping does not count as the server's memory.
func (g *groupSession) forget() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ours, g.acked, g.flows = map[uint64]int{}, map[uint64]bool{}, map[uint64]*inFlow{}
}

// pendingJoin is a join waiting for its first bootstrap message (or, for
// a group's first member, its acknowledgement).
type pendingJoin struct {
	start   time.Time
	done    chan struct{}
	took    time.Duration
	first   bool // the group's first member: nobody to be told about it
	refused bool // the server refused the GC flow
}

type joinKey struct {
	group int
	peer  [32]byte
}

// groupRun tracks the joins in flight and the messages received.
type groupRun struct {
	mu       sync.Mutex
	pending  map[joinKey]*pendingJoin
	order    map[joinKey]int // each membership's join, numbered as sent
	perJoin  []int           // messages received, by the join that caused them
	messages atomic.Int64
	want     atomic.Int64  // reached is closed
	reached  chan struct{} // when messages reaches want
	refusal  chan struct{} // closed at the first refused GC flow
	once     sync.Once
}

// sent numbers a join as it is sent.
func (r *groupRun) sent(k joinKey, p *pendingJoin) {
	r.mu.Lock()
	r.pending[k] = p
	r.order[k] = len(r.perJoin)
	r.perJoin = append(r.perJoin, 0)
	r.mu.Unlock()
}

// maxPerJoin is the most messages one join caused.
func (r *groupRun) maxPerJoin() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Max(append(r.perJoin, 0))
}

// await waits until n messages have arrived, or d has passed.
func (r *groupRun) await(n int64, d time.Duration) bool {
	r.mu.Lock()
	r.want.Store(n)
	r.reached = make(chan struct{})
	ch := r.reached
	if r.messages.Load() >= n {
		close(ch)
		r.reached = nil
	}
	r.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func (r *groupRun) complete(k joinKey) {
	r.mu.Lock()
	p := r.pending[k]
	delete(r.pending, k)
	r.mu.Unlock()
	if p != nil {
		p.took = time.Since(p.start)
		close(p.done)
	}
}

// member: s was told about peer in group: that completes the join of s
// (told its ring successor) or of peer (its predecessors are told), and
// counts for the later of the two joins.
func (r *groupRun) member(s *groupSession, group int, peer [32]byte) {
	r.mu.Lock()
	a, okA := r.order[joinKey{group, s.peer}]
	b, okB := r.order[joinKey{group, peer}]
	if okA && okB {
		r.perJoin[max(a, b)]++
	}
	r.mu.Unlock()
	if n := r.messages.Add(1); n >= r.want.Load() {
		r.mu.Lock()
		if r.reached != nil && n >= r.want.Load() {
			close(r.reached)
			r.reached = nil
		}
		r.mu.Unlock()
	}
	r.complete(joinKey{group, s.peer})
	r.complete(joinKey{group, peer})
}

// acked: the server acknowledged s's join of group. That completes a
// group's first member's join, which causes no bootstrap message; any
// other join waits for its first one (the server acknowledges a refused
// flow's data too).
func (r *groupRun) acked(s *groupSession, group int) {
	k := joinKey{group, s.peer}
	r.mu.Lock()
	p := r.pending[k]
	r.mu.Unlock()
	if p != nil && p.first {
		r.complete(k)
	}
}

// refused: the server refused s's GC flow for group, with a flow
// exception: a limit, which no retransmission will change.
func (r *groupRun) refused(s *groupSession, group int) {
	k := joinKey{group, s.peer}
	r.mu.Lock()
	p := r.pending[k]
	delete(r.pending, k)
	r.mu.Unlock()
	if p != nil {
		p.refused = true
		close(p.done)
	}
	r.once.Do(func() { close(r.refusal) }) // no use waiting for the other joins
}

// errRefused explains a refused GC flow.
var errRefused = errors.New("bench groups: the server refused a GC flow: a limit of the server's, " +
	"--max-groups-per-session (default 8; this run joins --members/--clients groups per session), " +
	"--max-group-members or --group-message-rate; lower --members, or run the server with those raised (-1: no limit)")

func groupID(i int) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(append([]byte("stratus bench group "), b[:]...))
}

// Groups measures NetGroup joins: cfg.Clients sessions connect, then join
// cfg.Members memberships in cfg.Groups groups; it reports joins per
// second, join-to-bootstrap latency and (embedded server) heap per
// membership.
func Groups(ctx context.Context, t *Target, cfg GroupsConfig) (GroupsResult, error) {
	perClient := cfg.Members / max(cfg.Clients, 1)
	switch {
	case cfg.Clients < 1 || cfg.Groups < 1 || cfg.Concurrency < 1:
		return GroupsResult{}, errors.New("bench groups: --clients, --groups and --concurrency must be at least 1")
	case perClient < 1 || perClient > 200:
		return GroupsResult{}, fmt.Errorf("bench groups: %d members over %d clients is %d groups per client (1 to 200)", cfg.Members, cfg.Clients, perClient)
	case perClient > cfg.Groups:
		return GroupsResult{}, fmt.Errorf("bench groups: %d groups per client, but only %d groups", perClient, cfg.Groups)
	case cfg.Members/cfg.Groups > cfg.Clients:
		return GroupsResult{}, errors.New("bench groups: a group has more members than there are clients")
	}
	members := perClient * cfg.Clients
	run := &groupRun{pending: map[joinKey]*pendingJoin{}, order: map[joinKey]int{}, refusal: make(chan struct{})}
	run.want.Store(1 << 62)
	sessions, err := groupSessions(ctx, t, cfg.Clients, cfg.Concurrency, run)
	defer func() {
		for _, s := range sessions {
			if t.Local == nil {
				s.close() // the embedded server's owner closes it, and may look at it first
			}
			s.c.conn.Close()
		}
	}()
	if err != nil {
		return GroupsResult{}, err
	}
	var heap0 uint64
	if t.Local != nil {
		heap0, _ = memInUse()
	}
	// Client c's r-th membership is in group (c·perClient + r) mod Groups:
	// distinct groups per client, the same number of members per group.
	type slot struct{ client, group int }
	var founders, rest []slot
	seen := make([]bool, cfg.Groups)
	for r := range perClient {
		for c := range cfg.Clients {
			s := slot{c, (c*perClient + r) % cfg.Groups}
			if !seen[s.group] {
				seen[s.group] = true
				founders = append(founders, s)
			} else {
				rest = append(rest, s)
			}
		}
	}
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	refused := func() bool {
		select {
		case <-run.refusal:
			return true
		default:
			return false
		}
	}
	joinAll := func(slots []slot, lat *[]time.Duration, first bool) (fails int, err error) {
		var next atomic.Int64
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(slots) || ctx.Err() != nil || refused() {
						return
					}
					sl := slots[i]
					s := sessions[sl.client]
					k := joinKey{sl.group, s.peer}
					p := &pendingJoin{start: time.Now(), done: make(chan struct{}), first: first}
					run.sent(k, p)
					id := groupID(sl.group)
					f := s.join(sl.group, id)
					ok := false
					for try := 0; try < 20 && !ok; try++ {
						select {
						case <-p.done:
							ok = true
						case <-run.refusal:
							return
						case <-time.After(500 * time.Millisecond):
							s.resend(f, id)
						}
					}
					mu.Lock()
					if ok && lat != nil {
						*lat = append(*lat, p.took)
					}
					if !ok {
						fails++
						run.mu.Lock()
						delete(run.pending, k)
						run.mu.Unlock()
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if refused() {
			return fails, errRefused
		}
		return fails, ctx.Err()
	}
	if fails, err := joinAll(founders, nil, true); err == errRefused {
		return GroupsResult{}, err
	} else if err != nil || fails > 0 {
		return GroupsResult{}, fmt.Errorf("bench groups: %d of %d first joins unanswered (%v)", fails, len(founders), err)
	}
	var lat []time.Duration
	start := time.Now()
	fails, err := joinAll(rest, &lat, false)
	el := time.Since(start)
	if err != nil {
		return GroupsResult{}, err
	}
	r := GroupsResult{Members: members, Groups: cfg.Groups, Clients: cfg.Clients, Joins: len(lat), Failures: fails,
		Elapsed: el, PerSecond: float64(len(lat)) / el.Seconds(), Latency: summarise(lat)}
	if t.Local != nil {
		// Once the server has reported every join, its count of bootstrap
		// messages is final: wait for all of them to arrive, and for the
		// server to have processed every session's acknowledgements
		// (which free its send buffers), then weigh the memberships.
		if !t.groupJoins.wait(len(founders)+len(lat), time.Minute) {
			return r, errors.New("bench groups: the server did not report every join")
		}
		if !run.await(int64(t.groupMessages()), time.Minute) {
			return r, fmt.Errorf("bench groups: the server sent %v bootstrap messages, %d arrived", t.groupMessages(), run.messages.Load())
		}
		for _, s := range sessions {
			if !s.sync(10 * time.Second) {
				return r, errors.New("bench groups: a session's ping went unanswered")
			}
			s.forget()
		}
		heap1, _ := memInUse()
		r.HeapPerMember = float64(int64(heap1)-int64(heap0)) / float64(members)
	}
	r.Messages = run.messages.Load()
	if cfg.Concurrency == 1 {
		r.MaxPerJoin = run.maxPerJoin()
	}
	return r, nil
}

// groupSessions connects n clients, each from its own loopback address
// when the server is embedded (one address holds one session).
func groupSessions(ctx context.Context, t *Target, n, concurrency int, ev groupEvents) ([]*groupSession, error) {
	ids, err := identities(n) // one peer ID each: a group holds each once
	if err != nil {
		return nil, err
	}
	out := make([]*groupSession, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				laddr := &net.UDPAddr{}
				if t.Local != nil {
					laddr.IP = net.IPv4(127, byte(100+i>>16), byte(i>>8), byte(i)) // apart from bench idle's 127.1.x.x and up
				}
				conn, err := net.ListenUDP("udp4", laddr)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				conn.SetReadBuffer(1 << 20)
				id := ids[i]
				c := newClient(conn, t.Server, id)
				s, code, err := c.connect(t.URL, t.App, time.Now().Add(20*time.Second))
				if err == nil && code != "NetConnection.Connect.Success" {
					err = fmt.Errorf("connect answered %s", code)
					if t.Local == nil {
						err = fmt.Errorf("%w; every client comes from this host's address, so --clients must stay within the server's --max-sessions-per-ip (default 256)", err)
					}
				}
				if err != nil {
					conn.Close()
					errOnce.Do(func() { firstErr = err })
					return
				}
				conn.SetReadDeadline(time.Time{})
				gs := newGroupSession(c, s, id)
				out[i] = gs
				go gs.read(ev)
			}
		}()
	}
	wg.Wait()
	var got []*groupSession
	for _, s := range out {
		if s != nil {
			got = append(got, s)
		}
	}
	if firstErr != nil {
		return got, firstErr
	}
	return got, ctx.Err()
}
