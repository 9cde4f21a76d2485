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
	missing map[string]time.Time
	pending map[string]store.Usage
}

const (
	missingTTL = 10 * time.Second
	maxMissing = 100000
)

func newKeyCache(st store.Store, open bool) *keyCache {
	return &keyCache{st: st, open: open, known: map[string]keyStatus{}, missing: map[string]time.Time{}, pending: map[string]store.Usage{}}
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
	switch {
	case err == nil && key.Revoked:
		k.known[id] = keyRevoked
		return keyRevoked
	case err == nil:
		k.known[id] = keyValid
		return keyValid
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
// were never created are counted in metrics only).
func (k *keyCache) flush() {
	k.mu.Lock()
	batch := map[string]store.Usage{}
	for id, u := range k.pending {
		if k.known[id] == keyValid || k.known[id] == keyRevoked {
			if _, isMissing := k.missing[id]; !isMissing {
				batch[id] = u
			}
		}
	}
	k.pending = map[string]store.Usage{}
	k.mu.Unlock()
	if len(batch) > 0 {
		_ = k.st.AddUsage(batch)
	}
}

// pendingUsage returns what is not flushed yet for one key.
func (k *keyCache) pendingUsage(id string) store.Usage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pending[id]
}

// CreateKey creates a developer key.
func (s *Server) CreateKey(name string) (store.Key, error) {
	key, err := s.cfg.Store.CreateKey(name)
	if err == nil {
		s.keys.set(key.ID, keyValid)
	}
	return key, err
}

// RevokeKey revokes a developer key and closes its live sessions with
// NetConnection.Connect.Rejected.
func (s *Server) RevokeKey(id string) (store.Key, error) {
	key, err := s.cfg.Store.RevokeKey(id)
	if err != nil {
		return key, err
	}
	s.keys.set(id, keyRevoked)
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
		c.e.Run(func() { c.refuse(1, "NetConnection.Connect.Rejected", "developer key revoked") })
	}
	return key, nil
}

// Keys lists the developer keys.
func (s *Server) Keys() ([]store.Key, error) { return s.cfg.Store.ListKeys() }

// KeyUsage returns a key's counters, including what is not yet flushed.
func (s *Server) KeyUsage(id string) (store.Key, store.Usage, error) {
	key, err := s.cfg.Store.GetKey(id)
	if err != nil {
		return key, store.Usage{}, err
	}
	u, err := s.cfg.Store.Usage(id)
	u.Add(s.keys.pendingUsage(id))
	return key, u, err
}
