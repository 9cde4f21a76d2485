package cluster

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testutil"
	"github.com/stratus-rtmfp/stratus/store"
)

func (tc *testCluster) waitKeyStores(t *testing.T) {
	t.Helper()
	testutil.WaitUntil(t, 60*time.Second, "every node's key store ready", func() bool {
		for _, n := range tc.nodes {
			if ok, _ := n.keys.status(); !ok {
				return false
			}
		}
		return true
	})
}

// waitKey waits until node i's copy of key id satisfies cond, then until
// its server has been told that the key changed (since the last drain).
func (tc *testCluster) waitKey(t *testing.T, i int, id, what string, cond func(store.Key) bool) {
	t.Helper()
	testutil.WaitUntil(t, 10*time.Second, what, func() bool {
		got, err := tc.nodes[i].Store().GetKey(id)
		return err == nil && cond(got)
	})
	tc.waitChanged(t, i, id)
}

// drain forgets what node i's handler was told so far.
func (tc *testCluster) drain(i int) {
	for {
		select {
		case <-tc.handlers[i].changed:
		default:
			return
		}
	}
}

// waitChanged waits until node i's handler is told that key id changed
// (since the last drain).
func (tc *testCluster) waitChanged(t *testing.T, i int, id string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-tc.handlers[i].changed:
			if got == id {
				return
			}
		case <-timeout:
			t.Fatalf("node %d was not told that %s changed", i+1, id)
		}
	}
}

// Keys and accounts written on one node reach every node's copy, which
// tells its server; concurrent edits of one key all land
// (compare-and-set).
func TestKeyStoreReplicates(t *testing.T) {
	tc := startCluster(t, 3, nil)
	tc.waitKeyStores(t)
	n1, n2, n3 := tc.nodes[0].Store(), tc.nodes[1].Store(), tc.nodes[2].Store()

	k, err := n1.CreateKey("from n1")
	if err != nil {
		t.Fatal(err)
	}
	tc.waitKey(t, 2, k.ID, "node 3's copy of the new key", func(got store.Key) bool {
		return got.Name == "from n1" && got.Created.Equal(k.Created)
	})
	tc.drain(0)
	if _, err := n3.RevokeKey(k.ID); err != nil {
		t.Fatal(err)
	}
	tc.waitKey(t, 0, k.ID, "the revocation on node 1", func(got store.Key) bool { return got.Revoked })
	if _, err := n1.RotateKey(k.ID); err == nil {
		t.Fatal("a revoked key was rotated")
	}

	// Accounts: a suspension is one write, and the account's keys follow
	// it on every node.
	a, err := n2.CreateAccount("ada", "ada@example.com", []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	ak, err := n2.CreateAccountKey(a.ID, "ada's")
	if err != nil {
		t.Fatal(err)
	}
	tc.waitKey(t, 0, ak.ID, "the account's key on node 1", func(got store.Key) bool { return got.Account == a.ID })
	tc.drain(2)
	if _, err := n1.SuspendAccount(a.ID, true); err != nil {
		t.Fatal(err)
	}
	tc.waitKey(t, 2, ak.ID, "the account's suspension on its key on node 3", func(got store.Key) bool { return got.Suspended })
	if _, err := n3.RotateKey(ak.ID); err == nil {
		t.Fatal("a suspended account's key was rotated")
	}
	tc.drain(0)
	if _, err := n3.SuspendAccount(a.ID, false); err != nil {
		t.Fatal(err)
	}
	tc.waitKey(t, 0, ak.ID, "the reinstatement on node 1", func(got store.Key) bool { return !got.Suspended })
	tc.drain(1)
	nk, err := n1.RotateKey(ak.ID)
	if err != nil || nk.Account != a.ID || nk.Name != "ada's" {
		t.Fatalf("RotateKey = %+v, %v", nk, err)
	}
	tc.waitKey(t, 1, ak.ID, "the rotated key revoked on node 2", func(got store.Key) bool { return got.Revoked })

	// Concurrent edits of one key from every node: each lands once. (Each
	// node must have the key first: an edit on a node the key has not
	// reached yet fails with "no such key", as CI saw once.)
	testutil.WaitUntil(t, 10*time.Second, "the rotated key on every node", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.Store().GetKey(nk.ID); err != nil {
				return false
			}
		}
		return true
	})
	var wg sync.WaitGroup
	for i, s := range []StoreAccounts{n1, n2, n3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.SetKeyLimit(nk.ID, 10*(i+1)); err != nil {
				t.Errorf("node %d: %v", i+1, err)
			}
			if _, err := s.RenameKey(nk.ID, fmt.Sprintf("name %d", i+1)); err != nil {
				t.Errorf("node %d: %v", i+1, err)
			}
		}()
	}
	wg.Wait()
	testutil.WaitUntil(t, 10*time.Second, "every node agreeing on the key", func() bool {
		a, _ := n1.GetKey(nk.ID)
		b, _ := n2.GetKey(nk.ID)
		c, _ := n3.GetKey(nk.ID)
		return a == b && b == c && a.MaxSessions > 0
	})
}

// Usage is counted once cluster-wide: each node's pushes are totals, so
// repeated pushes add nothing; a batch committed by a node that dies
// before pushing it is pushed when it starts again; a node that comes
// back with an empty data directory does not erase what it counted
// before.
func TestUsageCountedOnce(t *testing.T) {
	tc := startCluster(t, 3, nil)
	tc.waitKeyStores(t)
	k, err := tc.nodes[0].Store().CreateKey("counted")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		testutil.WaitUntil(t, 10*time.Second, "every node knowing the key", func() bool {
			_, err := tc.nodes[i].Store().GetKey(k.ID)
			return err == nil
		})
	}
	connects := func(i int) uint64 {
		u, _ := tc.nodes[i].Store().Usage(k.ID)
		return u.Connects
	}
	add := func(i int, n uint64) {
		t.Helper()
		if err := tc.nodes[i].Store().AddUsage(map[string]store.Usage{k.ID: {Connects: n, LastSeen: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	add(0, 2)
	add(1, 3)
	testutil.WaitUntil(t, 10*time.Second, "node 3 counting 5 connects", func() bool { return connects(2) == 5 })
	// More pushes of the same totals change nothing.
	for range 3 {
		tc.nodes[0].keys.mu.Lock()
		tc.nodes[0].keys.dirty[k.ID] = true
		tc.nodes[0].keys.mu.Unlock()
		tc.nodes[0].keys.pushUsage()
	}
	if c := connects(2); c != 5 {
		t.Fatalf("after pushing the same totals again node 3 counts %d", c)
	}

	// Node 1 commits a batch and dies before pushing it.
	add(0, 10)
	tc.nodes[0].Kill()
	testutil.WaitUntil(t, 10*time.Second, "node 3 forgetting node 1", func() bool { return len(tc.nodes[2].Status().Nodes) == 2 })
	if c := connects(2); c != 5 {
		t.Fatalf("node 3 counts %d before node 1 pushed", c)
	}
	tc.restart(t, 0)
	testutil.WaitUntil(t, 30*time.Second, "node 3 counting node 1's last batch after its restart", func() bool { return connects(2) == 15 })

	// Node 2 comes back with an empty data directory under its name.
	tc.nodes[1].Close()
	tc.cfgs[1].Replica = store.NewMemory()
	tc.restart(t, 1)
	testutil.WaitUntil(t, 30*time.Second, "node 2's new copy knowing the key", func() bool {
		_, err := tc.nodes[1].Store().GetKey(k.ID)
		return err == nil
	})
	add(1, 1)
	testutil.WaitUntil(t, 30*time.Second, "node 3 counting 16 connects (node 2's earlier 3 kept)", func() bool { return connects(2) == 16 })
	testutil.WaitUntil(t, 10*time.Second, "node 2 counting 16 connects", func() bool { return connects(1) == 16 })
	h, err := tc.nodes[2].Store().UsageHistory(k.ID)
	if err != nil || len(h) == 0 {
		t.Fatalf("history %v, %v", h, err)
	}
	var sum uint64
	for _, s := range h {
		sum += s.Connects
	}
	if sum != 16 {
		t.Fatalf("history sums %d connects, want 16: %+v", sum, h)
	}
}
