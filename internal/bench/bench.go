package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

// Target is the server under load: an rtmfp:// URL with its developer key,
// and (for an embedded server) the server itself.
type Target struct {
	URL    string
	Server netip.AddrPort
	App    string
	Local  *server.Server
	// Metrics are the embedded server's.
	Metrics prometheus.Gatherer
	// groupJoins counts the embedded server's SessionGroupJoined events,
	// which it reports once a join's announcements are handed out.
	groupJoins *counter
}

// counter is a count that can be waited on.
type counter struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed and replaced at every change
}

func newCounter() *counter { return &counter{changed: make(chan struct{})} }

func (c *counter) add() {
	c.mu.Lock()
	c.n++
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// wait waits until the count reaches n, or d has passed.
func (c *counter) wait(n int, d time.Duration) bool {
	deadline := time.After(d)
	for {
		c.mu.Lock()
		have, ch := c.n, c.changed
		c.mu.Unlock()
		if have >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// Embedded starts an in-process server on a loopback socket, open to any
// key, configured so that idle sessions are held (no reaping during a run)
// and without the limits a load would hit (sessions, handshakes, groups
// per session and in all, the NetGroup budget).
func Embedded(mod func(*server.Config)) (*Target, error) {
	reg := prometheus.NewRegistry()
	cfg := server.Config{Store: store.NewMemory(), Open: true,
		ClientKeepalive: time.Hour, ReapAfter: 2 * time.Hour, ConnectTimeout: time.Hour,
		HandshakeRate: -1, HelloRate: -1, HelloRatePerPrefix: -1, LookupRate: -1,
		MaxSessionsPerIP: -1, MaxSessions: -1,
		MaxGroupsPerSession: -1, MaxGroupMembers: -1, GroupMessageRate: -1, Registerer: reg, Gatherer: reg}
	if mod != nil {
		mod(&cfg)
	}
	joins := newCounter()
	user := cfg.OnSession
	cfg.OnSession = func(ev server.SessionEvent) {
		if ev.Kind == server.SessionGroupJoined {
			joins.add()
		}
		if user != nil {
			user(ev)
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(8 << 20)
	conn.SetWriteBuffer(8 << 20)
	if err := srv.Listen(conn); err != nil {
		srv.Close()
		return nil, err
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Target{URL: "rtmfp://" + addr.String() + "/bench", Server: addr, App: "bench", Local: srv, Metrics: cfg.Gatherer, groupJoins: joins}, nil
}

// metric sums a family of the embedded server's metrics (counters and
// gauges), or finds a histogram's largest observed bucket bound.
func (t *Target) metric(name string, fn func(m *dto.Metric)) {
	if t.Metrics == nil {
		return
	}
	mfs, err := t.Metrics.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				fn(m)
			}
		}
	}
}

// groupMessages is how many bootstrap messages the embedded server sent.
func (t *Target) groupMessages() float64 {
	var n float64
	t.metric("stratus_group_bootstrap_messages_total", func(m *dto.Metric) { n += m.GetCounter().GetValue() })
	return n
}

// identities are generated once, with short private exponents (the load
// generator's own Diffie-Hellman cost stays well below the server's; at
// least two words, since math/big reduces one-word exponents the slow way).
func identities(n int) ([]*handshake.Identity, error) {
	out := make([]*handshake.Identity, n)
	for i := range out {
		kp, err := handshake.GenerateKeyBits(handshake.Group2, 96, nil)
		if err != nil {
			return nil, err
		}
		if out[i], err = handshake.IdentityFromKey(kp); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Latencies summarises a set of durations.
type Latencies struct{ P50, P99, Max time.Duration }

func summarise(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Latencies{P50: at(0.50), P99: at(0.99), Max: d[len(d)-1]}
}

func (l Latencies) String() string {
	return fmt.Sprintf("p50 %v, p99 %v, max %v", l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
}

// ConnectResult is what Connects measured.
type ConnectResult struct {
	Connects, Failures int
	Elapsed            time.Duration
	PerSecond          float64
	Latency            Latencies
}

// Connects runs total connects (handshake through Connect.Success) with
// concurrency workers, each closing its session before the next.
func Connects(ctx context.Context, t *Target, total, concurrency int) (ConnectResult, error) {
	ids, err := identities(min(concurrency, 64))
	if err != nil {
		return ConnectResult{}, err
	}
	var next, fails atomic.Int64
	lat := make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	var firstErr error
	var errOnce sync.Once
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			defer conn.Close()
			c := newClient(conn, t.Server, ids[w%len(ids)])
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				t0 := time.Now()
				s, code, err := c.connect(t.URL, t.App, t0.Add(10*time.Second))
				if err != nil || code != "NetConnection.Connect.Success" {
					fails.Add(1)
					if err == nil {
						err = fmt.Errorf("connect answered %s", code)
					}
					errOnce.Do(func() { firstErr = err })
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				c.abort(s)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	r := ConnectResult{Connects: len(all), Failures: int(fails.Load()), Elapsed: el, PerSecond: float64(len(all)) / el.Seconds(), Latency: summarise(all)}
	if r.Connects == 0 && firstErr != nil {
		return r, firstErr
	}
	return r, nil
}

// IdleResult is what Idle measured.
type IdleResult struct {
	Sessions       int
	HeapPerSess    float64 // bytes of Go heap per idle session
	TotalPerSess   float64 // heap plus goroutine stacks per session
	ServerSessions int64
	Elapsed        time.Duration
}

func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

// Idle opens n sessions to an embedded server, each from its own loopback
// address (127.x.y.z), completes connect, then forgets it on the client
// side: the server holds n idle sessions, and the difference in the
// process's Go memory is the server's cost per idle session.
func Idle(ctx context.Context, t *Target, n, concurrency int) (IdleResult, error) {
	if t.Local == nil {
		return IdleResult{}, fmt.Errorf("bench idle needs the embedded server (it measures this process's memory)")
	}
	ids, err := identities(64)
	if err != nil {
		return IdleResult{}, err
	}
	heap0, stack0 := memInUse()
	start := time.Now()
	err = sessionsFrom(ctx, n, concurrency, true, func(i int64, conn *net.UDPConn) error {
		defer conn.Close()
		c := newClient(conn, t.Server, ids[int(i)%len(ids)])
		_, code, err := c.connect(t.URL, t.App, time.Now().Add(20*time.Second))
		if err == nil && code != "NetConnection.Connect.Success" {
			err = fmt.Errorf("connect answered %s", code)
		}
		return err
	})
	if err != nil {
		return IdleResult{}, err
	}
	el := time.Since(start)
	time.Sleep(3 * time.Second) // let acknowledgements settle and idle sessions release their cipher state
	heap1, stack1 := memInUse()
	st := t.Local.EngineStats()
	r := IdleResult{Sessions: n, Elapsed: el, ServerSessions: st.SessionsOpen,
		HeapPerSess:  float64(int64(heap1)-int64(heap0)) / float64(n),
		TotalPerSess: float64(int64(heap1+stack1)-int64(heap0+stack0)) / float64(n)}
	return r, nil
}

// sessionsFrom runs fn for i = 1..n on concurrency workers, each call with
// a fresh UDP socket: on loopback (or when loopback is set) from its own
// source address 127.x.y.z, as distinct clients would have, elsewhere from
// its own port. fn owns the socket. It stops at ctx's end or at the first
// error of a worker, and returns that error once every worker is done.
func sessionsFrom(ctx context.Context, n, concurrency int, loopback bool, fn func(i int64, conn *net.UDPConn) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				laddr := &net.UDPAddr{}
				if loopback {
					laddr.IP = net.IPv4(127, byte(1+i>>16), byte(i>>8), byte(i))
				}
				conn, err := net.ListenUDP("udp4", laddr)
				if err == nil {
					err = fn(i, conn)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// IntroResult is what Intros measured.
type IntroResult struct {
	Lookups, Failures int
	Elapsed           time.Duration
	PerSecond         float64
	Latency           Latencies
}

// Intros connects one target peer, then runs total lookups of its peer ID
// (IHello to the server, Redirect back) with concurrency workers, each
// from its own address, measuring the time to the Redirect.
func Intros(ctx context.Context, t *Target, total, concurrency int) (IntroResult, error) {
	ids, err := identities(1)
	if err != nil {
		return IntroResult{}, err
	}
	tconn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return IntroResult{}, err
	}
	defer tconn.Close()
	target := newClient(tconn, t.Server, ids[0])
	if _, code, err := target.connect(t.URL, t.App, time.Now().Add(10*time.Second)); err != nil || code != "NetConnection.Connect.Success" {
		return IntroResult{}, fmt.Errorf("target peer: %v %s", err, code)
	}
	// The target never reads again: the kernel drops the Forwarded IHellos
	// it is sent, which costs the server nothing extra.
	peerID := ids[0].PeerID
	var next, fails atomic.Int64
	lat := make([][]time.Duration, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				fails.Add(1)
				return
			}
			defer conn.Close()
			c := newClient(conn, t.Server, nil)
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				t0 := time.Now()
				if err := c.lookup(peerID, t0.Add(5*time.Second)); err != nil {
					fails.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return IntroResult{Lookups: len(all), Failures: int(fails.Load()), Elapsed: el, PerSecond: float64(len(all)) / el.Seconds(), Latency: summarise(all)}, nil
}

// Report writes results in a human-readable form.
func Report(w io.Writer, name string, v any) {
	switch r := v.(type) {
	case ConnectResult:
		fmt.Fprintf(w, "%s: %d connects (%d failed) in %v: %.0f connects/s; handshake-to-Connect.Success latency %v\n",
			name, r.Connects, r.Failures, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.Latency)
	case IdleResult:
		fmt.Fprintf(w, "%s: %d idle sessions held (server counts %d), opened in %v; Go heap %.0f bytes/session, heap+stacks %.0f bytes/session\n",
			name, r.Sessions, r.ServerSessions, r.Elapsed.Round(time.Millisecond), r.HeapPerSess, r.TotalPerSess)
	case GroupsResult:
		fmt.Fprintf(w, "%s: %d memberships in %d groups held by %d clients; %d timed joins (%d failed) in %v: %.0f joins/s; join-to-bootstrap latency %v; %d bootstrap messages received",
			name, r.Members, r.Groups, r.Clients, r.Joins, r.Failures, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.Latency, r.Messages)
		if r.MaxPerJoin != 0 {
			fmt.Fprintf(w, ", at most %d for one join", r.MaxPerJoin)
		}
		if r.HeapPerMember != 0 {
			fmt.Fprintf(w, "; Go heap %.0f bytes/membership", r.HeapPerMember)
		}
		fmt.Fprintln(w)
	case HoldResult:
		fmt.Fprintf(w, "%s: %d sessions closed after %v (the server had closed %d of them)\n",
			name, r.Sessions, r.Held.Round(time.Millisecond), r.Lost)
	case IntroResult:
		fmt.Fprintf(w, "%s: %d introductions (%d failed) in %v: %.0f/s; lookup-to-Redirect latency %v\n",
			name, r.Lookups, r.Failures, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.Latency)
	}
}
