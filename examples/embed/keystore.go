package main

import (
	"sync"
	"time"

	"github.com/stratus-rtmfp/stratus/store"
)

// fixedStore is a store.Store with one developer key that cannot be
// created or revoked through the server: what an application that manages
// keys elsewhere might plug in. Usage is kept in memory.
type fixedStore struct {
	id, name string
	created  time.Time

	mu    sync.Mutex
	usage store.Usage
}

func newFixedStore(id, name string) *fixedStore {
	return &fixedStore{id: id, name: name, created: time.Now()}
}

func (f *fixedStore) key() store.Key { return store.Key{ID: f.id, Name: f.name, Created: f.created} }

func (f *fixedStore) CreateKey(string) (store.Key, error) { return store.Key{}, store.ErrReadOnly }

func (f *fixedStore) GetKey(id string) (store.Key, error) {
	if id != f.id {
		return store.Key{}, store.ErrNotFound
	}
	return f.key(), nil
}

func (f *fixedStore) ListKeys() ([]store.Key, error) { return []store.Key{f.key()}, nil }

func (f *fixedStore) RevokeKey(string) (store.Key, error) { return store.Key{}, store.ErrReadOnly }

func (f *fixedStore) AddUsage(batch map[string]store.Usage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := batch[f.id]; ok {
		f.usage.Add(u)
	}
	return nil
}

func (f *fixedStore) Usage(id string) (store.Usage, error) {
	if id != f.id {
		return store.Usage{}, store.ErrNotFound
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage, nil
}

func (f *fixedStore) Close() error { return nil }
