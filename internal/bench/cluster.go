package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/server"
	_ "github.com/stratus-rtmfp/stratus/server/cluster" // links cluster mode
)

// Cluster starts n embedded servers in this process joined in one cluster
// (embedded NATS, routes on loopback), configured like Embedded, and returns once every node hears
// the others. stop closes them all.
func Cluster(n int, mod func(i int, c *server.Config)) (targets []*Target, stop func(), err error) {
	dir, err := os.MkdirTemp("", "stratus-bench-cluster")
	if err != nil {
		return nil, nil, err
	}
	var secret [24]byte
	rand.Read(secret[:])
	stop = func() {
		for _, t := range targets {
			t.Local.Close()
		}
		os.RemoveAll(dir)
	}
	// Every node lists every node (itself too) as a seed route, on ports
	// that were free a moment ago.
	var listen, routes []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		listen = append(listen, ln.Addr().String())
		routes = append(routes, "nats-route://"+ln.Addr().String())
		ln.Close()
	}
	for i := range n {
		t, err := Embedded(func(c *server.Config) {
			// All the initiators share 127.0.0.0/24: no per-prefix budget.
			c.HelloRatePerPrefix, c.LookupRate = -1, -1
			c.Cluster = &server.ClusterConfig{Node: fmt.Sprintf("bench%d", i+1), Name: "bench", Secret: []byte(hex.EncodeToString(secret[:])),
				Listen: listen[i], Routes: routes, StoreDir: fmt.Sprintf("%s/nats%d", dir, i+1), Replicas: min(n, 3)}
			if mod != nil {
				mod(i, c)
			}
		})
		if err != nil {
			stop()
			return nil, nil, err
		}
		targets = append(targets, t)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !formed(targets) {
		if time.Now().After(deadline) {
			stop()
			return nil, nil, errors.New("bench: the cluster did not form in 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return targets, stop, nil
}

func formed(ts []*Target) bool {
	for _, t := range ts {
		if st, ok := t.Local.Cluster(); !ok || len(st.Nodes) != len(ts) {
			return false
		}
	}
	return true
}

// CrossIntroResult is what CrossIntros measured.
type CrossIntroResult struct {
	Lookups, Failures int
	Elapsed           time.Duration
	PerSecond         float64
	// Redirect: from the lookup (IHello) sent to the node the initiator
	// writes to, to the Redirect back from that node. Forward: from the
	// same IHello to the Forwarded IHello arriving at the target peer, which
	// another node holds; the introduction is complete when both arrived.
	Redirect, Forward, Complete Latencies
	ForwardsMissing             int // lookups whose Forwarded IHello never came
}

// CrossIntros connects targets peers to node to, waits until node from
// knows them, then runs total lookups of their peer IDs (in turn) at node
// from with concurrency workers, each from its own address, measuring
// the time to the Redirect (from node from) and to the Forwarded IHello
// at the target (sent by node to on node from's request, over NATS).
// Lookups are spread over several targets as real ones are: a session
// queues a bounded number of Forwarded IHellos, and thousands per second
// to one peer would measure that bound, not the cluster.
//
// With rate > 0 the lookups are paced at rate per second in all (open
// loop, for latency at a given load); otherwise each worker sends its next
// lookup as soon as its Redirect came (throughput). The introductions per
// second reported count an introduction when both its Redirect and its
// Forwarded IHello have arrived.
func CrossIntros(ctx context.Context, from, to *Target, targets, total, concurrency int, rate float64) (CrossIntroResult, error) {
	x, err := NewCrossIntro(from, to, targets)
	if err != nil {
		return CrossIntroResult{}, err
	}
	defer x.Close()
	peers := x.peers
	type sample struct {
		tag      string
		sent     time.Time
		redirect time.Duration
	}
	var next, fails atomic.Int64
	samples := make([][]sample, concurrency)
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
			c := newClient(conn, from.Server, nil)
			var tick *time.Ticker
			if rate > 0 {
				tick = time.NewTicker(time.Duration(float64(time.Second) * float64(concurrency) / rate))
				defer tick.Stop()
			}
			for i := next.Add(1); i <= int64(total) && ctx.Err() == nil; i = next.Add(1) {
				if tick != nil {
					<-tick.C
				}
				tag := randomTag()
				t0 := time.Now()
				if err := c.lookupTag(peers[i%int64(len(peers))], tag, t0.Add(5*time.Second)); err != nil {
					fails.Add(1)
					continue
				}
				samples[w] = append(samples[w], sample{string(tag), t0, time.Since(t0)})
			}
		}()
	}
	wg.Wait()
	// Forwarded IHellos may still be on their way: wait until every one
	// came, or none came for a second.
	want := 0
	for _, ws := range samples {
		want += len(ws)
	}
	lastCount, lastChange := -1, time.Now()
	for {
		x.mu.Lock()
		n := len(x.arrived)
		x.mu.Unlock()
		if n >= want || time.Since(lastChange) > time.Second {
			break
		}
		if n != lastCount {
			lastCount, lastChange = n, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	x.mu.Lock()
	var red, fwd, done []time.Duration
	missing := 0
	end := start
	for _, ws := range samples {
		for _, s := range ws {
			red = append(red, s.redirect)
			at, ok := x.arrived[s.tag]
			if !ok {
				missing++
				continue
			}
			f := at.Sub(s.sent)
			fwd = append(fwd, f)
			done = append(done, max(f, s.redirect))
			if t := s.sent.Add(max(f, s.redirect)); t.After(end) {
				end = t
			}
		}
	}
	x.mu.Unlock()
	el := end.Sub(start)
	return CrossIntroResult{Lookups: len(red), Failures: int(fails.Load()), Elapsed: el, PerSecond: float64(len(done)) / el.Seconds(),
		Redirect: summarise(red), Forward: summarise(fwd), Complete: summarise(done), ForwardsMissing: missing}, nil
}

// CrossIntro is the set-up of cross-node introductions: target peers
// connected to one node, known to another, whose Forwarded IHellos are
// noted as they arrive.
type CrossIntro struct {
	from    *Target
	peers   [][32]byte
	conns   []*net.UDPConn
	closers []func()
	readers sync.WaitGroup
	mu      sync.Mutex
	arrived map[string]time.Time // tag -> when its Forwarded IHello arrived
	waiting map[string]chan time.Time
	client  *client // One's initiator
}

// NewCrossIntro connects targets peers to node to and waits until node
// from knows them all.
func NewCrossIntro(from, to *Target, targets int) (*CrossIntro, error) {
	ids, err := identities(targets)
	if err != nil {
		return nil, err
	}
	x := &CrossIntro{from: from, arrived: map[string]time.Time{}, waiting: map[string]chan time.Time{}}
	for _, id := range ids {
		tconn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			x.Close()
			return nil, err
		}
		x.conns = append(x.conns, tconn)
		tconn.SetReadBuffer(1 << 20)
		target := newClient(tconn, to.Server, id)
		sess, code, err := target.connect(to.URL, to.App, time.Now().Add(10*time.Second))
		if err != nil || code != "NetConnection.Connect.Success" {
			x.Close()
			return nil, fmt.Errorf("target peer: %v %s", err, code)
		}
		x.closers = append(x.closers, func() { target.abort(sess) })
		x.peers = append(x.peers, id.PeerID)
		x.readers.Add(1)
		go func() {
			defer x.readers.Done()
			readForwards(tconn, sess, x.got)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range x.peers {
		for !knowsPeer(from, hex.EncodeToString(p[:])) {
			if time.Now().After(deadline) {
				x.Close()
				return nil, errors.New("bench: the initiators' node never learnt of the targets")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return x, nil
}

func (x *CrossIntro) got(tag []byte, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, seen := x.arrived[string(tag)]; seen {
		return
	}
	x.arrived[string(tag)] = at
	if ch := x.waiting[string(tag)]; ch != nil {
		ch <- at
		delete(x.waiting, string(tag))
	}
}

// One runs one introduction of target i (modulo their number) from a
// single initiator and returns the times to its Redirect and to its
// completion (both Redirect and Forwarded IHello arrived).
func (x *CrossIntro) One(i int) (redirect, complete time.Duration, err error) {
	if x.client == nil {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, 0, err
		}
		x.conns = append(x.conns, conn)
		x.client = newClient(conn, x.from.Server, nil)
	}
	tag := randomTag()
	ch := make(chan time.Time, 1)
	x.mu.Lock()
	x.waiting[string(tag)] = ch
	x.mu.Unlock()
	t0 := time.Now()
	if err := x.client.lookupTag(x.peers[i%len(x.peers)], tag, t0.Add(5*time.Second)); err != nil {
		return 0, 0, err
	}
	redirect = time.Since(t0)
	select {
	case at := <-ch:
		return redirect, max(redirect, at.Sub(t0)), nil
	case <-time.After(5 * time.Second):
		return redirect, 0, errors.New("bench: no Forwarded IHello")
	}
}

// Close disconnects the targets.
func (x *CrossIntro) Close() {
	for _, c := range x.closers {
		c()
	}
	for _, c := range x.conns {
		c.Close()
	}
	x.readers.Wait()
}

// readForwards reads a target's socket until it is closed, calling got
// with the tag of each Forwarded IHello its server sends on sess.
func readForwards(conn *net.UDPConn, sess *session, got func(tag []byte, at time.Time)) {
	conn.SetReadDeadline(time.Time{}) // connect left one
	buf := make([]byte, 4096)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if sid, err := wire.SessionID(buf[:n]); err != nil || sid != sess.nearSID {
			continue
		}
		pt, err := sess.opener.Open(buf[:n])
		if err != nil {
			continue
		}
		_, hl, err := wire.ParseHeader(pt)
		if err != nil {
			continue
		}
		for b := pt[hl:]; ; {
			ch, rest, ok := wire.NextChunk(b)
			if !ok {
				break
			}
			b = rest
			if ch.Type == wire.ChunkFIHello {
				if fi, err := wire.ParseFIHello(ch.Payload); err == nil {
					got(fi.Tag, now)
				}
			}
		}
	}
}

func knowsPeer(t *Target, peerID string) bool {
	_, ok := t.Local.Peer(peerID)
	return ok
}

// ReportCluster writes a CrossIntroResult.
func ReportCluster(w io.Writer, name string, r CrossIntroResult) {
	fmt.Fprintf(w, "%s: %d introductions across nodes (%d failed, %d Forwarded IHellos missing) in %v: %.0f/s\n"+
		"  lookup -> Redirect from the node written to:        %v\n"+
		"  lookup -> Forwarded IHello at the peer on the other node: %v\n"+
		"  lookup -> both (introduction complete):              %v\n",
		name, r.Lookups, r.Failures, r.ForwardsMissing, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.Redirect, r.Forward, r.Complete)
}
