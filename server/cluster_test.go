package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	_ "github.com/stratus-rtmfp/stratus/server/cluster" // links cluster mode
	"github.com/stratus-rtmfp/stratus/server/servertest"
	"github.com/stratus-rtmfp/stratus/store"
)

var clusterSecret = []byte("cluster-test-secret-0123456789")

// testCluster is n servers joined in one cluster on loopback: embedded
// NATS with routes between them, JetStream R3 for the keys.
type testCluster struct {
	cfgs   []server.Config
	dirs   []string
	addrs  []netip.AddrPort // each node's UDP address, kept across restarts
	srvs   []*servertest.Server
	stores []*store.Bolt
}

// startTestCluster starts n nodes; mod may change node i's Config (addr
// is its UDP address).
func startTestCluster(t *testing.T, n int, mod func(i int, addr netip.AddrPort, c *server.Config)) *testCluster {
	t.Helper()
	ports := testutil.FreeTCPPorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	tc := &testCluster{}
	for i := range n {
		dir := t.TempDir()
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		conn.Close()
		st, err := store.OpenBolt(dir, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st.Close() // each start opens it again (a restart keeps it)
		cfg := server.Config{
			ClientKeepalive: 5 * time.Second,
			Cluster: &server.ClusterConfig{Node: fmt.Sprintf("n%d", i+1), Name: "test", Secret: clusterSecret,
				Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: dir + "/nats",
				Replicas: min(n, 3), Heartbeat: 250 * time.Millisecond},
		}
		if mod != nil {
			mod(i, addr, &cfg)
		}
		tc.cfgs, tc.dirs, tc.addrs = append(tc.cfgs, cfg), append(tc.dirs, dir), append(tc.addrs, addr)
		tc.srvs, tc.stores = append(tc.srvs, nil), append(tc.stores, nil)
		tc.start(t, i)
	}
	tc.waitFormed(t, n)
	return tc
}

// start (re)starts node i on its data directory.
func (tc *testCluster) start(t *testing.T, i int) {
	t.Helper()
	st, err := store.OpenBolt(tc.dirs[i], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := tc.cfgs[i]
	cfg.Store = st
	conn, err := net.ListenPacket("udp4", tc.addrs[i].String())
	if err != nil {
		t.Fatal(err)
	}
	tc.srvs[i], tc.stores[i] = servertest.StartOn(t, cfg, conn), st
}

// crash kills node i as SIGKILL would (its data directory stays).
func (tc *testCluster) crash(i int) {
	tc.srvs[i].Crash()
	tc.stores[i].Close()
}

// waitFormed waits until every running node sees n nodes and a working
// key store.
func (tc *testCluster) waitFormed(t *testing.T, n int) {
	t.Helper()
	testutil.WaitUntil(t, 60*time.Second, fmt.Sprintf("a cluster of %d nodes with its key store", n), func() bool {
		for _, s := range tc.srvs {
			st, ok := s.Cluster()
			if !ok || len(st.Nodes) != n || !st.KeyStore || !st.Connected {
				return false
			}
		}
		return true
	})
}

// knows reports whether srv's directory lists peerID on node.
func knows(srv *servertest.Server, peerID, node string) bool {
	p, ok := srv.Peer(peerID)
	return ok && p.Node == node
}

func dialCluster(t *testing.T, srv *servertest.Server, key string) *rtmfp.NetConnection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, srv.URL(key), &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 10 * time.Second, PeerTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connecting to %s: %v", srv.ClusterNode(), err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func waitStreamStatus(t *testing.T, ns *rtmfp.NetStream, code string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case st := <-ns.Status():
			if st.Code == code {
				return
			}
		case <-timeout:
			t.Fatalf("no %s", code)
		}
	}
}

// Three nodes in one process, as the issue asks: a key created on node 1
// is used on node 3; an SDK peer on node 1 plays a P2P stream published on
// node 2; relay across nodes; revocation on node 3 closes the key's
// sessions on nodes 1 and 2; node 2 killed: peers on 1 and 3 are still
// introduced, node 2's peers are forgotten within one keepalive period,
// and node 2 comes back and rejoins.
func TestClusterThreeNodes(t *testing.T) {
	reg := prometheus.NewRegistry() // node 1's (the others restart)
	tc := startTestCluster(t, 3, func(i int, _ netip.AddrPort, c *server.Config) {
		if i == 0 {
			c.Registerer, c.Gatherer = reg, reg
		}
	})
	n1, n2, n3 := tc.srvs[0], tc.srvs[1], tc.srvs[2]

	// A key created on node 1 is valid on node 3.
	k, err := n1.CreateKey("made on n1")
	if err != nil {
		t.Fatal(err)
	}
	took := testutil.WaitUntil(t, 10*time.Second, "node 3 knowing the key", func() bool {
		got, err := n3.Server.Store().GetKey(k.ID)
		return err == nil && got.ID == k.ID
	})
	t.Logf("key created on n1 valid on n3 after %v", took)
	c3 := dialCluster(t, n3, k.ID)

	// P2P stream: publisher on node 2, player on node 1.
	pubNC := dialCluster(t, n2, k.ID)
	playNC := dialCluster(t, n1, k.ID)
	testutil.WaitUntil(t, 10*time.Second, "node 1 knowing the publisher", func() bool { return knows(n1, pubNC.NearID(), "n2") })
	pub, err := rtmfp.NewNetStream(pubNC, rtmfp.DirectConnections)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	waitStreamStatus(t, pub, rtmfp.PublishStart)
	play, err := rtmfp.NewNetStream(playNC, pubNC.NearID())
	if err != nil {
		t.Fatal(err)
	}
	if err := play.Play(context.Background(), "cam"); err != nil {
		t.Fatal(err)
	}
	waitStreamStatus(t, play, rtmfp.PlayStart)
	for i := range 20 {
		pub.WriteVideo(uint32(i*40), []byte{0x17, 1, byte(i), 0, 0})
	}
	for got := 0; got < 20; {
		select {
		case m := <-play.Messages():
			if m.Kind == rtmfp.KindVideo {
				if m.Payload[2] != byte(got) {
					t.Fatalf("frame %d: %x", got, m.Payload)
				}
				got++
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of 20 frames played across nodes", got)
		}
	}

	// relay from node 1 to a peer on node 3, and the answer.
	testutil.WaitUntil(t, 10*time.Second, "node 1 knowing the node-3 peer", func() bool { return knows(n1, c3.NearID(), "n3") })
	got := make(chan []any, 1)
	c3.Handle("onRelay", func(args []any) { got <- args })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := playNC.Call(ctx, "relay", c3.NearID(), "across", 3.0); err != nil {
		t.Fatalf("relay across nodes: %v", err)
	}
	select {
	case args := <-got:
		if len(args) != 3 || args[0] != playNC.NearID() || args[1] != "across" || args[2] != 3.0 {
			t.Fatalf("onRelay %v", args)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no onRelay across nodes")
	}
	// The admin API's cluster views, on node 3.
	var view struct {
		Nodes []struct {
			Name     string `json:"name"`
			Sessions int    `json:"sessions"`
		} `json:"nodes"`
	}
	if code := adminGet(t, n3, "/api/cluster", &view); code != 200 || len(view.Nodes) != 3 || view.Nodes[0].Name != "n3" {
		t.Fatalf("GET /api/cluster: %d %+v", code, view)
	}
	var list struct {
		Total    int `json:"total"`
		Sessions []struct {
			PeerID string `json:"peer_id"`
			Node   string `json:"node"`
		} `json:"sessions"`
	}
	if code := adminGet(t, n3, "/api/cluster/sessions?node=n2&limit=1", &list); code != 200 || list.Total != 1 || len(list.Sessions) != 1 ||
		list.Sessions[0].PeerID != pubNC.NearID() {
		t.Fatalf("GET /api/cluster/sessions?node=n2: %d %+v", code, list)
	}
	if code := adminGet(t, n3, "/api/cluster/sessions?limit=2", &list); code != 200 || list.Total != 3 || len(list.Sessions) != 2 {
		t.Fatalf("GET /api/cluster/sessions?limit=2: %d %+v", code, list)
	}

	// A relay to a peer that is nowhere fails.
	if _, err := playNC.Call(ctx, "relay", strings.Repeat("ab", 32), "x"); err == nil {
		t.Fatal("relay to an unknown peer succeeded")
	}

	// Revocation on node 3 closes the key's sessions on nodes 1 and 2.
	doomed, err := n1.CreateKey("doomed")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "every node knowing the second key", func() bool {
		_, e2 := n2.Server.Store().GetKey(doomed.ID)
		_, e3 := n3.Server.Store().GetKey(doomed.ID)
		return e2 == nil && e3 == nil
	})
	d1, d2 := dialCluster(t, n1, doomed.ID), dialCluster(t, n2, doomed.ID)
	revoked := time.Now()
	if _, err := n3.RevokeKey(doomed.ID); err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*rtmfp.NetConnection{d1, d2} {
		select {
		case <-nc.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a session of the key revoked on node 3 is still open")
		}
	}
	t.Logf("revoked on n3: sessions on n1 and n2 closed after %v", time.Since(revoked))
	for _, nc := range []*rtmfp.NetConnection{d1, d2} {
		var codes []string
		for len(nc.Status()) > 0 {
			codes = append(codes, (<-nc.Status()).Code)
		}
		if !strings.Contains(strings.Join(codes, " "), rtmfp.ConnectRejected) {
			t.Fatalf("status events %v", codes)
		}
	}
	if _, err := rtmfp.Connect(ctx, n2.URL(doomed.ID), &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second}); err == nil {
		t.Fatal("the revoked key still connects on node 2")
	}

	// Node 2 dies without a word.
	a1, a3 := dialCluster(t, n1, k.ID), dialCluster(t, n3, k.ID)
	testutil.WaitUntil(t, 10*time.Second, "node 1 knowing the node-3 peer", func() bool { return knows(n1, a3.NearID(), "n3") })
	tc.crash(1)
	forgot := testutil.WaitUntil(t, 5*time.Second, "node 2's peers forgotten on nodes 1 and 3 within one keepalive period (5 s)", func() bool {
		return !knows(n1, pubNC.NearID(), "n2") && !knows(n3, pubNC.NearID(), "n2")
	})
	t.Logf("node 2 killed: its peers forgotten after %v (heartbeat 250 ms)", forgot)
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	if _, err := a1.DialPeer(dctx, a3.NearID()); err != nil {
		t.Fatalf("node 1 -> node 3 introduction with node 2 down: %v", err)
	}

	// Node 2 comes back on its data directory and rejoins.
	tc.start(t, 1)
	n2 = tc.srvs[1]
	tc.waitFormed(t, 3)
	b2 := dialCluster(t, n2, k.ID)
	testutil.WaitUntil(t, 10*time.Second, "node 1 knowing a peer of the restarted node 2", func() bool { return knows(n1, b2.NearID(), "n2") })
	if _, err := a1.DialPeer(dctx, b2.NearID()); err != nil {
		t.Fatalf("node 1 -> restarted node 2 introduction: %v", err)
	}

	// Nodes 2 and 3 gone: node 1 is cut off, says so, and still
	// introduces its own clients to each other; they come back and node 1
	// is part of the cluster again, without a restart.
	tc.crash(1)
	tc.crash(2)
	testutil.WaitUntil(t, 10*time.Second, "node 1 saying it is cut off", func() bool {
		return strings.Contains(healthz(t, n1), "cluster: DISCONNECTED") && gaugeValue(t, reg, "stratus_cluster_connected") == 0
	})
	if !strings.HasPrefix(healthz(t, n1), "ok\n") {
		t.Fatalf("healthz of a cut-off node that serves its clients: %q", healthz(t, n1))
	}
	a1b := dialCluster(t, n1, k.ID)
	if _, err := a1.DialPeer(dctx, a1b.NearID()); err != nil {
		t.Fatalf("introduction on a cut-off node: %v", err)
	}
	tc.start(t, 1)
	tc.start(t, 2)
	tc.waitFormed(t, 3)
	if h := healthz(t, n1); !strings.Contains(h, "cluster: connected") {
		t.Fatalf("healthz after the others came back: %q", h)
	}
}

// adminGet GETs path from srv's admin API with the token and decodes the
// JSON answer into out.
func adminGet(t *testing.T, srv *servertest.Server, path string, out any) int {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Host = "127.0.0.1"
	req.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	srv.Admin(server.AdminOptions{Token: testToken}).ServeHTTP(w, req)
	if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
		t.Fatalf("%s: %v: %s", path, err, w.Body)
	}
	return w.Code
}

// healthz is srv's GET /healthz body.
func healthz(t *testing.T, srv *servertest.Server) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Host = "127.0.0.1"
	w := httptest.NewRecorder()
	srv.Admin(server.AdminOptions{Token: testToken}).ServeHTTP(w, req)
	return w.Body.String()
}

// A per-key session limit counts the sessions of every node; a node more
// loaded than another by the margin sends new clients there with a
// Redirect at handshake.
func TestClusterKeyLimitAndRedirect(t *testing.T) {
	reg := prometheus.NewRegistry()
	tc := startTestCluster(t, 2, func(i int, addr netip.AddrPort, c *server.Config) {
		c.MaxSessions = 10
		c.PublicAddresses = []netip.AddrPort{addr}
		c.Cluster.Redirect, c.Cluster.RedirectMargin = true, 0.1
		if i == 0 {
			c.Registerer, c.Gatherer = reg, reg
		}
	})
	n1, n2 := tc.srvs[0], tc.srvs[1]
	limited, err := n1.CreateKey("two sessions")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Server.Store().(store.Accounts).SetKeyLimit(limited.ID, 2); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "node 2 knowing the key's limit", func() bool {
		k, err := n2.Server.Store().GetKey(limited.ID)
		return err == nil && k.MaxSessions == 2
	})
	n2.KeyChanged(limited.ID) // what the portal does after SetKeyLimit
	n1.KeyChanged(limited.ID)
	dialCluster(t, n1, limited.ID)
	second := dialCluster(t, n2, limited.ID)
	testutil.WaitUntil(t, 10*time.Second, "both nodes counting 2 sessions of the key", func() bool {
		return n1.LiveSessions(limited.ID) == 2 && n2.LiveSessions(limited.ID) == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []*servertest.Server{n1, n2} {
		_, err := rtmfp.Connect(ctx, n.URL(limited.ID), &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second})
		if statusCode(err) != rtmfp.ConnectRejected {
			t.Fatalf("a third session of the key on %s: %v, want %s", n.ClusterNode(), err, rtmfp.ConnectRejected)
		}
	}
	second.Close()
	testutil.WaitUntil(t, 10*time.Second, "node 1 counting 1 session of the key", func() bool { return n1.LiveSessions(limited.ID) == 1 })
	dialCluster(t, n1, limited.ID)

	// Node 1 holds 2 of its 10 sessions, node 2 none: past the margin,
	// node 1 sends the next client to node 2.
	free, err := n1.CreateKey("free")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "node 2 knowing the second key", func() bool {
		_, err := n2.Server.Store().GetKey(free.ID)
		return err == nil
	})
	var moved *rtmfp.NetConnection
	testutil.WaitUntil(t, 20*time.Second, "a client of node 1 sent to node 2", func() bool {
		nc := dialCluster(t, n1, free.ID)
		for _, s := range n2.Sessions() {
			if s.PeerID == nc.NearID() {
				moved = nc
				return true
			}
		}
		nc.Close()
		return false
	})
	if n := counterValue(t, reg, "stratus_cluster_redirects_total"); n < 1 {
		t.Fatalf("redirects counted: %v", n)
	}
	// The client sent elsewhere is in the directory like any other.
	testutil.WaitUntil(t, 10*time.Second, "node 1 knowing the moved client", func() bool { return knows(n1, moved.NearID(), "n2") })
}

// counterValue sums a counter's series in g.
func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// gaugeValue is a gauge's value in g (-1 if absent).
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
