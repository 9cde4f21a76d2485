package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-rtmfp/stratus/store"
)

// The cluster's developer keys and accounts live in one JetStream
// key-value bucket, replicated on Replicas servers: the single source of
// truth. Every node watches the bucket and copies each change into its own
// store (store.Replica), so that a connect reads a local copy and a node
// cut off from NATS keeps checking keys with what it last knew. Writes go
// to the bucket (compare-and-set on the entry's revision where they modify
// one), then to the local copy; the other nodes see them through their
// watch within milliseconds.
//
// Entries (values signed like cluster messages, JSON inside):
//
//	key.ID               a store.Key (its Suspended field follows its account)
//	acct.ID              a store.Account
//	usage.ID.NODE        NODE's own cumulative usage of key ID (usage.go)
//	usage.ID.NODE.N      an earlier data directory's counters of NODE, kept

// ErrUnavailable: the cluster's key store cannot be reached now (no
// JetStream quorum, NATS down); reads still answer from the local copy.
var ErrUnavailable = errors.New("cluster: the cluster's key store is unavailable")

type keyStore struct {
	n      *Node
	r      store.Replica
	bucket string

	mu      sync.Mutex
	kv      jetstream.KeyValue // nil until the bucket answers
	lastErr error
	revs    map[string]uint64               // entry name -> revision in the local copy
	others  map[string]map[string]nodeUsage // key ID -> entry name -> other nodes' usage
	dirty   map[string]bool                 // keys whose usage this node must push
	pushed  map[string]bool                 // keys whose entry this node checked since it started

	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
}

var _ StoreAccounts = (*keyStore)(nil)

func newKeyStore(n *Node) *keyStore {
	return &keyStore{n: n, r: n.cfg.Replica, bucket: "stratus_" + n.cfg.ClusterName + "_keys",
		revs: map[string]uint64{}, others: map[string]map[string]nodeUsage{}, dirty: map[string]bool{}, pushed: map[string]bool{},
		stopCh: make(chan struct{}), done: make(chan struct{}), lastErr: errors.New("connecting")}
}

// opTimeout bounds each JetStream call; callers retry.
const opTimeout = 2 * time.Second

// run binds the bucket (retrying until JetStream has a leader and enough
// servers), adds the local keys the bucket lacks, then follows the bucket
// and pushes this node's usage, for as long as the node runs.
func (ks *keyStore) run() {
	defer ks.n.wg.Done()
	defer close(ks.done)
	js, err := jetstream.New(ks.n.nc)
	if err != nil {
		ks.setErr(err)
		return
	}
	backoff := 100 * time.Millisecond
	var kv jetstream.KeyValue
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ks.bucket, History: 1,
			Replicas: ks.n.cfg.Replicas, Storage: jetstream.FileStorage, Description: "Stratus developer keys, accounts and usage"})
		cancel()
		if err == nil {
			break
		}
		ks.setErr(err)
		if strings.Contains(err.Error(), "insufficient resources") {
			ks.n.log.Warn("cluster: not enough JetStream servers for the key store yet", "replicas", ks.n.cfg.Replicas, "err", err)
		}
		select {
		case <-ks.stopCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	ks.mu.Lock()
	ks.kv, ks.lastErr = kv, nil
	ks.mu.Unlock()
	ks.n.log.Info("cluster: key store ready", "bucket", ks.bucket, "replicas", ks.n.cfg.Replicas)
	ks.importLocal()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		w, err := kv.WatchAll(context.Background())
		if err != nil {
			ks.setErr(err)
			select {
			case <-ks.stopCh:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		ks.setErr(nil)
		stopped := ks.follow(w, tick.C)
		w.Stop()
		if stopped {
			return
		}
	}
}

// follow applies the bucket's changes and pushes usage every tick, until
// the node stops (true) or the watch ends (false, to be restarted).
func (ks *keyStore) follow(w jetstream.KeyWatcher, tick <-chan time.Time) bool {
	for {
		select {
		case <-ks.stopCh:
			ks.pushUsage() // the last batch, on a graceful stop
			return true
		case e, ok := <-w.Updates():
			if !ok {
				return false
			}
			if e != nil {
				ks.apply(e)
			}
		case <-tick:
			ks.pushUsage()
		}
	}
}

// stop ends run; with push, the usage counters are pushed first.
func (ks *keyStore) stop(push bool) {
	ks.once.Do(func() {
		if !push {
			ks.mu.Lock()
			ks.dirty = map[string]bool{}
			ks.mu.Unlock()
		}
		close(ks.stopCh)
	})
	<-ks.done
}

func (ks *keyStore) setErr(err error) {
	ks.mu.Lock()
	ks.lastErr = err
	ks.mu.Unlock()
}

// status reports whether the bucket answers.
func (ks *keyStore) status() (bool, string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.kv == nil || ks.lastErr != nil {
		msg := "unknown"
		if ks.lastErr != nil {
			msg = ks.lastErr.Error()
		}
		return false, msg
	}
	return true, ""
}

// signed values: an HMAC over the entry name and the JSON.
func (ks *keyStore) seal(name string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(ks.valueMAC(name, data), data...), nil
}

func (ks *keyStore) valueMAC(name string, data []byte) []byte {
	m := hmac.New(sha256.New, ks.n.macKey)
	m.Write([]byte("kv:" + name))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

func (ks *keyStore) unseal(name string, value []byte, v any) error {
	if len(value) < macLen || !hmac.Equal(value[:macLen], ks.valueMAC(name, value[macLen:])) {
		return errMAC
	}
	if err := json.Unmarshal(value[macLen:], v); err != nil {
		return fmt.Errorf("%w: %v", errMalform, err)
	}
	return nil
}

// apply copies one change of the bucket into the local copy.
func (ks *keyStore) apply(e jetstream.KeyValueEntry) {
	name := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		return // keys and accounts are never deleted
	}
	ks.mu.Lock()
	if ks.revs[name] >= e.Revision() {
		ks.mu.Unlock()
		return // written by this node, applied already
	}
	ks.revs[name] = e.Revision()
	ks.mu.Unlock()
	kind, rest, _ := strings.Cut(name, ".")
	var err error
	switch kind {
	case "key":
		var k store.Key
		if err = ks.unseal(name, e.Value(), &k); err == nil && k.ID == rest {
			if err = ks.r.PutKey(k); err == nil {
				ks.n.h.KeyChanged(k.ID)
			}
		}
	case "acct":
		var a store.Account
		if err = ks.unseal(name, e.Value(), &a); err == nil && a.ID == rest {
			if err = ks.r.PutAccount(a); err == nil {
				keys, _ := ks.r.AccountKeys(a.ID)
				for _, k := range keys {
					ks.n.h.KeyChanged(k.ID)
				}
			}
		}
	case "usage":
		err = ks.applyUsage(name, rest, e.Value())
	default:
		err = errMalform
	}
	if err != nil {
		ks.n.drop("malformed", err)
		ks.n.log.Warn("cluster: key store entry ignored", "entry", name, "err", err)
	}
}

// bind returns the bucket, or ErrUnavailable.
func (ks *keyStore) bind() (jetstream.KeyValue, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.kv == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ks.lastErr)
	}
	return ks.kv, nil
}

// applied records that the local copy holds revision rev of name.
func (ks *keyStore) applied(name string, rev uint64) {
	ks.mu.Lock()
	if rev > ks.revs[name] {
		ks.revs[name] = rev
	}
	ks.mu.Unlock()
}

// wrapErr turns NATS errors into ErrUnavailable, keeping the store's own.
func wrapErr(err error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoAccount) || errors.Is(err, store.ErrSuspended) ||
		errors.Is(err, store.ErrTooManyKeys) || errors.Is(err, store.ErrKeysUsedUp) || errors.Is(err, store.ErrInvalidName) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// createKey adds a new key to the bucket and the local copy, drawing
// another ID in the (theoretical) case of a collision.
func (ks *keyStore) createKey(newKey func() (store.Key, error)) (store.Key, error) {
	kv, err := ks.bind()
	if err != nil {
		return store.Key{}, err
	}
	for range 4 {
		k, err := newKey()
		if err != nil {
			return store.Key{}, err
		}
		name := "key." + k.ID
		data, err := ks.seal(name, k)
		if err != nil {
			return store.Key{}, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		rev, err := kv.Create(ctx, name, data)
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return store.Key{}, wrapErr(err)
		}
		if err := ks.r.PutKey(k); err != nil {
			return store.Key{}, err
		}
		ks.applied(name, rev)
		return ks.r.GetKey(k.ID)
	}
	return store.Key{}, errors.New("cluster: no unused key ID")
}

// update changes one entry with compare-and-set, retrying when another
// node changed it meanwhile; fn gets the current value and returns the
// new one (or an error to give up with).
func update[T any](ks *keyStore, name string, missing error, fn func(*T) error, put func(T) error) (T, error) {
	var v T
	kv, err := ks.bind()
	if err != nil {
		return v, err
	}
	for range 16 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		e, err := kv.Get(ctx, name)
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return v, missing
		}
		if err != nil {
			return v, wrapErr(err)
		}
		v = *new(T)
		if err := ks.unseal(name, e.Value(), &v); err != nil {
			return v, err
		}
		if err := fn(&v); err != nil {
			return v, err
		}
		data, err := ks.seal(name, v)
		if err != nil {
			return v, err
		}
		ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
		rev, err := kv.Update(ctx, name, data, e.Revision())
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return v, wrapErr(err)
		}
		if err := put(v); err != nil {
			return v, err
		}
		ks.applied(name, rev)
		return v, nil
	}
	return v, fmt.Errorf("%w: %s keeps changing", ErrUnavailable, name)
}

func (ks *keyStore) updateKey(id string, fn func(*store.Key) error) (store.Key, error) {
	if !store.ValidKeyFormat(id) {
		return store.Key{}, store.ErrNotFound
	}
	if _, err := update(ks, "key."+id, store.ErrNotFound, fn, ks.r.PutKey); err != nil {
		return store.Key{}, err
	}
	return ks.r.GetKey(id)
}

// CreateKey implements store.Store.
func (ks *keyStore) CreateKey(name string) (store.Key, error) {
	return ks.createKey(func() (store.Key, error) { return store.NewKey(name) })
}

// GetKey implements store.Store: the local copy.
func (ks *keyStore) GetKey(id string) (store.Key, error) { return ks.r.GetKey(id) }

// ListKeys implements store.Store: the local copy.
func (ks *keyStore) ListKeys() ([]store.Key, error) { return ks.r.ListKeys() }

// RevokeKey implements store.Store.
func (ks *keyStore) RevokeKey(id string) (store.Key, error) {
	return ks.updateKey(id, func(k *store.Key) error { store.Revoke(k); return nil })
}

// Close implements store.Store; the local copy belongs to its opener.
func (ks *keyStore) Close() error { return nil }

// CreateAccount implements store.Accounts.
func (ks *keyStore) CreateAccount(name, email string, secretHash []byte) (store.Account, error) {
	kv, err := ks.bind()
	if err != nil {
		return store.Account{}, err
	}
	for range 4 {
		a, err := store.NewAccount(name, email, secretHash)
		if err != nil {
			return store.Account{}, err
		}
		entry := "acct." + a.ID
		data, err := ks.seal(entry, a)
		if err != nil {
			return store.Account{}, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		rev, err := kv.Create(ctx, entry, data)
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return store.Account{}, wrapErr(err)
		}
		if err := ks.r.PutAccount(a); err != nil {
			return store.Account{}, err
		}
		ks.applied(entry, rev)
		return a, nil
	}
	return store.Account{}, errors.New("cluster: no unused account ID")
}

// GetAccount implements store.Accounts.
func (ks *keyStore) GetAccount(id string) (store.Account, error) { return ks.r.GetAccount(id) }

// ListAccounts implements store.Accounts.
func (ks *keyStore) ListAccounts() ([]store.Account, error) { return ks.r.ListAccounts() }

// SuspendAccount implements store.Accounts. The account's keys follow it
// on every node as its entry changes: one write, whatever their number.
func (ks *keyStore) SuspendAccount(id string, suspended bool) (store.Account, error) {
	if !store.ValidAccountID(id) {
		return store.Account{}, store.ErrNoAccount
	}
	return update(ks, "acct."+id, store.ErrNoAccount, func(a *store.Account) error { store.Suspend(a, suspended); return nil }, ks.r.PutAccount)
}

// CreateAccountKey implements store.Accounts. Two nodes creating keys for
// one account at the same moment can both pass the per-account limit
// check (the count is of the local copy).
func (ks *keyStore) CreateAccountKey(account, name string) (store.Key, error) {
	if err := store.CheckName(name); err != nil {
		return store.Key{}, err
	}
	a, err := ks.r.GetAccount(account)
	if err != nil {
		return store.Key{}, err
	}
	keys, err := ks.r.AccountKeys(account)
	if err != nil {
		return store.Key{}, err
	}
	if err := store.CanAddKey(a, keys, false); err != nil {
		return store.Key{}, err
	}
	return ks.createKey(func() (store.Key, error) {
		k, err := store.NewKey(name)
		k.Account = account
		return k, err
	})
}

// AccountKeys implements store.Accounts.
func (ks *keyStore) AccountKeys(account string) ([]store.Key, error) {
	return ks.r.AccountKeys(account)
}

// RenameKey implements store.Accounts.
func (ks *keyStore) RenameKey(id, name string) (store.Key, error) {
	if err := store.CheckName(name); err != nil {
		return store.Key{}, err
	}
	return ks.updateKey(id, func(k *store.Key) error { k.Name = name; return nil })
}

// SetKeyLimit implements store.Accounts.
func (ks *keyStore) SetKeyLimit(id string, maxSessions int) (store.Key, error) {
	return ks.updateKey(id, func(k *store.Key) error { k.MaxSessions = max(maxSessions, 0); return nil })
}

// RotateKey implements store.Accounts: the new key is created first, then
// the old one revoked, so a failure in between leaves both usable (never
// neither); calling it again revokes the old one.
func (ks *keyStore) RotateKey(id string) (store.Key, error) {
	old, err := ks.r.GetKey(id)
	if err != nil {
		return store.Key{}, err
	}
	if old.Revoked {
		return store.Key{}, store.ErrNotFound
	}
	if old.Suspended {
		return store.Key{}, store.ErrSuspended
	}
	if old.Account != "" {
		a, err := ks.r.GetAccount(old.Account)
		if err != nil {
			return store.Key{}, err
		}
		keys, err := ks.r.AccountKeys(old.Account)
		if err != nil {
			return store.Key{}, err
		}
		if err := store.CanAddKey(a, keys, true); err != nil {
			return store.Key{}, err
		}
	}
	nk, err := ks.createKey(func() (store.Key, error) {
		k, err := store.NewKey(old.Name)
		k.Account, k.MaxSessions = old.Account, old.MaxSessions
		return k, err
	})
	if err != nil {
		return store.Key{}, err
	}
	if _, err := ks.RevokeKey(id); err != nil {
		return store.Key{}, err
	}
	return nk, nil
}

// importLocal adds to the bucket the keys and accounts of the local store
// that it lacks: a single server's data directory becomes the cluster's
// when it first joins (and a node's keys survive a bucket that was lost).
func (ks *keyStore) importLocal() {
	kv, err := ks.bind()
	if err != nil {
		return
	}
	create := func(name string, v any) {
		data, err := ks.seal(name, v)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := kv.Create(ctx, name, data); err == nil {
			ks.n.log.Info("cluster: added a local record to the cluster's key store", "entry", name)
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			ks.n.log.Warn("cluster: cannot add a local record to the key store", "entry", name, "err", err)
		}
	}
	accounts, _ := ks.r.ListAccounts()
	for _, a := range accounts {
		create("acct."+a.ID, a)
	}
	keys, _ := ks.r.ListKeys()
	for _, k := range keys {
		k.Suspended = false // follows the account
		create("key."+k.ID, k)
		ks.mu.Lock()
		ks.dirty[k.ID] = true // push this node's counters (they may predate the cluster)
		ks.mu.Unlock()
	}
}
