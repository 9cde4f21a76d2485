// Package store keeps the rendezvous server's developer keys and their
// cumulative usage counters, behind the Store interface the server uses
// (implement it to keep keys anywhere else), and the developer accounts and
// usage history of the web portal, behind the optional Accounts interface. Bolt persists them in one
// bbolt file in the data directory, which the server and the offline
// `stratus keys` CLI share; Memory holds them in memory for tests and for
// embedding without a disk.
package store

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// usually wrap them with the offending path or value.
var (
	// ErrNotFound: no key has this ID. Malformed IDs get it too, so the
	// server can answer garbage from the network without a special case.
	ErrNotFound = errors.New("store: no such key")
	// ErrLocked: another process (normally the running server) holds the
	// database's exclusive lock. The CLI falls back to the admin API on it.
	ErrLocked = errors.New("store: data directory is in use by another process")
	// ErrIncompatible: the database file was written by a newer stratus, or
	// is not a stratus database at all. Opening it would risk corrupting it.
	ErrIncompatible = errors.New("store: database is not compatible with this version of stratus")
	// ErrInvalidName: the key name is not printable UTF-8 or is too long.
	// Names end up in CLI tables and logs, so control characters are refused.
	ErrInvalidName = errors.New("store: invalid key name")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store: closed")
	// ErrReadOnly: the store does not create or revoke keys (an embedder's
	// store whose keys are managed elsewhere).
	ErrReadOnly = errors.New("store: keys are managed elsewhere")
)

// MaxNameLen is the longest key name accepted, in bytes.
const MaxNameLen = 256

// Key is a developer key. ID is the key string clients put in the URL:
// Cirrus style, 24 lowercase hex digits, '-', 12 lowercase hex digits
// (e.g. 7d8e660a6cbf71bab35a0781-c086fb40c6fb), generated from crypto/rand.
type Key struct {
	ID        string    `json:"key"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Account is the ID of the developer account that owns the key
	// (Accounts); empty for keys the operator made.
	Account string `json:"account,omitempty"`
	// Suspended: the owning account is suspended; the key is refused like
	// a revoked one until the account is reinstated.
	Suspended bool `json:"suspended,omitempty"`
	// MaxSessions is the key's connected-session quota; 0 means the
	// server's default.
	MaxSessions int `json:"max_sessions,omitempty"`
}

// Usage is cumulative per-key counters. The server accumulates deltas in
// memory and flushes them with AddUsage, so Usage values are both deltas and
// totals.
type Usage struct {
	Connects       uint64    `json:"connects"`
	Rejected       uint64    `json:"rejected"` // connects refused (e.g. while revoked)
	Introductions  uint64    `json:"introductions"`
	LookupsMissed  uint64    `json:"lookups_missed"`
	Relays         uint64    `json:"relays"`
	BytesIn        uint64    `json:"bytes_in"`
	BytesOut       uint64    `json:"bytes_out"`
	SessionSeconds uint64    `json:"session_seconds"`
	LastSeen       time.Time `json:"last_seen,omitzero"`
}

// Add adds the counters of d to u and keeps the later LastSeen, so that
// deltas can be merged in any order.
func (u *Usage) Add(d Usage) {
	u.Connects += d.Connects
	u.Rejected += d.Rejected
	u.Introductions += d.Introductions
	u.LookupsMissed += d.LookupsMissed
	u.Relays += d.Relays
	u.BytesIn += d.BytesIn
	u.BytesOut += d.BytesOut
	u.SessionSeconds += d.SessionSeconds
	if d.LastSeen.After(u.LastSeen) {
		u.LastSeen = d.LastSeen
	}
}

// IsZero reports whether u records nothing; AddUsage skips such entries
// rather than rewriting a record with the same value.
func (u Usage) IsZero() bool {
	return u.Connects == 0 && u.Rejected == 0 && u.Introductions == 0 &&
		u.LookupsMissed == 0 && u.Relays == 0 && u.BytesIn == 0 &&
		u.BytesOut == 0 && u.SessionSeconds == 0 && u.LastSeen.IsZero()
}

// Store is what the server needs; *Bolt implements it, and so does *Memory.
// Both are safe for concurrent use. Times in returned values should be
// compared with time.Time.Equal: Bolt returns them decoded from JSON.
type Store interface {
	// CreateKey makes a key with a fresh random ID. ErrInvalidName.
	CreateKey(name string) (Key, error)
	// GetKey is on every connect's path; it is a single read. ErrNotFound.
	GetKey(id string) (Key, error)
	// ListKeys returns every key, revoked ones too, sorted by Created then ID.
	ListKeys() ([]Key, error)
	// RevokeKey marks the key revoked. Revoking twice is not an error and
	// keeps the first RevokedAt. Keys are never deleted, so their usage stays
	// reportable. ErrNotFound.
	RevokeKey(id string) (Key, error)
	// AddUsage adds every delta of batch to its key's totals in one
	// transaction. IDs that name no key are skipped, not reported, so a
	// caller can never double-count by retrying a partly applied batch.
	AddUsage(batch map[string]Usage) error
	// Usage returns the key's totals: zero if none recorded. ErrNotFound.
	Usage(id string) (Usage, error)
	// Close releases the store (and Bolt's file lock). Calling it again is a
	// no-op; other methods then return ErrClosed.
	Close() error
}

// Compile-time checks that both implementations satisfy Store.
var (
	_ Store = (*Bolt)(nil)
	_ Store = (*Memory)(nil)
)

// Key IDs are 18 random bytes (144 bits), hex encoded and split 24+12 like
// Adobe Cirrus keys, so that existing client URLs keep their shape.
const (
	idRandBytes = 18
	idHeadLen   = 24
	idLen       = 2*idRandBytes + 1
)

// maxIDAttempts bounds the retries on an ID collision. With 144 random bits a
// single collision is already implausible; the bound only stops a broken
// random source from looping forever.
const maxIDAttempts = 8

// ValidKeyFormat reports whether id has the Cirrus shape: 24 lowercase hex
// digits, '-', 12 lowercase hex digits. Lookups of other strings fail fast.
func ValidKeyFormat(id string) bool {
	if len(id) != idLen || id[idHeadLen] != '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if i == idHeadLen {
			continue
		}
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newKeyID returns a fresh random key ID.
func newKeyID() (string, error) {
	var raw [idRandBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("store: generating key ID: %w", err)
	}
	var buf [idLen]byte
	hex.Encode(buf[:idHeadLen], raw[:idHeadLen/2])
	buf[idHeadLen] = '-'
	hex.Encode(buf[idHeadLen+1:], raw[idHeadLen/2:])
	return string(buf[:]), nil
}

// hooks are the sources of IDs and time; tests replace them to force
// collisions and equal creation times.
type hooks struct {
	newID func() (string, error)
	now   func() time.Time
}

func defaultHooks() hooks {
	return hooks{newID: newKeyID, now: now}
}

// now is the creation/revocation clock: UTC without a monotonic reading, so a
// Key compares the same before and after a JSON round trip.
func now() time.Time {
	return time.Now().UTC().Round(0)
}

// uniqueID draws IDs until one is not taken.
func (h hooks) uniqueID(taken func(id string) bool) (string, error) {
	for range maxIDAttempts {
		id, err := h.newID()
		if err != nil {
			return "", err
		}
		if !ValidKeyFormat(id) {
			return "", fmt.Errorf("store: generated key ID %q is malformed", id)
		}
		if !taken(id) {
			return id, nil
		}
	}
	return "", fmt.Errorf("store: no unused key ID after %d attempts", maxIDAttempts)
}

// checkName enforces what ErrInvalidName documents. Invalid UTF-8 is refused
// rather than silently replaced, which JSON encoding would otherwise do.
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("%w: contains control characters", ErrInvalidName)
	}
	return nil
}

// sortKeys puts keys in ListKeys order: oldest first, ties broken by ID so
// the order is total and stable across implementations.
func sortKeys(keys []Key) {
	slices.SortFunc(keys, func(a, b Key) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
