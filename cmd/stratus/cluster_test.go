package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// buildStratus builds this command into a temporary directory.
func buildStratus(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stratus")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeUDPPorts returns n UDP ports free on 127.0.0.1 a moment ago.
func freeUDPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var conns []net.PacketConn
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range conns {
		c.Close()
	}
	return ports
}

// node is one stratus server process of the test cluster.
type node struct {
	name, data, udp, admin string
	args                   []string
	cmd                    *exec.Cmd
	log                    *syncBuffer
	exited                 chan struct{}
}

// syncBuffer is a log the process writes while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (n *node) start(t *testing.T, bin string) {
	t.Helper()
	n.log = &syncBuffer{}
	n.cmd = exec.Command(bin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.exited) }()
}

// stop sends sig and waits for the process to end.
func (n *node) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		t.Fatalf("%s did not stop; its log:\n%s", n.name, n.log)
	}
}

func (n *node) get(t *testing.T, path string, out any) string {
	t.Helper()
	tok, err := readToken(filepath.Join(n.data, adminTokenFile))
	if err != nil {
		return ""
	}
	req, _ := http.NewRequest("GET", "http://"+n.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		json.Unmarshal(b, out)
	}
	return string(b)
}

// waitFor waits until cond holds, failing after d with the nodes' logs.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, logs ...*node) {
	t.Helper()
	if len(logs) > 0 {
		defer func() {
			if t.Failed() {
				for _, n := range logs {
					t.Logf("--- %s:\n%s", n.name, n.log)
				}
			}
		}()
	}
	testutil.WaitUntil(t, d, what, cond)
}

// listsPeer reports whether n's cluster-wide session list has peerID on
// node on.
func (n *node) listsPeer(t *testing.T, peerID, on string) bool {
	var p struct {
		PeerID string `json:"peer_id"`
		Node   string `json:"node"`
	}
	n.get(t, "/api/cluster/sessions?peer="+peerID, &p)
	return p.PeerID == peerID && p.Node == on
}

func (n *node) connect(t *testing.T, key string) *rtmfp.NetConnection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, "rtmfp://"+n.udp+"/"+key, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connecting to %s: %v", n.name, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// Three `stratus server` processes started with the flags form a
// cluster: a key created through node 1's data directory works on node 3,
// peers on different nodes are introduced, relay crosses nodes,
// revocation through node 3 closes sessions on nodes 1 and 2, node 2
// killed with SIGKILL is forgotten within a keepalive period and rejoins
// when started again.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three servers")
	}
	bin := buildStratus(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("a-shared-secret-for-the-process-test\n"), 0o600)
	routePorts := testutil.FreeTCPPorts(t, 6)
	udpPorts := freeUDPPorts(t, 3)
	var routes []string
	for _, p := range routePorts[:3] {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), data: filepath.Join(dir, fmt.Sprintf("data%d", i+1)),
			udp: fmt.Sprintf("127.0.0.1:%d", udpPorts[i]), admin: fmt.Sprintf("127.0.0.1:%d", routePorts[3+i])}
		n.args = []string{"server", "--cluster", "--node-name", n.name,
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i]), "--cluster-routes", strings.Join(routes, ","),
			"--cluster-name", "proc", "--cluster-secret-file", secret,
			"--data", n.data, "--listen", n.udp, "--admin", n.admin, "--http", "off", "--client-keepalive", "5s"}
		n.start(t, bin)
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				<-n.exited
			}
		}
	})
	formed := func(n *node) func() bool {
		return func() bool {
			h := n.get(t, "/healthz", nil)
			return strings.Contains(h, "cluster: connected") && strings.Contains(h, "3 nodes, key store ok")
		}
	}
	for _, n := range nodes {
		waitFor(t, 90*time.Second, n.name+" in a 3-node cluster with its key store", formed(n), nodes...)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	// stratus keys pointed at node 1's data directory creates a key in
	// the cluster (through node 1's admin API).
	out, err := exec.Command(bin, "keys", "create", "--name", "proc", "--data", n1.data, "--json").Output()
	if err != nil {
		t.Fatalf("stratus keys create: %v", err)
	}
	key := regexp.MustCompile(`[0-9a-f]{24}-[0-9a-f]{12}`).FindString(string(out))
	if key == "" {
		t.Fatalf("no key in %s", out)
	}
	waitFor(t, 10*time.Second, "the key listed by stratus keys on node 3", func() bool {
		out, _ := exec.Command(bin, "keys", "list", "--data", n3.data).Output()
		return strings.Contains(string(out), key)
	})
	a3 := n3.connect(t, key)
	a1 := n1.connect(t, key)
	pub2 := n2.connect(t, key)

	// Introductions and relay across nodes.
	waitFor(t, 10*time.Second, "node 1 listing the node-3 and node-2 peers", func() bool {
		return n1.listsPeer(t, a3.NearID(), "n3") && n1.listsPeer(t, pub2.NearID(), "n2")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a1.DialPeer(ctx, pub2.NearID()); err != nil {
		t.Fatalf("node 1 -> node 2 introduction: %v", err)
	}
	got := make(chan []any, 1)
	a3.Handle("onRelay", func(args []any) { got <- args })
	if _, err := a1.Call(ctx, "relay", a3.NearID(), "hello"); err != nil {
		t.Fatalf("relay node 1 -> node 3: %v", err)
	}
	select {
	case args := <-got:
		if len(args) != 2 || args[0] != a1.NearID() || args[1] != "hello" {
			t.Fatalf("onRelay %v", args)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no onRelay")
	}

	// The cluster view lists the three nodes and their sessions (the other
	// nodes' as of their last heartbeat).
	waitFor(t, 10*time.Second, "node 2's cluster view counting 3 nodes and their sessions", func() bool {
		var cl struct {
			Nodes []struct {
				Name     string
				Sessions int
			}
			Sessions int
		}
		n2.get(t, "/api/cluster", &cl)
		return len(cl.Nodes) == 3 && cl.Sessions >= 3
	})

	// Revocation through node 3 closes the key's sessions on 1 and 2.
	if out, err := exec.Command(bin, "keys", "revoke", key, "--data", n3.data).CombinedOutput(); err != nil {
		t.Fatalf("stratus keys revoke: %v\n%s", err, out)
	}
	for _, nc := range []*rtmfp.NetConnection{a1, pub2} {
		select {
		case <-nc.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a session of the key revoked through node 3 is still open")
		}
	}

	// Node 2 killed: its peers are forgotten within one keepalive period,
	// nodes 1 and 3 keep introducing their peers.
	out, _ = exec.Command(bin, "keys", "create", "--data", n1.data, "--json").Output()
	key2 := regexp.MustCompile(`[0-9a-f]{24}-[0-9a-f]{12}`).FindString(string(out))
	waitFor(t, 10*time.Second, "the second key on nodes 2 and 3", func() bool {
		o2, _ := exec.Command(bin, "keys", "show", key2, "--data", n2.data).Output()
		o3, _ := exec.Command(bin, "keys", "show", key2, "--data", n3.data).Output()
		return strings.Contains(string(o2), key2) && strings.Contains(string(o3), key2)
	})
	b1, b2, b3 := n1.connect(t, key2), n2.connect(t, key2), n3.connect(t, key2)
	waitFor(t, 10*time.Second, "node 1 listing the new peers of nodes 2 and 3", func() bool {
		return n1.listsPeer(t, b2.NearID(), "n2") && n1.listsPeer(t, b3.NearID(), "n3")
	})
	killed := time.Now()
	n2.stop(t, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "node 2's peer forgotten on nodes 1 and 3 within 5 s", func() bool {
		return !n1.listsPeer(t, b2.NearID(), "n2") && !n3.listsPeer(t, b2.NearID(), "n2")
	})
	t.Logf("node 2 killed: its peers forgotten after %v", time.Since(killed).Round(time.Millisecond))
	if _, err := b1.DialPeer(ctx, b3.NearID()); err != nil {
		t.Fatalf("node 1 -> node 3 with node 2 down: %v", err)
	}

	// Node 2 comes back and rejoins.
	n2.start(t, bin)
	for _, n := range nodes {
		waitFor(t, 90*time.Second, n.name+" back in a 3-node cluster", formed(n), nodes...)
	}
	c2 := n2.connect(t, key2)
	waitFor(t, 10*time.Second, "node 1 listing a peer of the restarted node 2", func() bool { return n1.listsPeer(t, c2.NearID(), "n2") })
	if _, err := b1.DialPeer(ctx, c2.NearID()); err != nil {
		t.Fatalf("node 1 -> restarted node 2: %v", err)
	}
	for _, n := range nodes {
		n.stop(t, syscall.SIGTERM)
	}
}
