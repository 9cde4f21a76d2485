package cluster

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/store"
)

// A node with another secret cannot route to the cluster, and a NATS
// client cannot connect without the secret.
func TestClusterNeedsTheSecret(t *testing.T) {
	tc := startCluster(t, 3, func(i int, c *Config) {
		if i == 2 {
			c.Secret = []byte("not-the-cluster-secret-at-all")
		}
	})
	// Nodes 1 and 2 form a cluster; node 3 routes nowhere. (A node with the
	// right secret joins within a second or two; five are given.)
	testutil.WaitUntil(t, 20*time.Second, "nodes 1 and 2 together", func() bool {
		return len(tc.nodes[0].Status().Nodes) == 2 && len(tc.nodes[1].Status().Nodes) == 2
	})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(tc.nodes[0].Status().Nodes) != 2 || len(tc.nodes[2].Status().Nodes) != 1 || tc.nodes[2].Status().Connected {
			t.Fatalf("a node with the wrong secret got in: node 1 sees %d nodes, node 3 %d", len(tc.nodes[0].Status().Nodes), len(tc.nodes[2].Status().Nodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
	url := tc.nodes[0].emb.srv.ClientURL()
	for _, opt := range []nats.Option{nats.UserInfo(natsUser, "wrong password"), nats.UserInfo("", "")} {
		if nc, err := nats.Connect(url, opt, nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Fatal("a NATS client without the secret connected")
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("refused for another reason: %v", err)
		}
	}
}

type recordingHandler struct {
	*testHandler
	intros chan directory.Introduction
}

func (h *recordingHandler) Introduce(_ any, in directory.Introduction) { h.intros <- in }

// Messages that are not signed with the cluster's key, are malformed,
// too old, or claim the receiver's own name are dropped and counted;
// none reaches the server.
func TestForgedMessagesAreDropped(t *testing.T) {
	tc := startCluster(t, 1, nil)
	n := tc.nodes[0]
	rec := &recordingHandler{testHandler: tc.handlers[0], intros: make(chan directory.Introduction, 16)}
	tc.handlers[0].set(rec)
	var id [32]byte
	id[0] = 7
	h := &struct{}{}
	n.Directory().Put(directory.Peer{ID: id, Key: "k", Local: h, Since: time.Now()})

	// A client that has the NATS credentials (say, another tenant of a
	// shared NATS) but not the cluster's message key.
	nc, err := nats.Connect(n.emb.srv.ClientURL(), nats.UserInfo(natsUser, strings.TrimSpace(string(testSecret))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject := n.subject(n.name, "in")
	in := introMsg{Target: id, EPD: []byte{1}, Tag: []byte("tag"), Reply: []directory.Address{{Origin: 2}}}
	send := func(key []byte, h header, body func([]byte) []byte) {
		if h.Time.IsZero() {
			h.Time = time.Now()
		}
		if err := nc.Publish(subject, seal(nil, key, subject, h, body)); err != nil {
			t.Fatal(err)
		}
	}
	before := n.Stats()
	send([]byte("a guessed key"), header{Kind: kindIntro, Node: "evil", Epoch: 1}, in.append)                         // forged
	send(n.macKey, header{Kind: kindIntro, Node: "evil", Epoch: 1}, func(b []byte) []byte { return append(b, 0xff) }) // malformed
	send(n.macKey, header{Kind: kindIntro, Node: "evil", Epoch: 1, Time: time.Now().Add(-time.Minute)}, in.append)    // replayed
	send(n.macKey, header{Kind: kindIntro, Node: n.name, Epoch: 1}, in.append)                                        // our own name
	nc.Publish(subject, []byte("garbage"))                                                                            // not a message
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A genuine message after them all: once it arrives, they were seen.
	send(n.macKey, header{Kind: kindIntro, Node: "friend", Epoch: 1}, in.append)
	select {
	case got := <-rec.intros:
		if got.Target != id || string(got.Tag) != "tag" {
			t.Fatalf("introduced %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the genuine introduction did not arrive")
	}
	if len(rec.intros) != 0 {
		t.Fatalf("%d more introductions reached the server", len(rec.intros))
	}
	after := n.Stats()
	if d := after.DropAuth - before.DropAuth; d != 1 {
		t.Errorf("%d dropped for their signature, want 1", d)
	}
	if d := after.DropMalformed - before.DropMalformed; d != 2 {
		t.Errorf("%d dropped as malformed, want 2 (a bad body, garbage)", d)
	}
	if d := after.DropStale - before.DropStale; d != 1 {
		t.Errorf("%d dropped as stale, want 1", d)
	}
	if d := after.DropDuplicateName - before.DropDuplicateName; d != 1 {
		t.Errorf("%d dropped for using the node's own name, want 1", d)
	}
}

// startNATS runs a NATS server on 127.0.0.1 that wants the cluster's
// credentials, on port (0: any) with JetStream in dir.
func startNATS(t *testing.T, port int, dir string) *natsd.Server {
	t.Helper()
	if port == 0 {
		port = natsd.RANDOM_PORT
	}
	s, err := natsd.NewServer(&natsd.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
		Username: natsUser, Password: strings.TrimSpace(string(testSecret))})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	return s
}

// Nodes on an existing NATS (--nats-url) lose it: each keeps serving its
// own peers, says it is disconnected and forgets the other's peers; when
// NATS is back they rejoin without a restart, and the key store answers
// again.
func TestLosingNATSAndRejoining(t *testing.T) {
	dir := t.TempDir()
	ns := startNATS(t, 0, dir)
	url, port := ns.ClientURL(), ns.Addr().(*net.TCPAddr).Port
	tc := startCluster(t, 2, func(i int, c *Config) { c.NATSURL, c.Replicas, c.Heartbeat = url, 1, 250*time.Millisecond })
	tc.waitKeyStores(t)
	a, b := tc.nodes[0], tc.nodes[1]
	var ida, idb [32]byte
	ida[0], idb[0] = 1, 2
	ha, hb := &struct{}{}, &struct{}{}
	a.Directory().Put(directory.Peer{ID: ida, Key: "k", Local: ha, Since: time.Now()})
	b.Directory().Put(directory.Peer{ID: idb, Key: "k", Local: hb, Since: time.Now()})
	testutil.WaitUntil(t, 10*time.Second, "each node knowing the other's peer", func() bool {
		_, ok1 := a.Directory().Lookup(idb)
		_, ok2 := b.Directory().Lookup(ida)
		return ok1 && ok2
	})

	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.WaitUntil(t, 10*time.Second, "both nodes saying they are disconnected", func() bool {
		return !a.Status().Connected && !b.Status().Connected
	})
	testutil.WaitUntil(t, 10*time.Second, "node A forgetting node B's peer", func() bool {
		_, ok := a.Directory().Lookup(idb)
		return !ok
	})
	if p, ok := a.Directory().Lookup(ida); !ok || p.Local != ha {
		t.Fatal("node A lost its own peer with NATS")
	}
	if _, err := a.Store().CreateKey("while down"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CreateKey without NATS: %v, want ErrUnavailable", err)
	}

	ns = startNATS(t, port, dir)
	defer ns.Shutdown()
	testutil.WaitUntil(t, 30*time.Second, "both nodes connected again", func() bool { return a.Status().Connected && b.Status().Connected })
	testutil.WaitUntil(t, 30*time.Second, "each node knowing the other's peer again", func() bool {
		_, ok1 := a.Directory().Lookup(idb)
		_, ok2 := b.Directory().Lookup(ida)
		return ok1 && ok2
	})
	var k store.Key
	testutil.WaitUntil(t, 30*time.Second, "the key store answering again", func() bool {
		var err error
		k, err = a.Store().CreateKey("after")
		return err == nil
	})
	testutil.WaitUntil(t, 10*time.Second, "node B knowing the new key", func() bool {
		_, err := b.Store().GetKey(k.ID)
		return err == nil
	})
}
