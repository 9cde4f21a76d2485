package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// accountConformance is the Accounts behaviour Memory and Bolt share.
var accountConformance = []struct {
	name string
	run  func(t *testing.T, s Store, a Accounts)
}{
	{"CreateGetList", testAccountCreate},
	{"EmailsAreNotUnique", testAccountEmails},
	{"KeysBelongToAccounts", testAccountKeys},
	{"KeyLimitPerAccount", testAccountKeyLimit},
	{"KeyTotalPerAccount", testAccountKeyTotal},
	{"SuspendMarksKeys", testAccountSuspend},
	{"RenameAndLimit", testKeyEdits},
	{"Rotate", testKeyRotate},
	{"History", testHistory},
	{"Unknown", testAccountUnknown},
	{"ClosedAccounts", testAccountClosed},
}

func TestAccountsConformance(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, c := range accountConformance {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					s := impl.open(t)
					c.run(t, s, s.(Accounts))
				})
			}
		})
	}
}

func mustAccount(t *testing.T, a Accounts, name string) Account {
	t.Helper()
	acc, err := a.CreateAccount(name, name+"@example.com", []byte("hash of "+name))
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func testAccountCreate(t *testing.T, _ Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	if !ValidAccountID(acc.ID) || acc.Name != "ada" || acc.Email != "ada@example.com" || acc.Suspended || acc.Created.IsZero() {
		t.Fatalf("CreateAccount = %+v", acc)
	}
	got, err := a.GetAccount(acc.ID)
	if err != nil || got.ID != acc.ID || !bytes.Equal(got.SecretHash, []byte("hash of ada")) || !got.Created.Equal(acc.Created) {
		t.Fatalf("GetAccount = %+v, %v", got, err)
	}
	mustAccount(t, a, "bob")
	list, err := a.ListAccounts()
	if err != nil || len(list) != 2 || list[0].ID != acc.ID {
		t.Fatalf("ListAccounts = %+v, %v", list, err)
	}
	for _, bad := range [][3]string{{"\x00", "e@x", "h"}, {"n", string(make([]byte, MaxNameLen+1)), "h"}, {"n", "e@x", ""}} {
		if _, err := a.CreateAccount(bad[0], bad[1], []byte(bad[2])); err == nil {
			t.Errorf("CreateAccount(%q, %q, %q) accepted", bad[0], bad[1], bad[2])
		}
	}
}

func testAccountEmails(t *testing.T, _ Store, a Accounts) {
	x, err1 := a.CreateAccount("x", "same@example.com", []byte("h1"))
	y, err2 := a.CreateAccount("y", "same@example.com", []byte("h2"))
	if err1 != nil || err2 != nil || x.ID == y.ID {
		t.Fatalf("two sign-ups with one address: %v %v", err1, err2)
	}
}

func testAccountKeys(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	other := mustAccount(t, a, "bob")
	k1, err := a.CreateAccountKey(acc.ID, "one")
	if err != nil || k1.Account != acc.ID || !ValidKeyFormat(k1.ID) {
		t.Fatalf("CreateAccountKey = %+v, %v", k1, err)
	}
	k2, _ := a.CreateAccountKey(acc.ID, "two")
	a.CreateAccountKey(other.ID, "bob's")
	op := mustCreate(t, s, "operator's")
	keys, err := a.AccountKeys(acc.ID)
	if err != nil || len(keys) != 2 || keys[0].ID != k1.ID || keys[1].ID != k2.ID {
		t.Fatalf("AccountKeys = %+v, %v", keys, err)
	}
	if got, _ := s.GetKey(k1.ID); got.Account != acc.ID {
		t.Fatalf("GetKey lost the account: %+v", got)
	}
	if got, _ := s.GetKey(op.ID); got.Account != "" {
		t.Fatalf("operator key has an account: %+v", got)
	}
	all, _ := s.ListKeys()
	if len(all) != 4 {
		t.Fatalf("ListKeys has %d keys, want 4", len(all))
	}
}

func testAccountKeyLimit(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	var first Key
	for i := range MaxAccountKeys {
		k, err := a.CreateAccountKey(acc.ID, "k")
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if i == 0 {
			first = k
		}
	}
	if _, err := a.CreateAccountKey(acc.ID, "one too many"); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("key %d: err = %v, want ErrTooManyKeys", MaxAccountKeys+1, err)
	}
	// Revoked keys do not count.
	s.RevokeKey(first.ID)
	if _, err := a.CreateAccountKey(acc.ID, "after a revocation"); err != nil {
		t.Fatal(err)
	}
}

// Keys are never deleted, so all the keys an account ever gets, revoked
// ones included, are bounded: create-and-revoke and rotation loops stop.
func testAccountKeyTotal(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	k, err := a.CreateAccountKey(acc.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for ; n < MaxAccountKeysTotal/2; n++ {
		if k, err = a.RotateKey(k.ID); err != nil {
			t.Fatalf("rotation %d: %v", n, err)
		}
	}
	for ; n < MaxAccountKeysTotal; n++ {
		next, err := a.CreateAccountKey(acc.ID, "k")
		if err != nil {
			t.Fatalf("key %d: %v", n+1, err)
		}
		s.RevokeKey(next.ID)
	}
	if _, err := a.CreateAccountKey(acc.ID, "one too many"); !errors.Is(err, ErrKeysUsedUp) {
		t.Fatalf("key %d: err = %v, want ErrKeysUsedUp", MaxAccountKeysTotal+1, err)
	}
	if _, err := a.RotateKey(k.ID); !errors.Is(err, ErrKeysUsedUp) {
		t.Fatalf("rotation past the bound: err = %v, want ErrKeysUsedUp", err)
	}
	if keys, _ := a.AccountKeys(acc.ID); len(keys) != MaxAccountKeysTotal {
		t.Fatalf("the account has %d keys, want %d", len(keys), MaxAccountKeysTotal)
	}
	// Keys without an account (the operator's) are not bounded this way.
	op := mustCreate(t, s, "operator's")
	if _, err := a.RotateKey(op.ID); err != nil {
		t.Fatal(err)
	}
}

func testAccountSuspend(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	k, _ := a.CreateAccountKey(acc.ID, "k")
	other := mustAccount(t, a, "bob")
	ok, _ := a.CreateAccountKey(other.ID, "k")
	got, err := a.SuspendAccount(acc.ID, true)
	if err != nil || !got.Suspended || got.SuspendedAt.IsZero() {
		t.Fatalf("SuspendAccount = %+v, %v", got, err)
	}
	if key, _ := s.GetKey(k.ID); !key.Suspended {
		t.Fatal("the suspended account's key is not marked")
	}
	if key, _ := s.GetKey(ok.ID); key.Suspended {
		t.Fatal("another account's key was marked")
	}
	if _, err := a.CreateAccountKey(acc.ID, "more"); !errors.Is(err, ErrSuspended) {
		t.Fatalf("CreateAccountKey while suspended: %v", err)
	}
	if _, err := a.RotateKey(k.ID); !errors.Is(err, ErrSuspended) {
		t.Fatalf("RotateKey while suspended: %v", err)
	}
	got, err = a.SuspendAccount(acc.ID, false)
	if err != nil || got.Suspended || !got.SuspendedAt.IsZero() {
		t.Fatalf("reinstate = %+v, %v", got, err)
	}
	if key, _ := s.GetKey(k.ID); key.Suspended {
		t.Fatal("the reinstated account's key is still marked")
	}
}

func testKeyEdits(t *testing.T, s Store, a Accounts) {
	k := mustCreate(t, s, "before")
	if got, err := a.RenameKey(k.ID, "after"); err != nil || got.Name != "after" {
		t.Fatalf("RenameKey = %+v, %v", got, err)
	}
	if _, err := a.RenameKey(k.ID, "bad\nname"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("RenameKey with a newline: %v", err)
	}
	if got, err := a.SetKeyLimit(k.ID, 5); err != nil || got.MaxSessions != 5 {
		t.Fatalf("SetKeyLimit = %+v, %v", got, err)
	}
	if got, _ := s.GetKey(k.ID); got.Name != "after" || got.MaxSessions != 5 {
		t.Fatalf("GetKey after the edits = %+v", got)
	}
	if got, _ := a.SetKeyLimit(k.ID, -3); got.MaxSessions != 0 {
		t.Fatalf("a negative limit is stored as %d", got.MaxSessions)
	}
}

func testKeyRotate(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	old, _ := a.CreateAccountKey(acc.ID, "app")
	a.SetKeyLimit(old.ID, 9)
	nk, err := a.RotateKey(old.ID)
	if err != nil || nk.ID == old.ID || nk.Name != "app" || nk.Account != acc.ID || nk.MaxSessions != 9 || nk.Revoked {
		t.Fatalf("RotateKey = %+v, %v", nk, err)
	}
	if got, _ := s.GetKey(old.ID); !got.Revoked {
		t.Fatal("the rotated key is not revoked")
	}
	if _, err := a.RotateKey(old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotating a revoked key: %v", err)
	}
}

func testHistory(t *testing.T, s Store, a Accounts) {
	k := mustCreate(t, s, "k")
	h := hooksOf(t, s)
	base := time.Date(2030, 5, 6, 10, 0, 0, 0, time.UTC)
	clock := base.Add(15 * time.Minute)
	h.now = func() time.Time { return clock }
	s.AddUsage(map[string]Usage{k.ID: {Connects: 2, Introductions: 1}})
	s.AddUsage(map[string]Usage{k.ID: {Connects: 1, Relays: 4}})
	s.AddUsage(map[string]Usage{k.ID: {Relays: 4}}) // nothing for the history
	clock = base.Add(2*time.Hour + time.Minute)
	s.AddUsage(map[string]Usage{k.ID: {Introductions: 5}})
	got, err := a.UsageHistory(k.ID)
	want := []UsageSample{{Hour: base, Connects: 3, Introductions: 1}, {Hour: base.Add(2 * time.Hour), Introductions: 5}}
	if err != nil || len(got) != 2 || !sameSamples(got, want) {
		t.Fatalf("UsageHistory = %+v, %v; want %+v", got, err, want)
	}
	// A week later the first hour is gone.
	clock = base.Add(HistoryHours*time.Hour + 30*time.Minute)
	got, _ = a.UsageHistory(k.ID)
	if len(got) != 1 || !got[0].Hour.Equal(base.Add(2*time.Hour)) {
		t.Fatalf("UsageHistory a week later = %+v", got)
	}
	s.AddUsage(map[string]Usage{k.ID: {Connects: 1}})
	got, _ = a.UsageHistory(k.ID)
	if len(got) != 2 {
		t.Fatalf("UsageHistory after a new sample = %+v", got)
	}
}

func sameSamples(a, b []UsageSample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Hour.Equal(b[i].Hour) || a[i].Connects != b[i].Connects || a[i].Introductions != b[i].Introductions {
			return false
		}
	}
	return true
}

func testAccountUnknown(t *testing.T, _ Store, a Accounts) {
	const id = "0123456789abcdef"
	const key = "7d8e660a6cbf71bab35a0781-c086fb40c6fb"
	for name, err := range map[string]error{
		"GetAccount":           second(a.GetAccount(id)),
		"GetAccount malformed": second(a.GetAccount("../../etc")),
		"SuspendAccount":       second(a.SuspendAccount(id, true)),
		"CreateAccountKey":     second(a.CreateAccountKey(id, "k")),
		"AccountKeys":          second(a.AccountKeys(id)),
	} {
		if !errors.Is(err, ErrNoAccount) {
			t.Errorf("%s: err = %v, want ErrNoAccount", name, err)
		}
	}
	for name, err := range map[string]error{
		"RenameKey":    second(a.RenameKey(key, "x")),
		"SetKeyLimit":  second(a.SetKeyLimit(key, 1)),
		"RotateKey":    second(a.RotateKey(key)),
		"UsageHistory": second(a.UsageHistory(key)),
		"malformed":    second(a.UsageHistory("nope")),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func testAccountClosed(t *testing.T, s Store, a Accounts) {
	acc := mustAccount(t, a, "ada")
	k, _ := a.CreateAccountKey(acc.ID, "k")
	s.Close()
	for name, err := range map[string]error{
		"CreateAccount":    second(a.CreateAccount("n", "e", []byte("h"))),
		"GetAccount":       second(a.GetAccount(acc.ID)),
		"ListAccounts":     second(a.ListAccounts()),
		"SuspendAccount":   second(a.SuspendAccount(acc.ID, true)),
		"CreateAccountKey": second(a.CreateAccountKey(acc.ID, "k")),
		"AccountKeys":      second(a.AccountKeys(acc.ID)),
		"RenameKey":        second(a.RenameKey(k.ID, "x")),
		"RotateKey":        second(a.RotateKey(k.ID)),
		"UsageHistory":     second(a.UsageHistory(k.ID)),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}
