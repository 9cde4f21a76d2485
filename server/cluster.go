package server

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-rtmfp/stratus/internal/clusterhook"
	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/wire"
	"github.com/stratus-rtmfp/stratus/store"
)

// ClusterConfig joins the server to a cluster: several Stratus nodes that
// serve as one service over NATS (see the README's "Cluster" section).
// Peers on one node are introduced to peers on another, relays cross
// nodes, and the developer keys and accounts are the cluster's, kept in a
// replicated JetStream bucket; Config.Store must then be a store.Replica
// (store.OpenBolt or store.NewMemory), which keeps this node's copy of
// them and its own usage counters.
type ClusterConfig struct {
	// Node names this node, uniquely in the cluster (letters, digits, '-'
	// and '_'); default: the host name.
	Node string
	// Name is the cluster's name (default "stratus").
	Name string
	// Secret is the shared secret every node and NATS credential uses (at
	// least 16 bytes). Required.
	Secret []byte

	// Embedded NATS (the default): Listen is the route listener
	// (HOST:PORT), Routes the seed routes (nats-route://HOST:PORT; a node
	// may list itself), StoreDir the directory of JetStream's data
	// (required), RouteTLS mutual TLS on routes (nil: plain TCP).
	Listen   string
	Routes   []string
	StoreDir string
	RouteTLS *tls.Config

	// NATSURL joins an existing NATS deployment instead (nats://...,
	// several separated by commas); ClientTLS for tls:// URLs.
	NATSURL   string
	ClientTLS *tls.Config

	// Replicas of the key store's JetStream bucket (default 3).
	Replicas int
	// Heartbeat is how often nodes say they are alive (default 1 s); a
	// node silent for three heartbeats is forgotten with its peers.
	Heartbeat time.Duration

	// Redirect sends new clients to a less loaded node: an IHello for this
	// server is answered with an RTMFP Redirect to the public addresses
	// of the node with the lowest load (sessions / MaxSessions) when this
	// node's load exceeds it by more than RedirectMargin (default 0.1).
	// Nodes without Config.PublicAddresses are never redirected to.
	Redirect       bool
	RedirectMargin float64

	// Version is shown to the other nodes (the admin API lists it).
	Version string
}

// clusterHooks adapts Server to clusterhook.Handler.
type clusterHooks Server

func (h *clusterHooks) s() *Server { return (*Server)(h) }

func (h *clusterHooks) Introduce(local any, in directory.Introduction) {
	(*deliver)(h.s()).Introduce(local, in)
}

func (h *clusterHooks) Relay(local any, r directory.Relay) error {
	return (*deliver)(h.s()).Relay(local, r)
}

func (h *clusterHooks) Load() clusterhook.Load {
	s := h.s()
	s.mu.Lock()
	l := clusterhook.Load{Sessions: s.sessions, Clients: s.connectedClients(), MaxSessions: max(s.cfg.MaxSessions, 0),
		Draining: s.draining || s.closed, Public: s.cfg.PublicAddresses}
	s.mu.Unlock()
	return l
}

func (h *clusterHooks) KeyChanged(id string) { _ = h.s().KeyChanged(id) }

func (h *clusterHooks) Announce(local any, a membership.Announcement) {
	(*groupHandler)(h.s()).Announce(local, a)
}

// connectedClients counts the clients past connect; s.mu held.
func (s *Server) connectedClients() int {
	n := 0
	for _, c := range s.perKey {
		n += c
	}
	return n
}

// startCluster joins the cluster configured in s.cfg.Cluster.
func (s *Server) startCluster() error {
	cc := s.cfg.Cluster
	replica, ok := s.cfg.Store.(store.Replica)
	if !ok {
		return errors.New("server: cluster mode needs a Config.Store that is a store.Replica (store.OpenBolt or store.NewMemory)")
	}
	if cc.NATSURL == "" && cc.StoreDir == "" {
		return errors.New("server: cluster mode with embedded NATS needs ClusterConfig.StoreDir")
	}
	node, err := clusterhook.Start(clusterhook.Config{Node: cc.Node, ClusterName: cc.Name, Listen: cc.Listen, Routes: cc.Routes,
		StoreDir: cc.StoreDir, RouteTLS: cc.RouteTLS, NATSURL: cc.NATSURL, ClientTLS: cc.ClientTLS, Secret: cc.Secret,
		Replicas: cc.Replicas, Heartbeat: cc.Heartbeat, Replica: replica, Version: cc.Version, Logger: s.log},
		(*clusterHooks)(s))
	if err != nil {
		return err
	}
	s.node = node
	s.store = node.Store()
	s.dir = node.Directory()
	s.groups = node.Groups()
	if cc.Redirect {
		s.bg.Add(1)
		go s.watchLoad()
	}
	return nil
}

// ClusterNode is this node's name in its cluster ("" when not clustered).
func (s *Server) ClusterNode() string {
	if s.node == nil {
		return ""
	}
	return s.node.Name()
}

// ClusterRouteAddr is where this node's embedded NATS accepts routes (""
// when not clustered or on an external NATS).
func (s *Server) ClusterRouteAddr() string {
	if s.node == nil {
		return ""
	}
	return s.node.RouteAddr()
}

// ClusterStatus is a node's view of its cluster (GET /api/cluster).
type ClusterStatus struct {
	Node      string    `json:"node"`
	Cluster   string    `json:"cluster"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// Routes is the embedded NATS server's routes to other servers.
	Routes int `json:"routes,omitempty"`
	// KeyStore says whether the replicated key store answers; reads use
	// this node's copy either way.
	KeyStore      bool          `json:"key_store"`
	KeyStoreError string        `json:"key_store_error,omitempty"`
	Nodes         []ClusterNode `json:"nodes"`
	// Totals over the nodes listed.
	Sessions int `json:"sessions"`
	Clients  int `json:"clients"`
}

// ClusterNode is one node as its heartbeats describe it.
type ClusterNode struct {
	Name        string    `json:"name"`
	Self        bool      `json:"self,omitempty"`
	Sessions    int       `json:"sessions"`
	Clients     int       `json:"clients"`
	Peers       int       `json:"directory_peers"`
	MaxSessions int       `json:"max_sessions,omitempty"`
	Load        float64   `json:"load"`
	Draining    bool      `json:"draining,omitempty"`
	Public      []string  `json:"public_addresses,omitempty"`
	Version     string    `json:"version,omitempty"`
	Started     time.Time `json:"started"`
	LastHeard   time.Time `json:"last_heard,omitzero"`
	Syncing     bool      `json:"syncing,omitempty"`
}

// Cluster reports the cluster as this node sees it; ok is false when the
// server is not clustered.
func (s *Server) Cluster() (ClusterStatus, bool) {
	if s.node == nil {
		return ClusterStatus{}, false
	}
	st := s.node.Status()
	out := ClusterStatus{Node: st.Node, Cluster: st.Cluster, Connected: st.Connected, Since: st.Since, Routes: st.Routes,
		KeyStore: st.KeyStore, KeyStoreError: st.KeyStoreErr}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, ClusterNode{Name: n.Name, Self: n.Self, Sessions: n.Sessions, Clients: n.Clients, Peers: n.Peers,
			MaxSessions: n.MaxSessions, Load: math.Round(n.Load*1e4) / 1e4, Draining: n.Draining, Public: addrStrings(n.Public),
			Version: n.Version, Started: n.Started, LastHeard: n.LastHeard, Syncing: n.Syncing})
		out.Sessions += n.Sessions
		out.Clients += n.Clients
	}
	sort.Slice(out.Nodes[1:], func(i, j int) bool { return out.Nodes[1+i].Name < out.Nodes[1+j].Name })
	return out, true
}

// PeerInfo is one connected client in the directory, on any node.
type PeerInfo struct {
	PeerID    string    `json:"peer_id"`
	Key       string    `json:"key"`
	Node      string    `json:"node,omitempty"`
	Address   string    `json:"address"`
	Addresses []string  `json:"addresses,omitempty"`
	Since     time.Time `json:"since"`
}

func peerInfo(p directory.Peer) PeerInfo {
	return PeerInfo{PeerID: hex.EncodeToString(p.ID[:]), Key: p.Key, Node: p.Node, Address: p.Observed.String(),
		Addresses: addrStrings(p.Addrs), Since: p.Since}
}

// Peer finds a connected client (64 hex digits) on any node of the
// cluster, as this node's directory knows it.
func (s *Server) Peer(peerID string) (PeerInfo, bool) {
	raw, err := hex.DecodeString(peerID)
	if err != nil || len(raw) != 32 {
		return PeerInfo{}, false
	}
	p, ok := s.dir.Lookup([32]byte(raw))
	if !ok {
		return PeerInfo{}, false
	}
	return peerInfo(p), true
}

// Peers lists the connected clients of the whole cluster, as this node's
// directory knows them (this server's alone when not clustered), of
// developer key key and on node node when they are not empty: how many
// there are, and the oldest limit of them.
func (s *Server) Peers(key, node string, limit int) (int, []PeerInfo) {
	var out []PeerInfo
	s.dir.Range(func(p directory.Peer) bool {
		if (key == "" || p.Key == key) && (node == "" || p.Node == node) {
			out = append(out, peerInfo(p))
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return len(out), out[:min(len(out), max(limit, 0))]
}

// ClusterStats are a node's cluster message counters: messages sent and
// received, snapshots of other nodes' peers asked for and served, nodes
// that joined and left, introductions for a peer that had left by the
// time they arrived, and messages dropped: bad signature, malformed, too
// old or too new (more than 30 s off), sent under this node's name by
// another, other.
type ClusterStats struct {
	Sent, Received, SendErrors, OutboxFull uint64
	SnapshotsAsked, SnapshotsServed        uint64
	NodesJoined, NodesLeft                 uint64
	IntroductionsStale                     uint64
	DropAuth, DropMalformed, DropStale     uint64
	DropDuplicateName, DropOther           uint64
}

// ClusterCounters returns this node's cluster message counters (zero when
// not clustered).
func (s *Server) ClusterCounters() ClusterStats {
	if s.node == nil {
		return ClusterStats{}
	}
	st := s.node.Stats()
	return ClusterStats{Sent: st.Sent, Received: st.Received, SendErrors: st.SendErrors, OutboxFull: st.OutboxFull,
		SnapshotsAsked: st.SnapshotsAsked, SnapshotsServed: st.SnapshotsServed, NodesJoined: st.NodesJoined,
		NodesLeft: st.NodesLeft, IntroductionsStale: st.IntroductionsStale, DropAuth: st.DropAuth,
		DropMalformed: st.DropMalformed, DropStale: st.DropStale, DropDuplicateName: st.DropDuplicateName, DropOther: st.DropOther}
}

// redirect is where new clients go instead of this node (nil: nowhere),
// recomputed at every heartbeat by watchLoad.
type redirect struct {
	node  string
	addrs []wire.Address
}

// watchLoad keeps s.redirectTo up to date while the server runs.
func (s *Server) watchLoad() {
	defer s.bg.Done()
	every := s.cfg.Cluster.Heartbeat
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.redirectTo.Store(s.pickRedirect())
		}
	}
}

// pickRedirect chooses the least loaded other node with public addresses
// if this one is more loaded by the margin.
func (s *Server) pickRedirect() *redirect {
	st := s.node.Status()
	margin := s.cfg.Cluster.RedirectMargin
	if margin <= 0 {
		margin = 0.1
	}
	var self clusterhook.NodeInfo
	var best *clusterhook.NodeInfo
	for i, n := range st.Nodes {
		switch {
		case n.Self:
			self = n
		case n.Draining || len(n.Public) == 0 || n.MaxSessions <= 0:
		case best == nil || n.Load < best.Load:
			best = &st.Nodes[i]
		}
	}
	if best == nil || self.MaxSessions <= 0 || self.Load-best.Load <= margin {
		return nil
	}
	r := &redirect{node: best.Name}
	for _, a := range best.Public {
		r.addrs = append(r.addrs, wire.Address{AddrPort: a, Origin: wire.OriginRelay})
	}
	return r
}

// helloRedirect answers an IHello for this server with a Redirect to a
// less loaded node, when there is one (engine.Config.HelloRedirect).
func (s *Server) helloRedirect(src netip.AddrPort) []wire.Address {
	r := s.redirectTo.Load()
	if r == nil {
		return nil
	}
	s.metrics.redirects.WithLabelValues(r.node).Inc()
	return r.addrs
}

// clusterHealth describes the cluster connection for /healthz.
func (s *Server) clusterHealth() string {
	st, ok := s.Cluster()
	if !ok {
		return ""
	}
	if !st.Connected {
		return fmt.Sprintf("cluster: DISCONNECTED since %s: serving this node's clients only (node %s, %d nodes known)\n",
			st.Since.UTC().Format(time.RFC3339), st.Node, len(st.Nodes))
	}
	ks := "key store ok"
	if !st.KeyStore {
		ks = "key store unavailable (" + st.KeyStoreError + "): keys read from this node's copy"
	}
	return fmt.Sprintf("cluster: connected (node %s, %d nodes, %s)\n", st.Node, len(st.Nodes), ks)
}

// clusterCollector exports the cluster's state and message counters.
type clusterCollector struct{ s *Server }

var (
	descClusterUp       = prometheus.NewDesc("stratus_cluster_connected", "1 while this node is connected to the cluster's NATS (and, embedded, routed to another server), 0 while it serves its own clients only.", nil, nil)
	descClusterNodes    = prometheus.NewDesc("stratus_cluster_nodes", "Nodes this node knows alive, itself included.", nil, nil)
	descClusterKeyStore = prometheus.NewDesc("stratus_cluster_key_store_up", "1 while the replicated key store answers.", nil, nil)
	descClusterPeers    = prometheus.NewDesc("stratus_cluster_peers", "Connected clients in the directory, by where they are (local, remote).", []string{"where"}, nil)
	descClusterMsgs     = prometheus.NewDesc("stratus_cluster_messages_total", "Cluster messages by direction (sent, received, send_error, outbox_full).", []string{"dir"}, nil)
	descClusterDrops    = prometheus.NewDesc("stratus_cluster_dropped_total", "Cluster messages dropped, by reason (auth, malformed, stale, duplicate_name, other).", []string{"reason"}, nil)
	descClusterSnaps    = prometheus.NewDesc("stratus_cluster_snapshots_total", "Directory snapshots asked of other nodes and served to them.", []string{"kind"}, nil)
	descClusterEvents   = prometheus.NewDesc("stratus_cluster_node_events_total", "Other nodes that joined (or restarted) and left (or went silent).", []string{"event"}, nil)
	descClusterStale    = prometheus.NewDesc("stratus_cluster_stale_introductions_total", "Introductions from other nodes for a peer that had left this node.", nil, nil)
)

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterUp, descClusterNodes, descClusterKeyStore, descClusterPeers, descClusterMsgs,
		descClusterDrops, descClusterSnaps, descClusterEvents, descClusterStale} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	if s.node == nil {
		return
	}
	st := s.node.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge(descClusterUp, b(st.Connected))
	gauge(descClusterNodes, float64(len(st.Nodes)))
	gauge(descClusterKeyStore, b(st.KeyStore))
	remote := 0
	for _, n := range st.Nodes[1:] {
		remote += n.Peers
	}
	gauge(descClusterPeers, float64(st.Nodes[0].Peers), "local")
	gauge(descClusterPeers, float64(remote), "remote")
	k := s.node.Stats()
	counter(descClusterMsgs, k.Sent, "sent")
	counter(descClusterMsgs, k.Received, "received")
	counter(descClusterMsgs, k.SendErrors, "send_error")
	counter(descClusterMsgs, k.OutboxFull, "outbox_full")
	counter(descClusterDrops, k.DropAuth, "auth")
	counter(descClusterDrops, k.DropMalformed, "malformed")
	counter(descClusterDrops, k.DropStale, "stale")
	counter(descClusterDrops, k.DropDuplicateName, "duplicate_name")
	counter(descClusterDrops, k.DropOther, "other")
	counter(descClusterSnaps, k.SnapshotsAsked, "asked")
	counter(descClusterSnaps, k.SnapshotsServed, "served")
	counter(descClusterEvents, k.NodesJoined, "joined")
	counter(descClusterEvents, k.NodesLeft, "left")
	counter(descClusterStale, k.IntroductionsStale)
}
