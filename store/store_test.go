package store

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// implementations lists every Store under test; each constructor gives a
// fresh, empty store that is closed when the test ends.
var implementations = []struct {
	name string
	open func(t testing.TB) Store
}{
	{"Memory", func(t testing.TB) Store {
		m := NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	}},
	{"Bolt", func(t testing.TB) Store {
		b, err := OpenBolt(t.TempDir(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}},
}

// hooksOf reaches into an implementation so tests can fix IDs and clocks.
func hooksOf(t *testing.T, s Store) *hooks {
	t.Helper()
	switch s := s.(type) {
	case *Memory:
		return &s.hooks
	case *Bolt:
		return &s.hooks
	}
	t.Fatalf("unknown store %T", s)
	return nil
}

// conformance is the behaviour every Store must share.
var conformance = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"CreateThenGet", testCreateThenGet},
	{"GeneratedIDsAreWellFormedAndUnique", testGeneratedIDs},
	{"IDCollisionRetried", testIDCollision},
	{"ListSortedByCreatedThenID", testListSorted},
	{"ListEmpty", testListEmpty},
	{"RevokeIsIdempotent", testRevoke},
	{"NotFound", testNotFound},
	{"UsageAddAndRead", testUsage},
	{"UsageBatchSkipsUnknownKeys", testUsageUnknown},
	{"UsageOfRevokedKeyStillCounted", testUsageRevoked},
	{"NameValidation", testNames},
	{"ReturnedSlicesAreCopies", testCopies},
	{"ClosedStoreErrors", testClosed},
	{"Concurrent", testConcurrent},
}

func TestConformance(t *testing.T) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, impl.open(t))
				})
			}
		})
	}
}

// sameKey compares keys with time.Time.Equal, as the Store contract asks.
func sameKey(a, b Key) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Revoked == b.Revoked &&
		a.Created.Equal(b.Created) && a.RevokedAt.Equal(b.RevokedAt)
}

func sameUsage(a, b Usage) bool {
	la, lb := a.LastSeen, b.LastSeen
	a.LastSeen, b.LastSeen = time.Time{}, time.Time{}
	return a == b && la.Equal(lb)
}

func mustCreate(t *testing.T, s Store, name string) Key {
	t.Helper()
	k, err := s.CreateKey(name)
	if err != nil {
		t.Fatalf("CreateKey(%q): %v", name, err)
	}
	return k
}

func mustUsage(t *testing.T, s Store, id string) Usage {
	t.Helper()
	u, err := s.Usage(id)
	if err != nil {
		t.Fatalf("Usage(%s): %v", id, err)
	}
	return u
}

func testCreateThenGet(t *testing.T, s Store) {
	before := time.Now()
	k := mustCreate(t, s, "alice's app")
	after := time.Now()
	if !ValidKeyFormat(k.ID) || k.Name != "alice's app" || k.Revoked || !k.RevokedAt.IsZero() {
		t.Fatalf("CreateKey returned %+v", k)
	}
	if k.Created.Before(before.Truncate(time.Microsecond)) || k.Created.After(after) {
		t.Fatalf("Created %v not within [%v, %v]", k.Created, before, after)
	}
	got, err := s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKey(got, k) {
		t.Fatalf("GetKey = %+v, want %+v", got, k)
	}
	if got != k {
		t.Errorf("GetKey = %#v, not == %#v (Created should survive storage exactly)", got, k)
	}
}

func testGeneratedIDs(t *testing.T, s Store) {
	const n = 300
	seen := make(map[string]bool, n)
	for i := range n {
		k := mustCreate(t, s, fmt.Sprint("k", i))
		if !ValidKeyFormat(k.ID) {
			t.Fatalf("generated ID %q is not in the Cirrus format", k.ID)
		}
		if seen[k.ID] {
			t.Fatalf("duplicate ID %q", k.ID)
		}
		seen[k.ID] = true
	}
	keys, err := s.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != n {
		t.Fatalf("ListKeys has %d keys, want %d", len(keys), n)
	}
	for _, k := range keys {
		if !seen[k.ID] {
			t.Fatalf("ListKeys returned unknown ID %q", k.ID)
		}
	}
}

func testIDCollision(t *testing.T, s Store) {
	const a = "aaaaaaaaaaaaaaaaaaaaaaaa-aaaaaaaaaaaa"
	const b = "bbbbbbbbbbbbbbbbbbbbbbbb-bbbbbbbbbbbb"
	h := hooksOf(t, s)
	seq := []string{a, a, a, b}
	h.newID = func() (string, error) {
		id := seq[0]
		if len(seq) > 1 {
			seq = seq[1:]
		}
		return id, nil
	}
	if k := mustCreate(t, s, "first"); k.ID != a {
		t.Fatalf("first ID = %s, want %s", k.ID, a)
	}
	if k := mustCreate(t, s, "second"); k.ID != b {
		t.Fatalf("after collisions ID = %s, want %s", k.ID, b)
	}
	// Only taken IDs left: CreateKey must give up, not loop.
	if _, err := s.CreateKey("third"); err == nil {
		t.Fatal("CreateKey succeeded with only colliding IDs")
	}
	h.newID = func() (string, error) { return "not-a-key", nil }
	if _, err := s.CreateKey("bad"); err == nil {
		t.Fatal("CreateKey accepted a malformed generated ID")
	}
	h.newID = func() (string, error) { return "", errors.New("no entropy") }
	if _, err := s.CreateKey("bad"); err == nil {
		t.Fatal("CreateKey ignored a random source error")
	}
	if keys, _ := s.ListKeys(); len(keys) != 2 {
		t.Fatalf("failed creates left keys behind: %v", keys)
	}
}

func testListSorted(t *testing.T, s Store) {
	h := hooksOf(t, s)
	base := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	// Created order deliberately disagrees with ID order, and two keys share
	// a Created time so the ID tie-break is exercised.
	plan := []struct {
		id      string
		created time.Time
	}{
		{"ffffffffffffffffffffffff-000000000000", base},
		{"000000000000000000000000-000000000002", base.Add(time.Second)},
		{"000000000000000000000000-000000000001", base.Add(time.Second)},
		{"eeeeeeeeeeeeeeeeeeeeeeee-000000000000", base.Add(-time.Hour)},
	}
	want := []string{plan[3].id, plan[0].id, plan[2].id, plan[1].id}
	for _, p := range plan {
		h.newID = func() (string, error) { return p.id, nil }
		h.now = func() time.Time { return p.created }
		mustCreate(t, s, p.id[:4])
	}
	keys, err := s.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ListKeys order\n got %v\nwant %v", got, want)
	}
}

func testListEmpty(t *testing.T, s Store) {
	keys, err := s.ListKeys()
	if err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("ListKeys on empty store = %#v, %v; want empty non-nil slice", keys, err)
	}
}

func testRevoke(t *testing.T, s Store) {
	k := mustCreate(t, s, "doomed")
	other := mustCreate(t, s, "bystander")
	r1, err := s.RevokeKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Revoked || r1.RevokedAt.IsZero() || r1.RevokedAt.Before(k.Created) {
		t.Fatalf("RevokeKey returned %+v", r1)
	}
	if r1.ID != k.ID || r1.Name != k.Name || !r1.Created.Equal(k.Created) {
		t.Fatalf("RevokeKey changed identity: %+v vs %+v", r1, k)
	}
	time.Sleep(2 * time.Millisecond)
	r2, err := s.RevokeKey(k.ID)
	if err != nil {
		t.Fatalf("second RevokeKey: %v", err)
	}
	if !sameKey(r1, r2) {
		t.Fatalf("second RevokeKey = %+v, want unchanged %+v", r2, r1)
	}
	if got, _ := s.GetKey(k.ID); !sameKey(got, r1) {
		t.Fatalf("GetKey after revoke = %+v, want %+v", got, r1)
	}
	if got, _ := s.GetKey(other.ID); !sameKey(got, other) {
		t.Fatalf("revoking one key changed another: %+v", got)
	}
	keys, _ := s.ListKeys()
	revoked := 0
	for _, k := range keys {
		if k.Revoked {
			revoked++
		}
	}
	if len(keys) != 2 || revoked != 1 {
		t.Fatalf("ListKeys after revoke = %+v", keys)
	}
}

func testNotFound(t *testing.T, s Store) {
	k := mustCreate(t, s, "exists")
	ids := []string{
		"0123456789abcdef01234567-0123456789ab", // well formed, unknown
		strings.ToUpper(k.ID),                   // IDs are case-sensitive
		k.ID + " ",
		"",
		"app",
		"../../etc/passwd",
	}
	for _, id := range ids {
		if _, err := s.GetKey(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetKey(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.RevokeKey(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeKey(%q) err = %v, want ErrNotFound", id, err)
		}
		if _, err := s.Usage(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Usage(%q) err = %v, want ErrNotFound", id, err)
		}
	}
	if keys, _ := s.ListKeys(); len(keys) != 1 {
		t.Fatalf("lookups created keys: %v", keys)
	}
}

func testUsage(t *testing.T, s Store) {
	a := mustCreate(t, s, "a")
	b := mustCreate(t, s, "b")
	if u := mustUsage(t, s, a.ID); u != (Usage{}) {
		t.Fatalf("fresh key usage = %+v, want zero", u)
	}
	t1 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	if err := s.AddUsage(map[string]Usage{
		a.ID: {Connects: 2, Introductions: 5, BytesIn: 100, BytesOut: 200, SessionSeconds: 30, LastSeen: t2},
		b.ID: {Connects: 1, LookupsMissed: 3, Relays: 4, LastSeen: t1},
	}); err != nil {
		t.Fatal(err)
	}
	// An older LastSeen must not move it backwards; counters accumulate.
	if err := s.AddUsage(map[string]Usage{
		a.ID: {Connects: 1, Rejected: 7, BytesIn: 1, LastSeen: t1},
		b.ID: {LastSeen: t2},
	}); err != nil {
		t.Fatal(err)
	}
	for _, empty := range []map[string]Usage{nil, {}, {a.ID: {}}} {
		if err := s.AddUsage(empty); err != nil {
			t.Fatalf("AddUsage(%v): %v", empty, err)
		}
	}
	wantA := Usage{Connects: 3, Rejected: 7, Introductions: 5, BytesIn: 101, BytesOut: 200, SessionSeconds: 30, LastSeen: t2}
	wantB := Usage{Connects: 1, LookupsMissed: 3, Relays: 4, LastSeen: t2}
	if u := mustUsage(t, s, a.ID); !sameUsage(u, wantA) {
		t.Errorf("usage a = %+v, want %+v", u, wantA)
	}
	if u := mustUsage(t, s, b.ID); !sameUsage(u, wantB) {
		t.Errorf("usage b = %+v, want %+v", u, wantB)
	}
}

func testUsageUnknown(t *testing.T, s Store) {
	a := mustCreate(t, s, "a")
	unknown := "0123456789abcdef01234567-0123456789ab"
	err := s.AddUsage(map[string]Usage{
		a.ID:      {Connects: 1},
		unknown:   {Connects: 1},
		"garbage": {Connects: 1},
	})
	if err != nil {
		t.Fatalf("AddUsage with unknown IDs: %v", err)
	}
	if u := mustUsage(t, s, a.ID); u.Connects != 1 {
		t.Fatalf("known key's usage lost: %+v", u)
	}
	if _, err := s.Usage(unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Usage(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetKey(unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AddUsage created a key: %v", err)
	}
}

func testUsageRevoked(t *testing.T, s Store) {
	k := mustCreate(t, s, "r")
	if _, err := s.RevokeKey(k.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsage(map[string]Usage{k.ID: {Rejected: 2}}); err != nil {
		t.Fatal(err)
	}
	if u := mustUsage(t, s, k.ID); u.Rejected != 2 {
		t.Fatalf("revoked key usage = %+v, want Rejected 2", u)
	}
}

func testNames(t *testing.T, s Store) {
	good := []string{"", "web", "Café ☕ — prod", strings.Repeat("x", MaxNameLen), "tab-free name with spaces"}
	for _, name := range good {
		k, err := s.CreateKey(name)
		if err != nil {
			t.Fatalf("CreateKey(%q): %v", name, err)
		}
		if got, _ := s.GetKey(k.ID); got.Name != name {
			t.Fatalf("name %q stored as %q", name, got.Name)
		}
	}
	bad := []string{"\xff\xfe", "two\nlines", "bell\a", "nul\x00", "del\x7f", "c1\u0085", strings.Repeat("x", MaxNameLen+1)}
	for _, name := range bad {
		if _, err := s.CreateKey(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("CreateKey(%q) err = %v, want ErrInvalidName", name, err)
		}
	}
	if keys, _ := s.ListKeys(); len(keys) != len(good) {
		t.Fatalf("have %d keys, want %d", len(keys), len(good))
	}
}

func testCopies(t *testing.T, s Store) {
	k := mustCreate(t, s, "orig")
	keys, _ := s.ListKeys()
	keys[0].Name = "changed"
	keys[0].Revoked = true
	if got, _ := s.GetKey(k.ID); got.Name != "orig" || got.Revoked {
		t.Fatalf("modifying ListKeys result changed the store: %+v", got)
	}
}

func testClosed(t *testing.T, s Store) {
	k := mustCreate(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", op, err)
		}
	}
	_, err := s.CreateKey("x")
	check("CreateKey", err)
	_, err = s.GetKey(k.ID)
	check("GetKey", err)
	_, err = s.GetKey("malformed")
	check("GetKey(malformed)", err)
	_, err = s.ListKeys()
	check("ListKeys", err)
	_, err = s.RevokeKey(k.ID)
	check("RevokeKey", err)
	check("AddUsage", s.AddUsage(map[string]Usage{k.ID: {Connects: 1}}))
	check("AddUsage(empty)", s.AddUsage(nil))
	_, err = s.Usage(k.ID)
	check("Usage", err)
}

// testConcurrent mixes every operation from several goroutines; it exists
// for the race detector and checks that no increment is lost.
func testConcurrent(t *testing.T, s Store) {
	shared := mustCreate(t, s, "shared")
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				k, err := s.CreateKey(fmt.Sprintf("w%d-%d", w, i))
				if err != nil {
					errs <- err
					return
				}
				if err := s.AddUsage(map[string]Usage{shared.ID: {Connects: 1}, k.ID: {BytesIn: 1}}); err != nil {
					errs <- err
					return
				}
				if _, err := s.GetKey(shared.ID); err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if _, err := s.ListKeys(); err != nil {
						errs <- err
						return
					}
					if _, err := s.RevokeKey(k.ID); err != nil {
						errs <- err
						return
					}
				}
				if _, err := s.Usage(shared.ID); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if u := mustUsage(t, s, shared.ID); u.Connects != workers*rounds {
		t.Fatalf("shared Connects = %d, want %d", u.Connects, workers*rounds)
	}
	if keys, _ := s.ListKeys(); len(keys) != 1+workers*rounds {
		t.Fatalf("have %d keys, want %d", len(keys), 1+workers*rounds)
	}
}

func TestUsageAdd(t *testing.T) {
	t1 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	all := Usage{1, 2, 3, 4, 5, 6, 7, 8, t1}
	tests := []struct {
		name string
		u, d Usage
		want Usage
	}{
		{"zero plus zero", Usage{}, Usage{}, Usage{}},
		{"every counter", all, all, Usage{2, 4, 6, 8, 10, 12, 14, 16, t1}},
		{"later LastSeen wins", Usage{LastSeen: t1}, Usage{LastSeen: t2}, Usage{LastSeen: t2}},
		{"earlier LastSeen ignored", Usage{LastSeen: t2}, Usage{LastSeen: t1}, Usage{LastSeen: t2}},
		{"zero LastSeen ignored", Usage{LastSeen: t1}, Usage{Connects: 1}, Usage{Connects: 1, LastSeen: t1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.u
			u.Add(tt.d)
			if u != tt.want {
				t.Fatalf("got %+v, want %+v", u, tt.want)
			}
		})
	}
}

func TestUsageIsZero(t *testing.T) {
	if !(Usage{}).IsZero() {
		t.Fatal("zero Usage not IsZero")
	}
	for i, u := range []Usage{{Connects: 1}, {Rejected: 1}, {Introductions: 1}, {LookupsMissed: 1}, {Relays: 1}, {BytesIn: 1}, {BytesOut: 1}, {SessionSeconds: 1}, {LastSeen: time.Unix(1, 0)}} {
		if u.IsZero() {
			t.Errorf("case %d: %+v reported zero", i, u)
		}
	}
}

func TestValidKeyFormat(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"7d8e660a6cbf71bab35a0781-c086fb40c6fb", true},
		{"000000000000000000000000-000000000000", true},
		{"abcdefabcdefabcdefabcdef-abcdefabcdef", true},
		{"7D8E660A6CBF71BAB35A0781-C086FB40C6FB", false}, // uppercase
		{"7d8e660a6cbf71bab35a0781c086fb40c6fb", false},  // no dash
		{"7d8e660a6cbf71bab35a078-1c086fb40c6fb", false}, // dash misplaced
		{"7d8e660a6cbf71bab35a0781-c086fb40c6f", false},  // short
		{"7d8e660a6cbf71bab35a0781-c086fb40c6fb0", false},
		{"7d8e660a6cbf71bab35a0781-c086fb40c6fg", false},
		{"7d8e660a6cbf71bab35a0781--086fb40c6fb", false},
		{" 7d8e660a6cbf71bab35a0781-c086fb40c6f", false},
		{"", false},
		{"app", false},
	}
	for _, tt := range tests {
		if got := ValidKeyFormat(tt.id); got != tt.want {
			t.Errorf("ValidKeyFormat(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

var keyFormatOracle = regexp.MustCompile(`^[0-9a-f]{24}-[0-9a-f]{12}$`)

func FuzzValidKeyFormat(f *testing.F) {
	f.Add("7d8e660a6cbf71bab35a0781-c086fb40c6fb")
	f.Add("7d8e660a6cbf71bab35a0781-c086fb40c6fB")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidKeyFormat(id), keyFormatOracle.MatchString(id); got != want {
			t.Fatalf("ValidKeyFormat(%q) = %v, regexp says %v", id, got, want)
		}
	})
}

func TestNewKeyID(t *testing.T) {
	id, err := newKeyID()
	if err != nil {
		t.Fatal(err)
	}
	if !keyFormatOracle.MatchString(id) {
		t.Fatalf("newKeyID() = %q", id)
	}
}

func BenchmarkGetKey(b *testing.B) {
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			s := impl.open(b)
			var ids []string
			for range 1000 {
				k, err := s.CreateKey("bench")
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, k.ID)
			}
			i := 0
			for b.Loop() {
				if _, err := s.GetKey(ids[i%len(ids)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
