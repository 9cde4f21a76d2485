package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// fileName is the database file inside the data directory.
const fileName = "stratus.db"

// schemaVersion is the layout this code reads and writes; it is stored in
// the meta bucket so that an older binary refuses a file a newer one wrote.
// Version 2 added the accounts and history buckets and the Key fields
// Account, Suspended and MaxSessions; version 3 the account_keys index.
// An older file is upgraded in place, in one transaction, when opened
// (version 1 keys become operator keys; the index is built from the keys).
// Older binaries refuse a newer file: version 1 would let a suspended
// account's keys in, version 2 would make keys the index does not list.
const schemaVersion = 3

// Bucket and meta key names. Values in keys and usage are JSON, so the file
// stays inspectable with bbolt's own tools and fields can be added freely.
var (
	bucketKeys     = []byte("keys")     // ID -> JSON Key
	bucketUsage    = []byte("usage")    // ID -> JSON Usage
	bucketAccounts = []byte("accounts") // account ID -> JSON Account (since version 2)
	bucketHistory  = []byte("history")  // key ID -> JSON []UsageSample (since version 2)
	// account ID + key ID -> empty (since version 3): an account's keys
	// without reading every key. Account IDs have a fixed length, so the
	// account ID is the prefix to seek.
	bucketAccountKeys = []byte("account_keys")
	bucketMeta        = []byte("meta")
	metaSchemaKey     = []byte("schema_version") // decimal ASCII
)

// Bolt is a Store persisted in DIR/stratus.db. bbolt holds an exclusive
// flock on the file for as long as it is open, which is what keeps the CLI
// and the running server from writing the same file.
type Bolt struct {
	db     *bolt.DB
	path   string
	hooks  hooks
	closed atomic.Bool // lets malformed-ID lookups report ErrClosed without a transaction
}

// OpenBolt opens (creating if needed, with directory mode 0700 and file mode
// 0600, since keys are credentials) DIR/stratus.db.
//
// lockTimeout bounds the wait for the file lock; on timeout the error wraps
// ErrLocked. A lockTimeout of zero or less tries once and does not wait
// (bbolt itself would take zero to mean wait forever). bbolt polls the lock
// every 50ms, so the wait is rounded to that.
func OpenBolt(dir string, lockTimeout time.Duration) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("store: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating data directory: %w", err)
	}
	path := filepath.Join(dir, fileName)
	timeout := lockTimeout
	if timeout <= 0 {
		timeout = time.Nanosecond
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked (gave up after %v)", ErrLocked, path, max(lockTimeout, 0))
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	if err := initSchema(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return &Bolt{db: db, path: path, hooks: defaultHooks()}, nil
}

// initSchema checks the schema version and, for a new file, creates the
// buckets, or upgrades an older file. It reads first so that opening an
// up-to-date file writes nothing and a file from a newer version is never
// touched.
func initSchema(db *bolt.DB) error {
	var from uint64
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		from, err = checkSchema(tx)
		return err
	})
	if err != nil || from == schemaVersion {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		// Re-check: the View above and this Update are separate transactions.
		from, err := checkSchema(tx)
		if err != nil || from == schemaVersion {
			return err
		}
		// Version 0 is an empty file; every step adds buckets, so
		// creating the missing ones upgrades any older version, and
		// version 3's index is then built from the keys.
		for _, name := range [][]byte{bucketKeys, bucketUsage, bucketMeta, bucketAccounts, bucketHistory, bucketAccountKeys} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if from < 3 {
			if err := indexAccountKeys(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaSchemaKey, []byte(strconv.Itoa(schemaVersion)))
	})
}

// checkSchema returns the version of the file tx sees (0 for an empty
// file that needs initialising), or an error if the file is not one this
// version can use. A file with buckets but no meta bucket is someone
// else's bbolt database.
func checkSchema(tx *bolt.Tx) (version uint64, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if name, _ := tx.Cursor().First(); name != nil {
			return 0, fmt.Errorf("%w: it has no schema version, so it is not a stratus database", ErrIncompatible)
		}
		return 0, nil
	}
	raw := meta.Get(metaSchemaKey)
	v, err := strconv.ParseUint(string(raw), 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: unreadable schema version %q", ErrIncompatible, raw)
	}
	if v > schemaVersion {
		return 0, fmt.Errorf("%w: schema version %d is newer than the %d this stratus supports; upgrade stratus", ErrIncompatible, v, schemaVersion)
	}
	if tx.Bucket(bucketKeys) == nil || tx.Bucket(bucketUsage) == nil ||
		v >= 2 && (tx.Bucket(bucketAccounts) == nil || tx.Bucket(bucketHistory) == nil) ||
		v >= 3 && tx.Bucket(bucketAccountKeys) == nil {
		return 0, fmt.Errorf("%w: schema version %d but buckets are missing", ErrIncompatible, v)
	}
	return v, nil
}

// Path returns the database file's path, for messages and the CLI.
func (b *Bolt) Path() string { return b.path }

// CreateKey implements Store. The uniqueness check and the write share one
// transaction, so concurrent creators cannot both take the same ID.
func (b *Bolt) CreateKey(name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	var k Key
	err := b.db.Update(func(tx *bolt.Tx) error {
		var err error
		k, err = b.newKey(tx, Key{Name: name})
		return err
	})
	if err != nil {
		return Key{}, mapErr(err)
	}
	return k, nil
}

// newKey stores k with a fresh ID and creation time in tx.
func (b *Bolt) newKey(tx *bolt.Tx, k Key) (Key, error) {
	keys := tx.Bucket(bucketKeys)
	id, err := b.hooks.uniqueID(func(id string) bool {
		return keys.Get([]byte(id)) != nil
	})
	if err != nil {
		return Key{}, err
	}
	k.ID, k.Created = id, b.hooks.now()
	if k.Account != "" {
		if err := tx.Bucket(bucketAccountKeys).Put(accountKeyIndex(k.Account, id), nil); err != nil {
			return Key{}, err
		}
	}
	return k, putJSON(keys, id, k)
}

// GetKey implements Store. Malformed IDs are answered without a transaction.
func (b *Bolt) GetKey(id string) (Key, error) {
	if !ValidKeyFormat(id) {
		return Key{}, b.refuse(ErrNotFound)
	}
	var k Key
	err := b.db.View(func(tx *bolt.Tx) error {
		return getKey(tx, id, &k)
	})
	if err != nil {
		return Key{}, mapErr(err)
	}
	return k, nil
}

// ListKeys implements Store.
func (b *Bolt) ListKeys() ([]Key, error) {
	var keys []Key
	err := b.db.View(func(tx *bolt.Tx) error {
		keys = []Key{} // an empty list, not null, in JSON
		return tx.Bucket(bucketKeys).ForEach(func(id, v []byte) error {
			var k Key
			if err := json.Unmarshal(v, &k); err != nil {
				return fmt.Errorf("store: decoding key %s: %w", id, err)
			}
			keys = append(keys, k)
			return nil
		})
	})
	if err != nil {
		return nil, mapErr(err)
	}
	sortKeys(keys)
	return keys, nil
}

// RevokeKey implements Store.
func (b *Bolt) RevokeKey(id string) (Key, error) {
	return b.updateKey(id, func(k *Key) error {
		revoke(k, b.hooks.now())
		return nil
	})
}

// updateKey applies fn to a stored key in one transaction. Malformed IDs
// are answered without a transaction.
func (b *Bolt) updateKey(id string, fn func(*Key) error) (Key, error) {
	if !ValidKeyFormat(id) {
		return Key{}, b.refuse(ErrNotFound)
	}
	var k Key
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := getKey(tx, id, &k); err != nil {
			return err
		}
		before := k
		if err := fn(&k); err != nil || k == before {
			return err
		}
		return putJSON(tx.Bucket(bucketKeys), id, k)
	})
	if err != nil {
		return Key{}, mapErr(err)
	}
	return k, nil
}

// AddUsage implements Store. Each call is one fsync'd transaction however
// many keys it touches, which is why the server batches.
func (b *Bolt) AddUsage(batch map[string]Usage) error {
	if len(batch) == 0 {
		return b.checkOpen()
	}
	now := b.hooks.now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		keys, usage := tx.Bucket(bucketKeys), tx.Bucket(bucketUsage)
		for id, d := range batch {
			if d.IsZero() || keys.Get([]byte(id)) == nil {
				continue
			}
			var u Usage
			if v := usage.Get([]byte(id)); v != nil {
				if err := json.Unmarshal(v, &u); err != nil {
					return fmt.Errorf("store: decoding usage of %s: %w", id, err)
				}
			}
			u.Add(d)
			if err := putJSON(usage, id, u); err != nil {
				return err
			}
			if err := addBoltHistory(tx, id, now, d); err != nil {
				return err
			}
		}
		return nil
	})
	return mapErr(err)
}

// Usage implements Store.
func (b *Bolt) Usage(id string) (Usage, error) {
	if !ValidKeyFormat(id) {
		return Usage{}, b.refuse(ErrNotFound)
	}
	var u Usage
	err := b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(id)) == nil {
			return ErrNotFound
		}
		v := tx.Bucket(bucketUsage).Get([]byte(id))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("store: decoding usage of %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Usage{}, mapErr(err)
	}
	return u, nil
}

// Close implements Store; it releases the file lock.
func (b *Bolt) Close() error {
	b.closed.Store(true)
	return b.db.Close()
}

// refuse answers a malformed ID without a transaction: ErrClosed after
// Close, else notFound.
func (b *Bolt) refuse(notFound error) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	return notFound
}

// checkOpen gives paths that skip the database the same ErrClosed as the
// rest. Operations racing with Close get it from bbolt, via mapErr.
func (b *Bolt) checkOpen() error {
	if b.closed.Load() {
		return ErrClosed
	}
	return nil
}

// getKey decodes id's Key into k, or returns ErrNotFound.
func getKey(tx *bolt.Tx, id string, k *Key) error {
	v := tx.Bucket(bucketKeys).Get([]byte(id))
	if v == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(v, k); err != nil {
		return fmt.Errorf("store: decoding key %s: %w", id, err)
	}
	return nil
}

func putJSON(bk *bolt.Bucket, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bk.Put([]byte(id), data)
}

// mapErr turns bbolt's closed-database error into ErrClosed so that callers
// need only this package's sentinels.
func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
