package store

import (
	"errors"
	"testing"
)

// A replica holds keys and accounts made elsewhere exactly as they were
// made, takes a key's suspension from its account whichever arrives first,
// and keeps its own usage for them.
func TestReplica(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			r := impl.open(t).(Replica)
			acct, err := NewAccount("ada", "ada@example.com", []byte("hash"))
			if err != nil {
				t.Fatal(err)
			}
			k, err := NewKey("made elsewhere")
			if err != nil || !ValidKeyFormat(k.ID) || k.Created.IsZero() {
				t.Fatalf("NewKey = %+v, %v", k, err)
			}
			k.Account, k.MaxSessions = acct.ID, 7
			// The key comes before its account, claiming a suspension the
			// replica does not know of: not suspended.
			k.Suspended = true
			if err := r.PutKey(k); err != nil {
				t.Fatal(err)
			}
			got, err := r.GetKey(k.ID)
			if err != nil || got.Suspended || got.MaxSessions != 7 || got.Name != k.Name || !got.Created.Equal(k.Created) {
				t.Fatalf("GetKey = %+v, %v", got, err)
			}
			Suspend(&acct, true)
			if err := r.PutAccount(acct); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.GetKey(k.ID); !got.Suspended {
				t.Fatal("the account's suspension did not reach its key")
			}
			if got, err := r.GetAccount(acct.ID); err != nil || !got.Suspended || got.SuspendedAt.IsZero() {
				t.Fatalf("GetAccount = %+v, %v", got, err)
			}
			// A new version of the key keeps the account's suspension.
			Revoke(&k)
			k.Suspended = false
			if err := r.PutKey(k); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.GetKey(k.ID); !got.Suspended || !got.Revoked {
				t.Fatalf("after PutKey: %+v", got)
			}
			if err := r.AddUsage(map[string]Usage{k.ID: {Connects: 2}}); err != nil {
				t.Fatal(err)
			}
			if u, _ := r.Usage(k.ID); u.Connects != 2 {
				t.Fatalf("usage %+v", u)
			}
			if err := r.PutKey(Key{ID: "nope"}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("malformed key ID: %v", err)
			}
			if err := r.PutAccount(Account{ID: "nope"}); !errors.Is(err, ErrNoAccount) {
				t.Fatalf("malformed account ID: %v", err)
			}
			if _, err := NewKey("\x00"); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("NewKey with a control character: %v", err)
			}
		})
	}
}
