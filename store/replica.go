package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Replica is a Store that can also hold keys and accounts made elsewhere,
// as they are: a cluster node keeps a copy of the cluster's keys and
// accounts in its own store (so that a connect is still one local read),
// while its usage counters stay its own. *Bolt and *Memory implement it.
type Replica interface {
	Store
	Accounts
	// PutKey stores k as it is, new or in place of the key with its ID.
	// Its Suspended field is not taken from k but from its account, as
	// this store knows it.
	PutKey(k Key) error
	// PutAccount stores a as it is, new or in place of the account with
	// its ID, and marks its keys suspended or not as a says.
	PutAccount(a Account) error
}

var (
	_ Replica = (*Bolt)(nil)
	_ Replica = (*Memory)(nil)
)

// NewKey returns a key named name with a fresh random ID and the current
// time, stored nowhere: for a Store that keeps keys elsewhere.
// ErrInvalidName.
func NewKey(name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	id, err := newKeyID()
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Name: name, Created: now()}, nil
}

// NewAccount returns an account with a fresh random ID and the current
// time, stored nowhere. ErrInvalidName.
func NewAccount(name, email string, secretHash []byte) (Account, error) {
	if err := checkAccount(name, email, secretHash); err != nil {
		return Account{}, err
	}
	id, err := newAccountID()
	if err != nil {
		return Account{}, err
	}
	return Account{ID: id, Name: name, Email: email, SecretHash: bytes.Clone(secretHash), Created: now()}, nil
}

// CheckName reports whether name is acceptable for a key (or an account):
// printable UTF-8 of at most MaxNameLen bytes. ErrInvalidName.
func CheckName(name string) error { return checkName(name) }

// CanAddKey says whether an account whose keys are keys may get one more
// (ErrSuspended, ErrTooManyKeys, ErrKeysUsedUp); replacing says that the
// new key replaces an active one (a rotation).
func CanAddKey(a Account, keys []Key, replacing bool) error { return canAddKey(a, keys, replacing) }

// Revoke marks k revoked now, keeping an earlier revocation time.
func Revoke(k *Key) { revoke(k, now()) }

// Suspend suspends or reinstates a, keeping an earlier suspension time.
func Suspend(a *Account, suspended bool) { setSuspended(a, suspended, now()) }

// checkReplicaKey refuses a key whose ID could not have been made here.
func checkReplicaKey(k Key) error {
	if !ValidKeyFormat(k.ID) {
		return fmt.Errorf("%w: malformed key ID %q", ErrNotFound, k.ID)
	}
	return nil
}

// PutKey implements Replica.
func (m *Memory) PutKey(k Key) error {
	if err := checkReplicaKey(k); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	k.Suspended = k.Account != "" && m.accounts[k.Account].Suspended
	if old, ok := m.keys[k.ID]; (!ok || old.Account != k.Account) && k.Account != "" {
		m.owned[k.Account] = append(m.owned[k.Account], k.ID)
	}
	m.keys[k.ID] = k
	return nil
}

// PutAccount implements Replica.
func (m *Memory) PutAccount(a Account) error {
	if !ValidAccountID(a.ID) {
		return fmt.Errorf("%w: malformed account ID %q", ErrNoAccount, a.ID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	a.SecretHash = bytes.Clone(a.SecretHash)
	m.accounts[a.ID] = a
	for _, id := range m.owned[a.ID] {
		k := m.keys[id]
		k.Suspended = a.Suspended
		m.keys[id] = k
	}
	return nil
}

// PutKey implements Replica.
func (b *Bolt) PutKey(k Key) error {
	if err := checkReplicaKey(k); err != nil {
		return err
	}
	if k.Account != "" && !ValidAccountID(k.Account) {
		return fmt.Errorf("%w: malformed account ID %q", ErrNoAccount, k.Account)
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		k.Suspended = false
		if k.Account != "" {
			var a Account
			if err := getAccount(tx, k.Account, &a); err == nil {
				k.Suspended = a.Suspended
			}
			// A key's account never changes: indexing it again is a no-op.
			if err := tx.Bucket(bucketAccountKeys).Put(accountKeyIndex(k.Account, k.ID), nil); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketKeys), k.ID, k)
	})
	return mapErr(err)
}

// PutAccount implements Replica.
func (b *Bolt) PutAccount(a Account) error {
	if !ValidAccountID(a.ID) {
		return fmt.Errorf("%w: malformed account ID %q", ErrNoAccount, a.ID)
	}
	return mapErr(b.db.Update(func(tx *bolt.Tx) error { return putBoltAccount(tx, a) }))
}
