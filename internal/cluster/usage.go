package cluster

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-rtmfp/stratus/store"
)

// Usage counters, cluster-wide, counted once: each node adds its own
// counts to its own store (store.AddUsage: one fsync'd transaction per
// batch, the commit point) and publishes its cumulative totals per key in
// an entry only it writes, usage.KEY.NODE. A key's cluster-wide usage is
// the sum of those entries. Publishing a total again is idempotent, so a
// batch is never counted twice however often the push is retried, and a
// node that dies after committing a batch but before pushing it pushes
// its totals when it starts again (every key is pushed once at start).
// A node whose data directory was replaced finds a larger total of its own
// in the bucket: that one is kept, renamed usage.KEY.NODE.N, before the
// new counters are pushed, so it still counts.

// nodeUsage is one node's cumulative usage of one key, as it pushes it.
type nodeUsage struct {
	Usage   store.Usage         `json:"usage"`
	History []store.UsageSample `json:"history,omitempty"`
}

// AddUsage implements store.Store: the node's own store first, then the
// keys it touched are pushed within a second.
func (ks *keyStore) AddUsage(batch map[string]store.Usage) error {
	if err := ks.r.AddUsage(batch); err != nil {
		return err
	}
	ks.mu.Lock()
	for id := range batch {
		ks.dirty[id] = true
	}
	ks.mu.Unlock()
	return nil
}

func (ks *keyStore) usageEntry(id string) string { return "usage." + id + "." + ks.n.name }

// pushUsage publishes this node's totals of the keys whose usage changed.
func (ks *keyStore) pushUsage() {
	kv, err := ks.bind()
	if err != nil {
		return
	}
	ks.mu.Lock()
	ids := make([]string, 0, len(ks.dirty))
	for id := range ks.dirty {
		ids = append(ids, id)
	}
	ks.dirty = map[string]bool{}
	ks.mu.Unlock()
	for i, id := range ids {
		if err := ks.pushKey(kv, id); err != nil {
			ks.n.log.Warn("cluster: pushing usage counters (retried)", "key", id, "err", err)
			ks.mu.Lock()
			for _, rest := range ids[i:] {
				ks.dirty[rest] = true
			}
			ks.mu.Unlock()
			return
		}
	}
}

func (ks *keyStore) pushKey(kv jetstream.KeyValue, id string) error {
	u, err := ks.r.Usage(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	h, _ := ks.r.UsageHistory(id)
	name := ks.usageEntry(id)
	ks.mu.Lock()
	checked := ks.pushed[id]
	ks.mu.Unlock()
	if !checked {
		if err := ks.keepEarlier(kv, name, u); err != nil {
			return err
		}
		ks.mu.Lock()
		ks.pushed[id] = true
		ks.mu.Unlock()
	}
	data, err := ks.seal(name, nodeUsage{Usage: u, History: h})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err = kv.Put(ctx, name, data)
	return err
}

// keepEarlier renames this node's entry for a key aside if it counts more
// than the node's store does (it came from an earlier data directory).
func (ks *keyStore) keepEarlier(kv jetstream.KeyValue, name string, u store.Usage) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	e, err := kv.Get(ctx, name)
	cancel()
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var prev nodeUsage
	if err := ks.unseal(name, e.Value(), &prev); err != nil || covers(u, prev.Usage) {
		return nil // ours already includes it (or it is garbage, replaced)
	}
	aside := name + "." + strconv.FormatUint(e.Revision(), 10)
	data, err := ks.seal(aside, prev)
	if err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := kv.Create(ctx, aside, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	ks.n.log.Warn("cluster: this node's usage counters in the cluster exceed its data directory's; kept them as "+aside, "entry", name)
	return nil
}

// covers reports whether every counter of a is at least b's.
func covers(a, b store.Usage) bool {
	return a.Connects >= b.Connects && a.Rejected >= b.Rejected && a.Introductions >= b.Introductions &&
		a.LookupsMissed >= b.LookupsMissed && a.Relays >= b.Relays && a.BytesIn >= b.BytesIn &&
		a.BytesOut >= b.BytesOut && a.SessionSeconds >= b.SessionSeconds
}

// applyUsage records another node's (or an earlier data directory's)
// totals for a key; rest is "KEY.NODE" or "KEY.NODE.N".
func (ks *keyStore) applyUsage(name, rest string, value []byte) error {
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 3 || !store.ValidKeyFormat(parts[0]) || !nameRE.MatchString(parts[1]) {
		return errMalform
	}
	if len(parts) == 2 && parts[1] == ks.n.name {
		return nil // this node counts its own from its store
	}
	var nu nodeUsage
	if err := ks.unseal(name, value, &nu); err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	m := ks.others[parts[0]]
	if m == nil {
		m = map[string]nodeUsage{}
		ks.others[parts[0]] = m
	}
	m[name] = nu
	return nil
}

// Usage implements store.Store: this node's totals and every other
// node's, as last pushed.
func (ks *keyStore) Usage(id string) (store.Usage, error) {
	u, err := ks.r.Usage(id)
	if err != nil {
		return u, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, nu := range ks.others[id] {
		u.Add(nu.Usage)
	}
	return u, nil
}

// UsageHistory implements store.Accounts: the hourly samples of every
// node, added up.
func (ks *keyStore) UsageHistory(id string) ([]store.UsageSample, error) {
	h, err := ks.r.UsageHistory(id)
	if err != nil {
		return h, err
	}
	oldest := time.Now().UTC().Truncate(time.Hour).Add(-(store.HistoryHours - 1) * time.Hour)
	byHour := map[time.Time]int{} // index in h
	for i := range h {
		byHour[h[i].Hour] = i
	}
	ks.mu.Lock()
	for _, nu := range ks.others[id] {
		for _, s := range nu.History {
			if s.Hour.Before(oldest) {
				continue
			}
			if i, ok := byHour[s.Hour]; ok {
				h[i].Connects += s.Connects
				h[i].Introductions += s.Introductions
			} else {
				byHour[s.Hour] = len(h)
				h = append(h, s)
			}
		}
	}
	ks.mu.Unlock()
	slices.SortFunc(h, func(a, b store.UsageSample) int { return a.Hour.Compare(b.Hour) })
	return h, nil
}
