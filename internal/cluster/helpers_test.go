package cluster

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/membership"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/store"
)

// testSecret is the shared secret of the test clusters.
var testSecret = []byte("0123456789abcdef-test-secret")

// testHandler is a cluster.Handler whose directory part can be swapped
// between tests that share a cluster.
type testHandler struct {
	inner   atomic.Pointer[directory.Handler]
	changed chan string
	load    atomic.Pointer[Load]
	group   atomic.Pointer[membership.Handler]
}

func newTestHandler() *testHandler { return &testHandler{changed: make(chan string, 1024)} }

func (h *testHandler) set(d directory.Handler) { h.inner.Store(&d) }

func (h *testHandler) Introduce(local any, in directory.Introduction) {
	if d := h.inner.Load(); d != nil {
		(*d).Introduce(local, in)
	}
}

func (h *testHandler) Relay(local any, r directory.Relay) error {
	if d := h.inner.Load(); d != nil {
		return (*d).Relay(local, r)
	}
	return directory.ErrGone
}

func (h *testHandler) Load() Load {
	if l := h.load.Load(); l != nil {
		return *l
	}
	return Load{}
}

func (h *testHandler) setGroup(g membership.Handler) { h.group.Store(&g) }

func (h *testHandler) Announce(local any, a membership.Announcement) {
	if g := h.group.Load(); g != nil {
		(*g).Announce(local, a)
	}
}

func (h *testHandler) KeyChanged(id string) {
	select {
	case h.changed <- id:
	default:
	}
}

// testCluster is n embedded nodes routed to each other on loopback.
type testCluster struct {
	cfgs     []Config
	nodes    []*Node
	handlers []*testHandler
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CLUSTER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startCluster starts n nodes; mod may change each node's Config.
func startCluster(t testing.TB, n int, mod func(i int, c *Config)) *testCluster {
	t.Helper()
	ports := testutil.FreeTCPPorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	tc := &testCluster{}
	for i := range n {
		cfg := Config{Node: fmt.Sprintf("n%d", i+1), ClusterName: "test", Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: routes, StoreDir: t.TempDir(), Secret: testSecret, Replicas: min(n, 3),
			Replica: store.NewMemory(), Logger: testLogger(t)}
		if mod != nil {
			mod(i, &cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
		tc.handlers = append(tc.handlers, newTestHandler())
		tc.nodes = append(tc.nodes, nil)
	}
	for i := range n {
		tc.restart(t, i)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	return tc
}

// restart starts node i again (after Kill or Close) with its Config.
func (tc *testCluster) restart(t testing.TB, i int) {
	t.Helper()
	nd, err := Start(tc.cfgs[i], tc.handlers[i])
	if err != nil {
		t.Fatalf("node %d: %v", i+1, err)
	}
	nd.Begin()
	tc.nodes[i] = nd
}
