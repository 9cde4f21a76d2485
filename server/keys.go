package server

import (
	"errors"
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/store"
)

type keyStatus uint8

const (
	keyValid keyStatus = iota
	keyUnknown
	keyRevoked
	keySuspended // its account is suspended
)

// keyCache answers "is this developer key valid" without a database read
// per connect, and batches usage counters into one store write every few
// seconds. Unknown keys are remembered briefly (bounded), so a flood of
// connects with made-up keys cannot hammer the store.
type keyCache struct {
	st   store.Store
	open bool

	mu      sync.Mutex
	known   map[string]keyStatus
	limits  map[string]int // Key.MaxSessions, for keys that have one
	missing map[string]time.Time
	pending map[string]store.Usage
}

const (
	missingTTL = 10 * time.Second
	maxMissing = 100000
)

func newKeyCache(st store.Store, open bool) *keyCache {
	return &keyCache{st: st, open: open, known: map[string]keyStatus{}, limits: map[string]int{}, missing: map[string]time.Time{}, pending: map[string]store.Usage{}}
}

func (k *keyCache) check(id string) keyStatus {
	k.mu.Lock()
	st, ok := k.known[id]
	miss, recent := k.missing[id]
	k.mu.Unlock()
	if ok {
		return st
	}
	if recent && time.Since(miss) < missingTTL {
		if k.open && id != "" {
			return keyValid
		}
		return keyUnknown
	}
	key, err := k.st.GetKey(id)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		return k.remember(key)
	}
	if len(k.missing) >= maxMissing {
		for x := range k.missing { // forget an arbitrary one
			delete(k.missing, x)
			break
		}
	}
	k.missing[id] = time.Now()
	if k.open && id != "" && errors.Is(err, store.ErrNotFound) {
		return keyValid // open mode: any key goes, and is counted
	}
	return keyUnknown
}

// remember caches a key read from the store; k.mu held.
func (k *keyCache) remember(key store.Key) keyStatus {
	st := keyValid
	switch {
	case key.Revoked:
		st = keyRevoked
	case key.Suspended:
		st = keySuspended
	}
	k.known[key.ID] = st
	delete(k.missing, key.ID)
	if key.MaxSessions > 0 {
		k.limits[key.ID] = key.MaxSessions
	} else {
		delete(k.limits, key.ID)
	}
	return st
}

// limit is a key's own connected-session quota, 0 if it has none.
func (k *keyCache) limit(id string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.limits[id]
}

// reload forgets what the cache knows of a key and reads it again.
func (k *keyCache) reload(id string) (keyStatus, error) {
	key, err := k.st.GetKey(id)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		delete(k.known, id)
		delete(k.limits, id)
		delete(k.missing, id)
		return keyUnknown, err
	}
	return k.remember(key), nil
}

// stored reports whether id is a key in the store (not an open-mode key
// made up by a client).
func (k *keyCache) stored(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.known[id]
	return ok
}

// keyLabel is the metrics label for a developer key: keys made up by
// clients in open mode share one label, so they cannot grow the series
// without bound.
func (s *Server) keyLabel(id string) string {
	if id == "" || s.keys.stored(id) {
		return id
	}
	return "unregistered"
}

// set records a key's status after the server changed it.
func (k *keyCache) set(id string, st keyStatus) {
	k.mu.Lock()
	k.known[id] = st
	delete(k.missing, id)
	k.mu.Unlock()
}

func (k *keyCache) usage(id string, u store.Usage) {
	if id == "" {
		return
	}
	k.mu.Lock()
	p := k.pending[id]
	p.Add(u)
	k.pending[id] = p
	k.mu.Unlock()
}

// flush writes pending usage for keys the store knows (open-mode keys that
// were never created are counted in metrics only). A batch the store
// fails to write goes back to pending, to be written with the next one
// (AddUsage applies a batch whole or not at all, so nothing counts twice).
func (k *keyCache) flush() error {
	k.mu.Lock()
	batch := map[string]store.Usage{}
	for id, u := range k.pending {
		if _, ok := k.known[id]; ok {
			if _, isMissing := k.missing[id]; !isMissing {
				batch[id] = u
			}
		}
	}
	k.pending = map[string]store.Usage{}
	k.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := k.st.AddUsage(batch)
	if err != nil {
		k.mu.Lock()
		for id, u := range batch {
			p := k.pending[id]
			p.Add(u)
			k.pending[id] = p
		}
		k.mu.Unlock()
	}
	return err
}

// pendingUsage returns what is not flushed yet for one key.
func (k *keyCache) pendingUsage(id string) store.Usage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pending[id]
}

// CreateKey creates a developer key.
func (s *Server) CreateKey(name string) (store.Key, error) {
	key, err := s.store.CreateKey(name)
	if err == nil {
		s.keys.set(key.ID, keyValid)
	}
	return key, err
}

// RevokeKey revokes a developer key and closes its live sessions with
// NetConnection.Connect.Rejected.
func (s *Server) RevokeKey(id string) (store.Key, error) {
	key, err := s.store.RevokeKey(id)
	if err != nil {
		return key, err
	}
	s.keys.set(id, keyRevoked)
	s.closeKeySessions(id, "developer key revoked")
	return key, nil
}

// KeyChanged tells the server that the store's record of a key changed
// outside it (a key created, renamed, given a session quota, rotated, or
// its account suspended or reinstated, through store.Accounts): the key
// is read again, and the live sessions of a key that is no longer usable
// are closed with NetConnection.Connect.Rejected.
func (s *Server) KeyChanged(id string) error {
	st, err := s.keys.reload(id)
	switch st {
	case keyRevoked:
		s.closeKeySessions(id, "developer key revoked")
	case keySuspended:
		s.closeKeySessions(id, "developer account suspended")
	}
	return err
}

// closeKeySessions refuses the connected clients of a key.
func (s *Server) closeKeySessions(id, why string) {
	// Never call into an engine while holding s.mu: the engine calls
	// allowKeying (which takes s.mu) with its own lock held.
	var live []*client
	for _, e := range s.engineList() {
		for _, sess := range e.Sessions() {
			if c, ok := sess.Value().(*client); ok {
				s.mu.Lock()
				if c.key == id && c.state == connected {
					live = append(live, c)
				}
				s.mu.Unlock()
			}
		}
	}
	for _, c := range live {
		// Client state belongs to the event dispatcher: refuse there.
		c.e.Run(func() { c.refuse(1, "NetConnection.Connect.Rejected", why) })
	}
}

// LiveSessions returns how many clients are connected with a key now (in
// a cluster, on every node, as far as this node knows).
func (s *Server) LiveSessions(key string) int {
	remote := s.dir.RemoteSessions(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perKey[key] + remote
}

// Store is where the server's developer keys, accounts and usage live:
// Config.Store, or in a cluster the cluster's store (keys and accounts
// written to the replicated bucket, read from this node's copy; usage
// summed over the nodes). It implements store.Accounts when Config.Store
// does (always in a cluster).
func (s *Server) Store() store.Store { return s.store }

// Keys lists the developer keys.
func (s *Server) Keys() ([]store.Key, error) { return s.store.ListKeys() }

// FlushUsage writes the usage counters gathered since the last write to
// the store now (the server does every 5 s), so that what the store says
// (store.Accounts.UsageHistory) is up to date. On an error they stay
// pending for the next write.
func (s *Server) FlushUsage() error { return s.flushUsage() }

func (s *Server) flushUsage() error {
	err := s.keys.flush()
	if err != nil {
		s.metrics.usageErrors.Inc()
		s.log.Error("writing usage counters (kept for the next try)", "err", err)
	}
	return err
}

// PendingUsage returns a key's counters gathered since the last write to
// the store: what the store does not say yet. Pages that show usage add
// it to what the store says instead of calling FlushUsage, so that
// reading never costs a database write.
func (s *Server) PendingUsage(id string) store.Usage { return s.keys.pendingUsage(id) }

// KeyUsage returns a key's counters, including what is not yet flushed.
func (s *Server) KeyUsage(id string) (store.Key, store.Usage, error) {
	key, err := s.store.GetKey(id)
	if err != nil {
		return key, store.Usage{}, err
	}
	u, err := s.store.Usage(id)
	u.Add(s.keys.pendingUsage(id))
	return key, u, err
}
