package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openBolt(t *testing.T, dir string) *Bolt {
	t.Helper()
	b, err := OpenBolt(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBoltPersistence: everything written is there after a close and reopen.
func TestBoltPersistence(t *testing.T) {
	dir := t.TempDir()
	b := openBolt(t, dir)
	a := mustCreate(t, b, "a")
	k2 := mustCreate(t, b, "b")
	c := mustCreate(t, b, "c")
	revoked, err := b.RevokeKey(k2.ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	for range 3 {
		if err := b.AddUsage(map[string]Usage{
			a.ID:  {Connects: 1, BytesIn: 10, LastSeen: seen},
			k2.ID: {Rejected: 1},
		}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := b.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBolt(t, dir)
	defer b.Close()
	after, err := b.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("after reopen %d keys, want %d", len(after), len(before))
	}
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("key %d after reopen = %#v, want %#v", i, after[i], before[i])
		}
	}
	if got, err := b.GetKey(k2.ID); err != nil || !got.Revoked || !sameKey(got, revoked) {
		t.Errorf("revocation lost on reopen: %+v, %v", got, err)
	}
	if got, err := b.GetKey(c.ID); err != nil || got.Revoked {
		t.Errorf("key c after reopen: %+v, %v", got, err)
	}
	if u := mustUsage(t, b, a.ID); !sameUsage(u, Usage{Connects: 3, BytesIn: 30, LastSeen: seen}) {
		t.Errorf("usage a after reopen = %+v", u)
	}
	if u := mustUsage(t, b, k2.ID); u.Rejected != 3 {
		t.Errorf("usage b after reopen = %+v", u)
	}
	if u := mustUsage(t, b, c.ID); u != (Usage{}) {
		t.Errorf("usage c after reopen = %+v, want zero", u)
	}
	// The reopened store keeps working, revocation stays idempotent.
	if r, err := b.RevokeKey(k2.ID); err != nil || !r.RevokedAt.Equal(revoked.RevokedAt) {
		t.Errorf("RevokeKey after reopen = %+v, %v", r, err)
	}
}

// TestBoltLocked: bbolt's flock is per open file description, so a second
// open in the same process contends just like a second process would.
func TestBoltLocked(t *testing.T) {
	dir := t.TempDir()
	first := openBolt(t, dir)
	k := mustCreate(t, first, "k")

	for _, timeout := range []time.Duration{150 * time.Millisecond, 0, -time.Second} {
		start := time.Now()
		second, err := OpenBolt(dir, timeout)
		elapsed := time.Since(start)
		if err == nil {
			second.Close()
			t.Fatalf("timeout %v: second OpenBolt succeeded while the first holds the lock", timeout)
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("timeout %v: err = %v, want ErrLocked", timeout, err)
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, "stratus.db")) {
			t.Errorf("error %q does not name the file", err)
		}
		if elapsed > max(timeout, 0)+time.Second {
			t.Errorf("timeout %v: gave up only after %v", timeout, elapsed)
		}
		if elapsed < timeout/2 {
			t.Errorf("timeout %v: gave up already after %v", timeout, elapsed)
		}
	}

	// The failed attempts closed their descriptors; that must not have
	// released the first holder's lock or disturbed its data.
	if got, err := first.GetKey(k.ID); err != nil || got.ID != k.ID {
		t.Fatalf("first store after lock contention: %+v, %v", got, err)
	}
	if _, err := OpenBolt(dir, 0); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock lost after failed opens: %v", err)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenBolt(dir, 150*time.Millisecond)
	if err != nil {
		t.Fatalf("OpenBolt after Close: %v", err)
	}
	defer again.Close()
	if _, err := again.GetKey(k.ID); err != nil {
		t.Fatal(err)
	}
}

// TestBoltLockReleasedWhileWaiting: a waiter gets the lock once the holder
// closes within the timeout (the CLI racing a server shutdown).
func TestBoltLockReleasedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	first := openBolt(t, dir)
	time.AfterFunc(100*time.Millisecond, func() { first.Close() })
	second, err := OpenBolt(dir, 5*time.Second)
	if err != nil {
		t.Fatalf("OpenBolt while holder closes: %v", err)
	}
	second.Close()
}

func TestBoltCreatesPrivateDirAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "stratus")
	b := openBolt(t, dir)
	defer b.Close()
	if want := filepath.Join(dir, "stratus.db"); b.Path() != want {
		t.Fatalf("Path() = %q, want %q", b.Path(), want)
	}
	for _, p := range []string{dir, filepath.Dir(dir), b.Path()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 || perm&0o600 != 0o600 {
			t.Errorf("%s has mode %v, want owner-only", p, perm)
		}
	}
}

func TestBoltEmptyDir(t *testing.T) {
	if b, err := OpenBolt("", time.Second); err == nil {
		b.Close()
		t.Fatal(`OpenBolt("") succeeded`)
	}
}

// rawUpdate edits the database file directly with bbolt, to simulate files
// written by other versions or programs.
func rawUpdate(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "stratus.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// lastTxID returns the ID of the database file's last committed write
// transaction: a write of any kind moves it.
func lastTxID(t *testing.T, dir string) int {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "stratus.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id int
	db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

func TestBoltSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	b := openBolt(t, dir)
	k := mustCreate(t, b, "k")
	b.Close()

	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		if got := string(tx.Bucket([]byte("meta")).Get([]byte("schema_version"))); got != "3" {
			t.Errorf("stored schema version = %q, want 3", got)
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("4"))
	})
	_, err := OpenBolt(dir, time.Second)
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "schema version 4") {
		t.Fatalf("OpenBolt of a newer schema: err = %v, want ErrIncompatible naming version 4", err)
	}
	if errors.Is(err, ErrLocked) {
		t.Fatalf("schema error also claims ErrLocked: %v", err)
	}

	for _, bad := range []string{"", "zero", "0"} {
		rawUpdate(t, dir, func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte(bad))
		})
		if _, err := OpenBolt(dir, time.Second); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("schema version %q: err = %v, want ErrIncompatible", bad, err)
		}
	}

	// Back to version 3: the refused opens must not have touched the data.
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("3"))
	})
	b = openBolt(t, dir)
	defer b.Close()
	if _, err := b.GetKey(k.ID); err != nil {
		t.Fatal(err)
	}
}

func TestBoltRefusesForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("somebody-else"))
		return err
	})
	if _, err := OpenBolt(dir, time.Second); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("OpenBolt of a foreign bbolt file: err = %v, want ErrIncompatible", err)
	}
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("keys")) != nil {
			t.Error("refused open created buckets anyway")
		}
		return nil
	})
}

// A file of the current version without one of its buckets (accounts
// since version 2, the account_keys index since 3) is refused.
func TestBoltRefusesMissingBuckets(t *testing.T) {
	for _, bucket := range []string{"keys", "usage", "accounts", "history", "account_keys"} {
		dir := t.TempDir()
		openBolt(t, dir).Close()
		rawUpdate(t, dir, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(bucket)) })
		if _, err := OpenBolt(dir, time.Second); !errors.Is(err, ErrIncompatible) {
			t.Errorf("without %s: err = %v, want ErrIncompatible", bucket, err)
		}
	}
}

func TestBoltNotADatabase(t *testing.T) {
	dir := t.TempDir()
	junk := []byte(strings.Repeat("this is not a bbolt file\n", 1000))
	if err := os.WriteFile(filepath.Join(dir, "stratus.db"), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenBolt(dir, time.Second)
	if err == nil {
		b.Close()
		t.Fatal("OpenBolt accepted a junk file")
	}
	if errors.Is(err, ErrLocked) {
		t.Fatalf("junk file reported as locked: %v", err)
	}
}

// A database written by the first version of stratus (schema 1: keys,
// usage and meta only, keys without the account fields) is upgraded in
// place: its keys and usage stay, they become operator keys, and accounts
// and history work afterwards.
func TestBoltUpgradesVersion1(t *testing.T) {
	dir := t.TempDir()
	const id = "7d8e660a6cbf71bab35a0781-c086fb40c6fb"
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		for _, name := range []string{"keys", "usage", "meta"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("1"))
		tx.Bucket([]byte("keys")).Put([]byte(id), []byte(`{"key":"`+id+`","name":"old","created":"2024-01-02T03:04:05Z","revoked":false}`))
		return tx.Bucket([]byte("usage")).Put([]byte(id), []byte(`{"connects":7,"rejected":0,"introductions":3,"lookups_missed":0,"relays":0,"bytes_in":0,"bytes_out":0,"session_seconds":60}`))
	})
	b := openBolt(t, dir)
	k, err := b.GetKey(id)
	if err != nil || k.Name != "old" || k.Account != "" || k.Suspended || k.MaxSessions != 0 {
		t.Fatalf("old key after the upgrade: %+v %v", k, err)
	}
	if u := mustUsage(t, b, id); u.Connects != 7 || u.Introductions != 3 {
		t.Fatalf("old usage after the upgrade: %+v", u)
	}
	a, err := b.CreateAccount("dev", "dev@example.com", []byte("hash"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateAccountKey(a.ID, "new"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddUsage(map[string]Usage{id: {Connects: 1}}); err != nil {
		t.Fatal(err)
	}
	if h, err := b.UsageHistory(id); err != nil || len(h) != 1 || h[0].Connects != 1 {
		t.Fatalf("history after the upgrade: %+v %v", h, err)
	}
	b.Close()
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		if got := string(tx.Bucket([]byte("meta")).Get([]byte("schema_version"))); got != "3" {
			t.Errorf("schema version after the upgrade = %q, want 3", got)
		}
		return nil
	})
	// Reopening an upgraded file writes nothing and keeps everything.
	before := lastTxID(t, dir)
	b = openBolt(t, dir)
	accts, err := b.ListAccounts()
	b.Close()
	if err != nil || len(accts) != 1 {
		t.Fatalf("accounts after reopening: %+v %v", accts, err)
	}
	if after := lastTxID(t, dir); after != before {
		t.Fatalf("reopening the upgraded file wrote to it: last transaction %d, was %d", after, before)
	}
}

// A version 2 database (accounts, but no account_keys index) is upgraded
// in place: the index is built from the keys, so AccountKeys, the key
// bounds and suspension see the account's existing keys; reopening the
// upgraded file writes nothing.
func TestBoltUpgradesVersion2(t *testing.T) {
	dir := t.TempDir()
	const acct, other = "0123456789abcdef", "fedcba9876543210"
	ids := []string{"7d8e660a6cbf71bab35a0781-c086fb40c6fb", "8d8e660a6cbf71bab35a0781-c086fb40c6fb", "9d8e660a6cbf71bab35a0781-c086fb40c6fb"}
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		for _, name := range []string{"keys", "usage", "meta", "accounts", "history"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("2"))
		for _, a := range []string{acct, other} {
			tx.Bucket([]byte("accounts")).Put([]byte(a), []byte(`{"id":"`+a+`","name":"dev","email":"dev@example.com","secret_hash":"aGFzaA==","created":"2025-01-02T03:04:05Z"}`))
		}
		keys := tx.Bucket([]byte("keys"))
		keys.Put([]byte(ids[0]), []byte(`{"key":"`+ids[0]+`","name":"mine","created":"2025-01-02T03:04:05Z","revoked":false,"account":"`+acct+`"}`))
		keys.Put([]byte(ids[1]), []byte(`{"key":"`+ids[1]+`","name":"theirs","created":"2025-01-02T03:04:06Z","revoked":false,"account":"`+other+`"}`))
		return keys.Put([]byte(ids[2]), []byte(`{"key":"`+ids[2]+`","name":"operator's","created":"2025-01-02T03:04:07Z","revoked":false}`))
	})
	b := openBolt(t, dir)
	keys, err := b.AccountKeys(acct)
	if err != nil || len(keys) != 1 || keys[0].ID != ids[0] {
		t.Fatalf("AccountKeys after the upgrade = %+v, %v", keys, err)
	}
	for range MaxAccountKeys - 1 {
		if _, err := b.CreateAccountKey(acct, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.CreateAccountKey(acct, "k"); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("the upgraded key does not count towards the bound: %v", err)
	}
	if _, err := b.SuspendAccount(acct, true); err != nil {
		t.Fatal(err)
	}
	if k, _ := b.GetKey(ids[0]); !k.Suspended {
		t.Fatal("suspending the account did not mark its upgraded key")
	}
	if k, _ := b.GetKey(ids[1]); k.Suspended {
		t.Fatal("suspending one account marked another's key")
	}
	b.Close()
	before := lastTxID(t, dir)
	b = openBolt(t, dir)
	keys, err = b.AccountKeys(other)
	b.Close()
	if err != nil || len(keys) != 1 || keys[0].ID != ids[1] {
		t.Fatalf("AccountKeys after reopening = %+v, %v", keys, err)
	}
	if after := lastTxID(t, dir); after != before {
		t.Fatalf("reopening the upgraded file wrote to it: last transaction %d, was %d", after, before)
	}
}

// AccountKeys reads the account's keys through the index, not every key
// in the file: a key it has no business reading (here an undecodable one
// of nobody's) does not stop it.
func TestBoltAccountKeysUseTheIndex(t *testing.T) {
	dir := t.TempDir()
	b := openBolt(t, dir)
	a, err := b.CreateAccount("dev", "dev@example.com", []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.CreateAccountKey(a.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	rawUpdate(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("keys")).Put([]byte("0000000000000000000000000-000000000000"), []byte("not JSON"))
	})
	b = openBolt(t, dir)
	defer b.Close()
	for name, err := range map[string]error{
		"AccountKeys":      second(b.AccountKeys(a.ID)),
		"CreateAccountKey": second(b.CreateAccountKey(a.ID, "more")),
		"RotateKey":        second(b.RotateKey(k.ID)),
		"SuspendAccount":   second(b.SuspendAccount(a.ID, true)),
	} {
		if err != nil {
			t.Errorf("%s read another key: %v", name, err)
		}
	}
}
