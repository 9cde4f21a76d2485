package rtmfp_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"go.uber.org/goleak"
)

// hub is closed and replaced whenever any member of a test group reports
// an event, so that conditions on the whole group are re-checked exactly
// when something happened.
type hub struct {
	mu      sync.Mutex
	changed chan struct{}
}

func (h *hub) bump() {
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

func (h *hub) ch() chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// waitAll waits until cond holds for the group, re-checking it at every
// event of any member. cond may set *why to say what is missing.
func (h *hub) waitAll(t testing.TB, what string, within time.Duration, cond func(why *string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		ch := h.ch()
		var why string
		if cond(&why) {
			return time.Since(start)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("after %v, still not %s: %s", within, what, why)
		}
	}
}

// testLogger is silent unless STRATUS_GROUP_LOG names a file, where the
// members' debug logs then go.
var testLogger = func() *slog.Logger {
	if p := os.Getenv("STRATUS_GROUP_LOG"); p != "" {
		if f, err := os.Create(p); err == nil {
			return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	return nil
}()

// noLeaks fails the test if goroutines started after this call outlive
// it (checked after the test's other cleanups), except the server's own,
// which closes client sessions in the background.
func noLeaks(t testing.TB) {
	leak := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, leak, goleak.IgnoreAnyFunction("github.com/stratus-rtmfp/stratus/server.closeAfter.func1"))
	})
}

// member is one NetGroup member of a test, with everything its group
// reported.
type member struct {
	nc  *rtmfp.NetConnection
	ng  *rtmfp.NetGroup
	hub *hub

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced at every event
	posts     map[string]int
	postMsgs  map[string]any
	sendTo    []rtmfp.Status
	connected bool
	left      map[string]int // Neighbor.Disconnect by peer ID
	nbrs      map[string]bool
	twice     []string // Neighbor.Connect for a neighbour already connected, or Disconnect for none
}

func (m *member) record(st rtmfp.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch st.Code {
	case rtmfp.GroupPostingNotify:
		id, _ := st.Info.GetString("messageID")
		v, _ := st.Info.Get("message")
		m.posts[id]++
		m.postMsgs[id] = v
	case rtmfp.GroupSendToNotify:
		m.sendTo = append(m.sendTo, st)
	case rtmfp.GroupConnectSuccess:
		m.connected = true
	case rtmfp.GroupNeighborConnect:
		p, _ := st.Info.GetString("peerID")
		if m.nbrs[p] {
			m.twice = append(m.twice, "connect "+p[:8])
		}
		m.nbrs[p] = true
	case rtmfp.GroupNeighborDisconnect:
		p, _ := st.Info.GetString("peerID")
		m.left[p]++
		if !m.nbrs[p] {
			m.twice = append(m.twice, "disconnect "+p[:8])
		}
		delete(m.nbrs, p)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	m.hub.bump()
}

// waitFor waits until cond holds on the member's records, re-checking at
// each of its events.
func (m *member) waitFor(t testing.TB, what string, within time.Duration, cond func(m *member) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		m.mu.Lock()
		ch := m.changed
		ok := cond(m)
		m.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("after %v, still not %s", within, what)
		}
	}
}

type groupOpts struct {
	spec         string
	maxNeighbors int
	loss         float64                                      // per datagram, each way, on every member's socket
	bootstrap    bool                                         // each member also asks an earlier one to be its neighbour (AddNeighbor)
	wrap         func(i int, c net.PacketConn) net.PacketConn // wraps member i's socket
}

// startMembers connects n members to the server at url (in parallel) and
// joins them to a group, one after the other; the server introduces each
// to members already there.
func startMembers(t testing.TB, url string, n int, o groupOpts) ([]*member, *hub) {
	t.Helper()
	h := &hub{changed: make(chan struct{})}
	ms := make([]*member, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() {
			cfg := &rtmfp.Config{LocalAddr: "127.0.0.1:0", PeerTimeout: 5 * time.Second, MaxGroupNeighbors: o.maxNeighbors, Logger: testLogger}
			if o.loss > 0 || o.wrap != nil {
				c, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					errs[i] = err
					return
				}
				if o.loss > 0 {
					c = newLossyConn(c, o.loss, uint64(i))
				}
				if o.wrap != nil {
					c = o.wrap(i, c)
				}
				cfg.PacketConn = c
			}
			nc, err := rtmfp.Connect(context.Background(), url, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			ms[i] = &member{nc: nc, hub: h, changed: make(chan struct{}), posts: map[string]int{}, postMsgs: map[string]any{}, left: map[string]int{}, nbrs: map[string]bool{}}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range ms {
			if m != nil {
				wg.Go(func() { m.nc.Close() })
			}
		}
		wg.Wait()
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Neighbour events pair up: a Connect for a neighbour, a Disconnect
	// when it goes, never two in a row (a session replaced under a
	// neighbourship is no new neighbour).
	t.Cleanup(func() {
		for i, m := range ms {
			if m == nil {
				continue // a member the test closed
			}
			m.mu.Lock()
			if len(m.twice) > 0 {
				t.Errorf("member %d: unpaired neighbour events %v", i, m.twice)
			}
			m.mu.Unlock()
		}
	})
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i, m := range ms {
		ng, err := rtmfp.NewNetGroup(m.nc, o.spec)
		if err != nil {
			t.Fatal(err)
		}
		m.ng = ng
		go func() {
			for {
				select {
				case st := <-ng.Status():
					m.record(st)
				case <-ng.Done():
					return
				}
			}
		}()
		if i > 0 && o.bootstrap {
			ng.AddNeighbor(ms[r.IntN(i)].nc.NearID())
		}
	}
	return ms, h
}

// overlayConnected reports whether the neighbour relation links every
// open member to every other, counting only neighbourships both members
// see (a post goes both ways only on those).
func overlayConnected(ms []*member) bool {
	byID := map[string]int{}
	for i, m := range ms {
		if m != nil {
			byID[m.nc.NearID()] = i
		}
	}
	sees := map[[2]int]bool{}
	start := -1
	for i, m := range ms {
		if m == nil {
			continue
		}
		start = i
		for _, nb := range m.ng.Neighbors() {
			if j, ok := byID[nb.PeerID]; ok {
				sees[[2]int{i, j}] = true
			}
		}
	}
	adj := map[int][]int{}
	for e := range sees {
		if sees[[2]int{e[1], e[0]}] {
			adj[e[0]] = append(adj[e[0]], e[1])
		}
	}
	seen := map[int]bool{start: true}
	queue := []int{start}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, j := range adj[i] {
			if !seen[j] {
				seen[j] = true
				queue = append(queue, j)
			}
		}
	}
	return len(seen) == len(byID)
}

// ringOrder returns the open members by group address.
func ringOrder(ms []*member) []*member {
	var out []*member
	for _, m := range ms {
		if m != nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ng.LocalAddress() < out[j].ng.LocalAddress() })
	return out
}

// ringClosed reports whether every open member has the k members nearest
// it on each side of the ring as neighbours (k = 1: what routing needs;
// k = 3: all the ring neighbours a member wants).
func ringClosed(ms []*member, k int, why *string) bool {
	ring := ringOrder(ms)
	n := len(ring)
	for i, m := range ring {
		nbs := map[string]bool{}
		for _, nb := range m.ng.Neighbors() {
			nbs[nb.PeerID] = true
		}
		for d := 1; d <= k && 2*d < n; d++ {
			next, prev := ring[(i+d)%n], ring[(i+n-d)%n]
			if !nbs[next.nc.NearID()] || !nbs[prev.nc.NearID()] {
				*why = fmt.Sprintf("%s… lacks a ring neighbour at distance %d (up %v, down %v) among %d", m.nc.NearID()[:8], d,
					nbs[next.nc.NearID()], nbs[prev.nc.NearID()], len(nbs))
				return false
			}
		}
	}
	return true
}

// nearestTo is the open member whose group address is nearest addr.
func nearestTo(ms []*member, addr string) *member {
	target, _ := new(big.Int).SetString(addr, 16)
	ring := new(big.Int).Lsh(big.NewInt(1), 256)
	var best *member
	var bestD *big.Int
	for _, m := range ms {
		if m == nil {
			continue
		}
		a, _ := new(big.Int).SetString(m.ng.LocalAddress(), 16)
		d := new(big.Int).Sub(a, target)
		d.Abs(d)
		if alt := new(big.Int).Sub(ring, d); alt.Cmp(d) < 0 {
			d = alt
		}
		if bestD == nil || d.Cmp(bestD) < 0 {
			best, bestD = m, d
		}
	}
	return best
}

// lossyConn drops a fraction of datagrams in each direction.
type lossyConn struct {
	net.PacketConn
	mu   sync.Mutex
	rnd  *rand.Rand
	loss float64
}

func newLossyConn(c net.PacketConn, loss float64, seed uint64) *lossyConn {
	return &lossyConn{PacketConn: c, rnd: rand.New(rand.NewPCG(seed, 99)), loss: loss}
}

func (c *lossyConn) setLoss(loss float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loss = loss
}

func (c *lossyConn) drop() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rnd.Float64() < c.loss
}

func (c *lossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.drop() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

func (c *lossyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.drop() {
			return n, a, err
		}
	}
}
