package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CreateAccount implements Accounts.
func (b *Bolt) CreateAccount(name, email string, secretHash []byte) (Account, error) {
	if err := checkAccount(name, email, secretHash); err != nil {
		return Account{}, err
	}
	var a Account
	err := b.db.Update(func(tx *bolt.Tx) error {
		accounts := tx.Bucket(bucketAccounts)
		for range maxIDAttempts {
			id, err := newAccountID()
			if err != nil {
				return err
			}
			if accounts.Get([]byte(id)) != nil {
				continue
			}
			a = Account{ID: id, Name: name, Email: email, SecretHash: bytes.Clone(secretHash), Created: b.hooks.now()}
			return putJSON(accounts, id, a)
		}
		return errNoAccountID
	})
	if err != nil {
		return Account{}, mapErr(err)
	}
	return a, nil
}

// getAccount decodes an account in tx, or returns ErrNoAccount.
func getAccount(tx *bolt.Tx, id string, a *Account) error {
	v := tx.Bucket(bucketAccounts).Get([]byte(id))
	if v == nil {
		return ErrNoAccount
	}
	if err := json.Unmarshal(v, a); err != nil {
		return fmt.Errorf("store: decoding account %s: %w", id, err)
	}
	return nil
}

// GetAccount implements Accounts.
func (b *Bolt) GetAccount(id string) (Account, error) {
	if !ValidAccountID(id) {
		return Account{}, b.refuse(ErrNoAccount)
	}
	var a Account
	err := b.db.View(func(tx *bolt.Tx) error { return getAccount(tx, id, &a) })
	if err != nil {
		return Account{}, mapErr(err)
	}
	return a, nil
}

// ListAccounts implements Accounts.
func (b *Bolt) ListAccounts() ([]Account, error) {
	out := []Account{}
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(id, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("store: decoding account %s: %w", id, err)
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, mapErr(err)
	}
	sortAccounts(out)
	return out, nil
}

// SuspendAccount implements Accounts.
func (b *Bolt) SuspendAccount(id string, suspended bool) (Account, error) {
	if !ValidAccountID(id) {
		return Account{}, b.refuse(ErrNoAccount)
	}
	var a Account
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := getAccount(tx, id, &a); err != nil {
			return err
		}
		setSuspended(&a, suspended, b.hooks.now())
		return putBoltAccount(tx, a)
	})
	if err != nil {
		return Account{}, mapErr(err)
	}
	return a, nil
}

// putBoltAccount stores a and marks its keys suspended or not as a is.
func putBoltAccount(tx *bolt.Tx, a Account) error {
	if err := putJSON(tx.Bucket(bucketAccounts), a.ID, a); err != nil {
		return err
	}
	keys, err := boltAccountKeys(tx, a.ID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Suspended != a.Suspended {
			k.Suspended = a.Suspended
			if err := putJSON(tx.Bucket(bucketKeys), k.ID, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// boltAccountKeys lists an account's keys through the account_keys
// index: it reads that account's keys only (at most MaxAccountKeysTotal).
func boltAccountKeys(tx *bolt.Tx, account string) ([]Key, error) {
	out := []Key{}
	prefix := []byte(account)
	c := tx.Bucket(bucketAccountKeys).Cursor()
	for ik, _ := c.Seek(prefix); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = c.Next() {
		var k Key
		if err := getKey(tx, string(ik[len(prefix):]), &k); err != nil {
			return nil, fmt.Errorf("store: account %s's key index: %w", account, err)
		}
		out = append(out, k)
	}
	sortKeys(out)
	return out, nil
}

// accountKeyIndex is a key's entry in the account_keys bucket.
func accountKeyIndex(account, key string) []byte { return []byte(account + key) }

// indexAccountKeys builds the account_keys index from the keys bucket
// (the upgrade to version 3).
func indexAccountKeys(tx *bolt.Tx) error {
	index := tx.Bucket(bucketAccountKeys)
	return tx.Bucket(bucketKeys).ForEach(func(id, v []byte) error {
		var k Key
		if err := json.Unmarshal(v, &k); err != nil {
			return fmt.Errorf("store: decoding key %s: %w", id, err)
		}
		if k.Account == "" {
			return nil
		}
		if !ValidAccountID(k.Account) {
			return fmt.Errorf("store: key %s has a malformed account ID %q", id, k.Account)
		}
		return index.Put(accountKeyIndex(k.Account, string(id)), nil)
	})
}

// CreateAccountKey implements Accounts.
func (b *Bolt) CreateAccountKey(account, name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	if !ValidAccountID(account) {
		return Key{}, b.refuse(ErrNoAccount)
	}
	var k Key
	err := b.db.Update(func(tx *bolt.Tx) error {
		var a Account
		if err := getAccount(tx, account, &a); err != nil {
			return err
		}
		keys, err := boltAccountKeys(tx, account)
		if err != nil {
			return err
		}
		if err := canAddKey(a, keys, false); err != nil {
			return err
		}
		k, err = b.newKey(tx, Key{Name: name, Account: account})
		return err
	})
	if err != nil {
		return Key{}, mapErr(err)
	}
	return k, nil
}

// AccountKeys implements Accounts.
func (b *Bolt) AccountKeys(account string) ([]Key, error) {
	if !ValidAccountID(account) {
		return nil, b.refuse(ErrNoAccount)
	}
	var keys []Key
	err := b.db.View(func(tx *bolt.Tx) error {
		var a Account
		if err := getAccount(tx, account, &a); err != nil {
			return err
		}
		var err error
		keys, err = boltAccountKeys(tx, account)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return keys, nil
}

// RenameKey implements Accounts.
func (b *Bolt) RenameKey(id, name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	return b.updateKey(id, func(k *Key) error { k.Name = name; return nil })
}

// SetKeyLimit implements Accounts.
func (b *Bolt) SetKeyLimit(id string, maxSessions int) (Key, error) {
	return b.updateKey(id, func(k *Key) error { k.MaxSessions = max(maxSessions, 0); return nil })
}

// RotateKey implements Accounts.
func (b *Bolt) RotateKey(id string) (Key, error) {
	if !ValidKeyFormat(id) {
		return Key{}, b.refuse(ErrNotFound)
	}
	var nk Key
	err := b.db.Update(func(tx *bolt.Tx) error {
		var old Key
		if err := getKey(tx, id, &old); err != nil {
			return err
		}
		if old.Revoked {
			return ErrNotFound
		}
		if old.Suspended {
			return ErrSuspended
		}
		if old.Account != "" {
			var a Account
			if err := getAccount(tx, old.Account, &a); err != nil {
				return err
			}
			keys, err := boltAccountKeys(tx, old.Account)
			if err != nil {
				return err
			}
			if err := canAddKey(a, keys, true); err != nil {
				return err
			}
		}
		var err error
		if nk, err = b.newKey(tx, Key{Name: old.Name, Account: old.Account, MaxSessions: old.MaxSessions}); err != nil {
			return err
		}
		revoke(&old, nk.Created)
		return putJSON(tx.Bucket(bucketKeys), id, old)
	})
	if err != nil {
		return Key{}, mapErr(err)
	}
	return nk, nil
}

// UsageHistory implements Accounts.
func (b *Bolt) UsageHistory(id string) ([]UsageSample, error) {
	if !ValidKeyFormat(id) {
		return nil, b.refuse(ErrNotFound)
	}
	var h []UsageSample
	err := b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(id)) == nil {
			return ErrNotFound
		}
		var err error
		h, err = getHistory(tx, id)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return recentHistory(h, b.hooks.now()), nil
}

func getHistory(tx *bolt.Tx, id string) ([]UsageSample, error) {
	var h []UsageSample
	if v := tx.Bucket(bucketHistory).Get([]byte(id)); v != nil {
		if err := json.Unmarshal(v, &h); err != nil {
			return nil, fmt.Errorf("store: decoding history of %s: %w", id, err)
		}
	}
	return h, nil
}

// addBoltHistory records a usage delta in the key's hourly history.
func addBoltHistory(tx *bolt.Tx, id string, now time.Time, d Usage) error {
	if d.Connects == 0 && d.Introductions == 0 {
		return nil
	}
	h, err := getHistory(tx, id)
	if err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketHistory), id, addHistory(h, now, d))
}
