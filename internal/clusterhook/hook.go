// Package clusterhook is where the rendezvous server meets the cluster
// (internal/cluster) without linking it: the types they share, the Node
// interface the server uses, and Start, which works once the cluster
// package has registered itself (a program imports it, directly or
// through the public package server/cluster). A server that is never
// clustered then carries no NATS code.
package clusterhook

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/store"
)

// ErrNotLinked: Start was called in a program that does not link the
// cluster.
var ErrNotLinked = errors.New("cluster mode is not linked into this program: import github.com/stratus-rtmfp/stratus/server/cluster")

// Node is a running member of a cluster, as the server uses it.
type Node interface {
	Name() string
	// RouteAddr is where the embedded NATS server accepts routes ("" on
	// an external NATS).
	RouteAddr() string
	Directory() directory.Directory
	Groups() membership.Directory
	Store() StoreAccounts
	Status() Status
	Stats() Stats
	// Begin starts the node's work once the server is ready for its
	// callbacks.
	Begin()
	// Close leaves the cluster in an orderly way; Kill as a crash would.
	Close() error
	Kill()
}

var start func(Config, Handler) (Node, error)

// Register makes Start work; the cluster package calls it at init.
func Register(f func(Config, Handler) (Node, error)) { start = f }

// Start joins a cluster (ErrNotLinked if the program has no cluster).
func Start(cfg Config, h Handler) (Node, error) {
	if start == nil {
		return nil, ErrNotLinked
	}
	return start(cfg, h)
}

// Config configures a node.
type Config struct {
	// Node names this node, uniquely in the cluster: letters, digits,
	// '-' and '_' (DefaultNodeName derives one from the host name).
	Node string
	// ClusterName is the cluster's name (default "stratus"): the NATS
	// cluster name of the embedded servers, and part of every subject and
	// bucket name, so that several clusters can share one NATS.
	ClusterName string

	// Embedded NATS (when NATSURL is empty): Listen is the route listener
	// (HOST:PORT), Routes the seed routes (nats-route://HOST:PORT; a node
	// may list itself), StoreDir JetStream's directory, RouteTLS, if set,
	// mutual TLS on routes.
	Listen   string
	Routes   []string
	StoreDir string
	RouteTLS *tls.Config

	// NATSURL joins an existing NATS deployment instead (nats://...,
	// comma-separated for several servers); ClientTLS, if set, is used
	// on that connection.
	NATSURL   string
	ClientTLS *tls.Config

	// Secret is the cluster's shared secret: the password of every NATS
	// credential (user "stratus", on routes and client connections) and
	// the key from which every cluster message's HMAC key is derived. At
	// least 16 bytes.
	Secret []byte

	// Replicas of the key store's JetStream bucket (default 3, at most the
	// number of JetStream servers).
	Replicas int
	// Heartbeat is how often a node says it is alive (default 1 s); a node
	// silent for DeadAfter (default 3 heartbeats) is forgotten with its
	// peers.
	Heartbeat time.Duration
	DeadAfter time.Duration

	// Replica is the node's own store: its copy of the cluster's keys and
	// accounts (kept up to date from the bucket; keys it holds that the
	// bucket lacks are added to it at start) and its own usage counters.
	Replica store.Replica

	// GroupPolicy bootstraps NetGroups (default membership.DefaultPolicy).
	GroupPolicy membership.Policy

	Version string
	Logger  *slog.Logger
}

// Handler is what the node asks of the rendezvous server.
type Handler interface {
	directory.Handler
	// Load is this node's load, for its heartbeats.
	Load() Load
	// KeyChanged: a developer key (or its account) changed in the
	// cluster; the server reads it again and closes its sessions if it is
	// no longer usable.
	KeyChanged(id string)
	// membership.Handler sends the NetGroup announcements for the
	// members this node holds (the handles the server gave Groups().Join),
	// whichever node's join, leave or death caused them.
	membership.Handler
}

// Load is a node's load as its heartbeats tell it.
type Load struct {
	Sessions, Clients, MaxSessions int
	Draining                       bool
	Public                         []netip.AddrPort
}

// NodeInfo is what a node knows of another (or of itself).
type NodeInfo struct {
	Name        string           `json:"name"`
	Self        bool             `json:"self,omitempty"`
	Peers       int              `json:"peers"` // connected clients in the directory
	Sessions    int              `json:"sessions"`
	Clients     int              `json:"clients"`
	MaxSessions int              `json:"max_sessions,omitempty"`
	Load        float64          `json:"load"` // sessions / max sessions
	Draining    bool             `json:"draining,omitempty"`
	Public      []netip.AddrPort `json:"public_addresses,omitempty"`
	Version     string           `json:"version,omitempty"`
	Started     time.Time        `json:"started"`
	LastHeard   time.Time        `json:"last_heard,omitzero"`
	Syncing     bool             `json:"syncing,omitempty"`
}

// Status is a node's view of the cluster and of its own connection.
type Status struct {
	Node        string    `json:"node"`
	Cluster     string    `json:"cluster"`
	Connected   bool      `json:"connected"` // to NATS (and, embedded, to at least one other server when routes are configured)
	Since       time.Time `json:"since"`     // of the connection state
	Routes      int       `json:"routes,omitempty"`
	KeyStore    bool      `json:"key_store"` // the replicated key bucket is reachable
	KeyStoreErr string    `json:"key_store_error,omitempty"`
	Nodes       []NodeInfo
}

// Stats are the node's counters.
type Stats struct {
	Sent, Received, SendErrors, OutboxFull uint64
	SnapshotsAsked, SnapshotsServed        uint64
	NodesJoined, NodesLeft                 uint64
	IntroductionsStale                     uint64
	// Dropped messages by reason: bad signature, malformed, too old or
	// too new, sent under this node's own name by another process, other.
	DropAuth, DropMalformed, DropStale, DropDuplicateName, DropOther uint64
}

// StoreAccounts is a store.Store that also has accounts.
type StoreAccounts interface {
	store.Store
	store.Accounts
}
