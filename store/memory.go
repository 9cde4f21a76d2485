package store

import "sync"

// Memory is a Store held in maps, for tests and for running without a disk.
// It behaves like Bolt except that nothing survives the process. A read-write
// mutex keeps GetKey, the hot path, from serialising behind other readers.
type Memory struct {
	mu       sync.RWMutex
	keys     map[string]Key
	usage    map[string]Usage
	history  map[string][]UsageSample
	accounts map[string]Account
	owned    map[string][]string // account ID -> its key IDs
	closed   bool
	hooks    hooks
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{
		keys:     make(map[string]Key),
		usage:    make(map[string]Usage),
		history:  make(map[string][]UsageSample),
		accounts: make(map[string]Account),
		owned:    make(map[string][]string),
		hooks:    defaultHooks(),
	}
}

// CreateKey implements Store.
func (m *Memory) CreateKey(name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	return m.newKey(Key{Name: name})
}

// newKey stores k with a fresh ID and creation time; m.mu held.
func (m *Memory) newKey(k Key) (Key, error) {
	id, err := m.hooks.uniqueID(func(id string) bool {
		_, ok := m.keys[id]
		return ok
	})
	if err != nil {
		return Key{}, err
	}
	k.ID, k.Created = id, m.hooks.now()
	m.keys[id] = k
	if k.Account != "" {
		m.owned[k.Account] = append(m.owned[k.Account], id)
	}
	return k, nil
}

// GetKey implements Store.
func (m *Memory) GetKey(id string) (Key, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	k, ok := m.keys[id]
	if !ok {
		return Key{}, ErrNotFound
	}
	return k, nil
}

// ListKeys implements Store.
func (m *Memory) ListKeys() ([]Key, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	keys := make([]Key, 0, len(m.keys))
	for _, k := range m.keys {
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys, nil
}

// RevokeKey implements Store.
func (m *Memory) RevokeKey(id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	k, ok := m.keys[id]
	if !ok {
		return Key{}, ErrNotFound
	}
	if !k.Revoked {
		k.Revoked = true
		k.RevokedAt = m.hooks.now()
		m.keys[id] = k
	}
	return k, nil
}

// AddUsage implements Store.
func (m *Memory) AddUsage(batch map[string]Usage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	now := m.hooks.now()
	for id, d := range batch {
		if _, ok := m.keys[id]; !ok || d.IsZero() {
			continue
		}
		u := m.usage[id]
		u.Add(d)
		m.usage[id] = u
		m.history[id] = addHistory(m.history[id], now, d)
	}
	return nil
}

// Usage implements Store.
func (m *Memory) Usage(id string) (Usage, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Usage{}, ErrClosed
	}
	if _, ok := m.keys[id]; !ok {
		return Usage{}, ErrNotFound
	}
	return m.usage[id], nil
}

// Close implements Store. The data is dropped so a closed Memory does not pin it.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.keys = nil
	m.usage = nil
	m.history = nil
	m.accounts = nil
	m.owned = nil
	return nil
}
