// Package cluster joins several Stratus servers into one service over
// NATS: an embedded nats-server in each node (routes between the nodes,
// JetStream for the replicated key store) or an existing NATS deployment.
// It provides the rendezvous server with a directory.Directory that knows
// every node's peers (dir.go), a store whose developer keys and accounts
// live in a replicated JetStream key-value bucket (keys.go) with usage
// counted per node and summed (usage.go), and each node's view of the
// others (heartbeats, load, health).
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stratus-rtmfp/stratus/internal/clusterhook"
	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/store"
)

// The types the server shares with the cluster live in clusterhook, so
// that the server can run without linking NATS.
type (
	Config        = clusterhook.Config
	Handler       = clusterhook.Handler
	Load          = clusterhook.Load
	NodeInfo      = clusterhook.NodeInfo
	Status        = clusterhook.Status
	Stats         = clusterhook.Stats
	StoreAccounts = clusterhook.StoreAccounts
)

func init() {
	clusterhook.Register(func(cfg Config, h Handler) (clusterhook.Node, error) {
		n, err := Start(cfg, h)
		if err != nil {
			return nil, err
		}
		return n, nil
	})
}

// Errors.
var (
	ErrSecret   = errors.New("cluster: the shared secret must be at least 16 bytes")
	ErrNodeName = errors.New("cluster: node and cluster names are letters, digits, '-' and '_' (at most 64)")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// DefaultNodeName is the host name, with the characters a node name cannot
// have replaced by '-'.
func DefaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "stratus"
	}
	h = regexp.MustCompile(`[^A-Za-z0-9_-]`).ReplaceAllString(h, "-")
	if len(h) > 64 {
		h = h[:64]
	}
	return h
}

// Node is this process's membership of the cluster.
type Node struct {
	cfg    Config
	name   string
	prefix string // "stratus.CLUSTER."
	log    *slog.Logger
	h      Handler
	macKey []byte
	epoch  uint64
	start  time.Time

	emb  *embedded
	nc   *nats.Conn
	dir  *dir
	keys *keyStore

	out     chan outMsg
	wakeCh  chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	begun   atomic.Bool
	stopped atomic.Bool
	ready   atomic.Bool // n.nc and n.dir are set: connection events count

	stateMu   sync.Mutex
	connected bool
	since     time.Time

	stats counters
}

// counters are the node's cluster message counters (exported as metrics).
type counters struct {
	sent, received, sendErrors                atomic.Uint64
	snapsAsked, snapsServed                   atomic.Uint64
	nodesJoined, nodesLeft                    atomic.Uint64
	introsStale                               atomic.Uint64
	dropMAC, dropMalformed, dropStale, dropDN atomic.Uint64
	dropOther, outboxFull                     atomic.Uint64
}

type outMsg struct {
	subject, reply string
	data           []byte
}

// Start joins the cluster: it returns once the node's NATS connection is
// set up (an external NATS that is down is retried in the background).
// Begin starts the node's work; the key store becomes usable as soon as
// JetStream answers.
func Start(cfg Config, h Handler) (*Node, error) {
	if cfg.ClusterName == "" {
		cfg.ClusterName = "stratus"
	}
	if cfg.Node == "" {
		cfg.Node = DefaultNodeName()
	}
	if !nameRE.MatchString(cfg.Node) || !nameRE.MatchString(cfg.ClusterName) {
		return nil, ErrNodeName
	}
	secret := strings.TrimSpace(string(cfg.Secret))
	if len(secret) < 16 {
		return nil, ErrSecret
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * cfg.Heartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Replica == nil {
		cfg.Replica = store.NewMemory()
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("stratus cluster messages v1"))
	var e [8]byte
	if _, err := rand.Read(e[:]); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, name: cfg.Node, prefix: "stratus." + cfg.ClusterName + ".", log: cfg.Logger.With("node", cfg.Node),
		h: h, macKey: m.Sum(nil), epoch: binary.BigEndian.Uint64(e[:]) | 1, start: time.Now(),
		out: make(chan outMsg, 8192), wakeCh: make(chan struct{}, 1), done: make(chan struct{}), since: time.Now()}
	n.dir = newDir(n, h, cfg.GroupPolicy)
	var err error
	if cfg.NATSURL == "" {
		if n.emb, err = startEmbedded(&cfg, secret, n.log); err != nil {
			return nil, err
		}
		opts := append(connectOptions(n.name, secret, nil, n), nats.InProcessServer(n.emb.srv), nats.NoEcho())
		n.nc, err = nats.Connect("", opts...)
	} else {
		n.nc, err = nats.Connect(cfg.NATSURL, append(connectOptions(n.name, secret, cfg.ClientTLS, n), nats.NoEcho())...)
	}
	if err != nil {
		n.stopNATS()
		return nil, fmt.Errorf("cluster: connecting to NATS: %w", err)
	}
	subs := []struct {
		subject string
		fn      nats.MsgHandler
	}{
		{n.prefix + "dir", n.dir.onBroadcast},
		{n.subject(n.name, "snap"), n.dir.onSnapReq},
		{n.subject(n.name, "snap-data"), n.dir.onSnapPart},
		{n.subject(n.name, "in"), n.dir.onDirect},
		{n.subject(n.name, "reply"), n.dir.onDirect},
	}
	for _, s := range subs {
		sub, err := n.nc.Subscribe(s.subject, s.fn)
		if err != nil {
			n.stopNATS()
			return nil, fmt.Errorf("cluster: subscribing to %s: %w", s.subject, err)
		}
		// A burst of introductions must not make NATS drop messages as a
		// slow consumer: the node's handlers are fast.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
	}
	// Subscribe only queues SUB for the connection: until the NATS server
	// has read it, messages to this node are dropped there. A round trip
	// makes the subscriptions live before anyone is told the node is up.
	if err := n.nc.FlushTimeout(10 * time.Second); err != nil {
		n.stopNATS()
		return nil, fmt.Errorf("cluster: subscribing: %w", err)
	}
	n.keys = newKeyStore(n)
	n.ready.Store(true)
	n.checkConnection()
	return n, nil
}

// Begin starts the node's work: heartbeats and directory changes out,
// the key store in. The handler must be ready for KeyChanged by then.
func (n *Node) Begin() {
	if n.begun.Swap(true) {
		return
	}
	n.wg.Add(2)
	go n.publisher()
	go n.keys.run()
	n.log.Info("cluster: joined", "cluster", n.cfg.ClusterName, "embedded", n.emb != nil, "route_listener", n.RouteAddr())
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// Directory is the cluster's peer directory, as this node sees it.
func (n *Node) Directory() directory.Directory { return n.dir }

// Groups is the cluster's NetGroup membership, as this node sees it:
// every node's members, bootstrapped as one group's.
func (n *Node) Groups() membership.Directory { return n.dir.groups }

// Store is the cluster's key store (store.Replica's Store and Accounts
// methods act on the cluster's keys and accounts).
func (n *Node) Store() StoreAccounts { return n.keys }

// RouteAddr is where the embedded server accepts routes ("" with an
// external NATS).
func (n *Node) RouteAddr() string {
	if n.emb == nil {
		return ""
	}
	return n.emb.routeAddr()
}

func (n *Node) subject(node, what string) string { return n.prefix + "node." + node + "." + what }

// send signs a message and queues it for the publisher; false if the
// queue is full (NATS is down or far behind), counted.
func (n *Node) send(subject, reply string, h header, body func([]byte) []byte) bool {
	h.Node, h.Epoch, h.Time = n.name, n.epoch, time.Now()
	select {
	case n.out <- outMsg{subject: subject, reply: reply, data: seal(nil, n.macKey, subject, h, body)}:
		return true
	default:
		n.stats.outboxFull.Add(1)
		return false
	}
}

// wake tells the publisher that directory changes are waiting.
func (n *Node) wake() {
	select {
	case n.wakeCh <- struct{}{}:
	default:
	}
}

// maxSkew is how far a message's time may be from ours: older ones are
// replays (or a clock to fix), dropped.
const maxSkew = 30 * time.Second

// open checks a message from another node; false (counted) if it must
// be dropped.
func (n *Node) open(m *nats.Msg) (header, []byte, bool) {
	n.stats.received.Add(1)
	h, body, err := open(n.macKey, m.Subject, m.Data)
	if err != nil {
		n.drop("", err)
		return h, nil, false
	}
	if d := time.Since(h.Time); d > maxSkew || d < -maxSkew {
		n.drop("stale", nil)
		return h, nil, false
	}
	if h.Node == n.name {
		// NoEcho keeps our own messages from us: another process uses
		// our name.
		n.stats.dropDN.Add(1)
		if n.stats.dropDN.Load()%100 == 1 {
			n.log.Error("cluster: another node uses this node's name; give each node its own --node-name")
		}
		return h, nil, false
	}
	return h, body, true
}

// drop counts a dropped message.
func (n *Node) drop(reason string, err error) {
	switch {
	case errors.Is(err, errMAC):
		n.stats.dropMAC.Add(1)
	case reason == "stale":
		n.stats.dropStale.Add(1)
	case err != nil || reason == "malformed":
		n.stats.dropMalformed.Add(1)
	default:
		n.stats.dropOther.Add(1)
	}
	n.log.Debug("cluster: message dropped", "reason", reason, "err", err)
}

// publisher sends the node's messages in order: directory changes as
// they come (batched), heartbeats, everything queued by send. It is the
// only goroutine that publishes, so nothing on a packet path ever waits
// for NATS.
func (n *Node) publisher() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.Heartbeat)
	defer tick.Stop()
	// Silent nodes are looked for four times per heartbeat, so that one is
	// forgotten at most a quarter heartbeat after DeadAfter.
	check := time.NewTicker(n.cfg.Heartbeat / 4)
	defer check.Stop()
	var published uint64
	flush := func() {
		first, ops := n.dir.takeQueue()
		for len(ops) > 0 {
			k := min(len(ops), deltaOps)
			n.publish(n.prefix+"dir", "", header{Kind: kindDelta}, delta{First: first, Ops: ops[:k]}.append)
			first += uint64(k)
			ops = ops[k:]
		}
		published = first - 1
	}
	for {
		select {
		case <-n.done:
			return
		case <-n.wakeCh:
			flush()
		case m := <-n.out:
			n.publishRaw(m)
		case <-tick.C:
			flush()
			l := n.h.Load()
			hb := heartbeat{Seq: published, Sessions: uint64(max(l.Sessions, 0)), Clients: uint64(max(l.Clients, 0)),
				MaxSessions: uint64(max(l.MaxSessions, 0)), Started: n.start, Draining: l.Draining, Public: l.Public, Version: n.cfg.Version}
			n.publish(n.prefix+"dir", "", header{Kind: kindHeartbeat}, hb.append)
			n.checkConnection()
		case now := <-check.C:
			n.dir.checkNodes(now, n.cfg.DeadAfter)
		}
	}
}

// deltaOps bounds the changes in one message (about 100 bytes each).
const deltaOps = 2000

func (n *Node) publish(subject, reply string, h header, body func([]byte) []byte) {
	h.Node, h.Epoch, h.Time = n.name, n.epoch, time.Now()
	n.publishRaw(outMsg{subject: subject, reply: reply, data: seal(nil, n.macKey, subject, h, body)})
}

func (n *Node) publishRaw(m outMsg) {
	var err error
	if m.reply != "" {
		err = n.nc.PublishRequest(m.subject, m.reply, m.data)
	} else {
		err = n.nc.Publish(m.subject, m.data)
	}
	if err != nil {
		n.stats.sendErrors.Add(1)
		return
	}
	n.stats.sent.Add(1)
}

// connChanged is told when the NATS connection goes down or up.
func (n *Node) connChanged(bool, error) { n.checkConnection() }

// checkConnection works out whether the node is connected to the
// cluster: its NATS connection is up and, for an embedded server with seed
// routes (whose in-process connection is always up), it is routed to
// another server and hears another node.
func (n *Node) checkConnection() {
	if n.stopped.Load() || !n.ready.Load() {
		return
	}
	up := n.nc.IsConnected()
	why := "lost the NATS connection"
	if up && n.emb != nil && n.emb.routes > 0 && (n.emb.srv.NumRoutes() == 0 || n.dir.nodeCount() == 0) {
		up, why = false, "no other cluster node reachable"
	}
	n.stateMu.Lock()
	changed := n.connected != up
	if changed {
		n.connected, n.since = up, time.Now()
	}
	n.stateMu.Unlock()
	switch {
	case !changed:
	case up:
		n.log.Info("cluster: connected")
	default:
		n.log.Warn("cluster: cut off ("+why+"); serving this node's clients only until it is back", "since", time.Now().Format(time.RFC3339))
	}
}

// Status is the node's view of the cluster.
func (n *Node) Status() Status {
	n.stateMu.Lock()
	st := Status{Node: n.name, Cluster: n.cfg.ClusterName, Connected: n.connected, Since: n.since}
	n.stateMu.Unlock()
	if n.emb != nil {
		st.Routes = n.emb.srv.NumRoutes()
	}
	st.KeyStore, st.KeyStoreErr = n.keys.status()
	l := n.h.Load()
	self := NodeInfo{Name: n.name, Self: true, Peers: n.dir.localCount(), Sessions: l.Sessions, Clients: l.Clients,
		MaxSessions: l.MaxSessions, Draining: l.Draining, Public: l.Public, Version: n.cfg.Version, Started: n.start}
	st.Nodes = append([]NodeInfo{self}, n.dir.view()...)
	for i := range st.Nodes {
		if m := st.Nodes[i].MaxSessions; m > 0 {
			st.Nodes[i].Load = float64(st.Nodes[i].Sessions) / float64(m)
		}
	}
	return st
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{Sent: s.sent.Load(), Received: s.received.Load(), SendErrors: s.sendErrors.Load(), OutboxFull: s.outboxFull.Load(),
		SnapshotsAsked: s.snapsAsked.Load(), SnapshotsServed: s.snapsServed.Load(), NodesJoined: s.nodesJoined.Load(),
		NodesLeft: s.nodesLeft.Load(), IntroductionsStale: s.introsStale.Load(), DropAuth: s.dropMAC.Load(),
		DropMalformed: s.dropMalformed.Load(), DropStale: s.dropStale.Load(), DropDuplicateName: s.dropDN.Load(), DropOther: s.dropOther.Load()}
}

// Close leaves the cluster: the other nodes are told to forget this
// node's peers at once, the usage counters are pushed, and the NATS
// connection (and the embedded server) close.
func (n *Node) Close() error {
	if n.stopped.Swap(true) {
		return nil
	}
	n.Begin() // so that everything below has something to stop
	n.keys.stop(true)
	close(n.done)
	n.wg.Wait()
	// Say goodbye directly: the publisher has stopped.
	n.publish(n.prefix+"dir", "", header{Kind: kindBye}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.nc.FlushWithContext(ctx)
	n.stopNATS()
	return nil
}

// Kill drops out of the cluster as a crash would: no goodbye, nothing
// pushed (tests).
func (n *Node) Kill() {
	if n.stopped.Swap(true) {
		return
	}
	n.Begin()
	n.keys.stop(false)
	close(n.done)
	n.wg.Wait()
	n.stopNATS()
}

func (n *Node) stopNATS() {
	if n.nc != nil {
		n.nc.Close()
	}
	if n.emb != nil {
		n.emb.stop()
	}
}
