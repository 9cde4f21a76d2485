package server

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stratus-rtmfp/stratus/store"
)

// flakyStore fails AddUsage while failing is set.
type flakyStore struct {
	*store.Memory
	failing atomic.Bool
}

func (f *flakyStore) AddUsage(b map[string]store.Usage) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Memory.AddUsage(b)
}

// A usage batch the store fails to write is kept and written with the next
// one: nothing lost, nothing counted twice.
func TestUsageBatchSurvivesAFailedWrite(t *testing.T) {
	st := &flakyStore{Memory: store.NewMemory()}
	srv, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	k, _ := srv.CreateKey("k")
	srv.keys.usage(k.ID, store.Usage{Connects: 2})
	st.failing.Store(true)
	if err := srv.FlushUsage(); err == nil {
		t.Fatal("the failed write was not reported")
	}
	srv.keys.usage(k.ID, store.Usage{Connects: 3})
	st.failing.Store(false)
	if err := srv.FlushUsage(); err != nil {
		t.Fatal(err)
	}
	if err := srv.FlushUsage(); err != nil { // nothing left to write twice
		t.Fatal(err)
	}
	if u, _ := st.Memory.Usage(k.ID); u.Connects != 5 {
		t.Fatalf("store has %d connects, want 5", u.Connects)
	}
}
