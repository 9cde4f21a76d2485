package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// More sentinel errors, for Accounts.
var (
	// ErrNoAccount: no account has this ID.
	ErrNoAccount = errors.New("store: no such account")
	// ErrSuspended: the account is suspended, so it gets no new keys.
	ErrSuspended = errors.New("store: account suspended")
	// ErrTooManyKeys: the account already has MaxAccountKeys active keys.
	ErrTooManyKeys = errors.New("store: too many keys for this account")
	// ErrKeysUsedUp: the account has had MaxAccountKeysTotal keys,
	// revoked ones included, so it gets no new ones (not even by
	// rotation).
	ErrKeysUsedUp = errors.New("store: this account has had the most keys an account may have, revoked ones included")
)

// Bounds on one account's keys. Keys are never deleted (their usage stays
// reportable), so without the second bound a loop of creations and
// revocations or rotations would grow the database without end.
const (
	// MaxAccountKeys bounds the active (not revoked) keys of one account.
	MaxAccountKeys = 20
	// MaxAccountKeysTotal bounds all the keys an account ever gets,
	// revoked ones included.
	MaxAccountKeysTotal = 200
)

// HistoryHours is how much usage history UsageHistory keeps: one sample
// per hour for seven days.
const HistoryHours = 7 * 24

// Account is a developer who signed up, with the keys whose Key.Account
// is its ID. The sign-in secret itself is never stored, only its hash.
type Account struct {
	ID          string    `json:"id"` // 16 hex digits
	Name        string    `json:"name"`
	Email       string    `json:"email"`
	SecretHash  []byte    `json:"secret_hash"`
	Created     time.Time `json:"created"`
	Suspended   bool      `json:"suspended,omitempty"`
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
}

// UsageSample is one hour of a key's usage history.
type UsageSample struct {
	Hour          time.Time `json:"hour"` // start of the hour, UTC
	Connects      uint64    `json:"connects"`
	Introductions uint64    `json:"introductions"`
}

// Accounts is what the developer portal needs beyond Store: developer
// accounts owning keys, key edits and hourly usage history. *Bolt and
// *Memory implement it; a Store that does not is still a complete Store
// for the rendezvous server (the portal then refuses to start).
type Accounts interface {
	// CreateAccount records a new account. Name and email are checked
	// like key names (ErrInvalidName). E-mail addresses are not unique:
	// signing up never tells whether an address is known.
	CreateAccount(name, email string, secretHash []byte) (Account, error)
	// GetAccount returns one account. ErrNoAccount.
	GetAccount(id string) (Account, error)
	// ListAccounts returns every account, oldest first.
	ListAccounts() ([]Account, error)
	// SuspendAccount suspends (or reinstates) an account and marks all
	// its keys Suspended (or not) in the same transaction, so that the
	// server's one read per connect sees it. ErrNoAccount.
	SuspendAccount(id string, suspended bool) (Account, error)
	// CreateAccountKey makes a key owned by the account. ErrNoAccount,
	// ErrSuspended, ErrTooManyKeys, ErrKeysUsedUp, ErrInvalidName.
	CreateAccountKey(account, name string) (Key, error)
	// AccountKeys lists an account's keys, revoked ones too, in ListKeys
	// order; its cost depends on the account's keys only, not on all the
	// store's. ErrNoAccount.
	AccountKeys(account string) ([]Key, error)
	// RenameKey changes a key's name. ErrNotFound, ErrInvalidName.
	RenameKey(id, name string) (Key, error)
	// SetKeyLimit sets a key's connected-session quota (0: the server's
	// default). ErrNotFound.
	SetKeyLimit(id string, maxSessions int) (Key, error)
	// RotateKey replaces a key: a new key with the same name, account and
	// quota, and the old one revoked, in one transaction. It returns the
	// new key. ErrNotFound, ErrSuspended, ErrKeysUsedUp; a revoked key
	// cannot be rotated (ErrNotFound).
	RotateKey(id string) (Key, error)
	// UsageHistory returns the key's hourly connects and introductions
	// over the last HistoryHours hours, oldest first, hours without
	// activity left out. AddUsage records it. ErrNotFound.
	UsageHistory(id string) ([]UsageSample, error)
}

var (
	_ Accounts = (*Bolt)(nil)
	_ Accounts = (*Memory)(nil)
)

const accountIDBytes = 8

var errNoAccountID = fmt.Errorf("store: no unused account ID after %d attempts", maxIDAttempts)

func newAccountID() (string, error) {
	var raw [accountIDBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("store: generating account ID: %w", err)
	}
	return hex.EncodeToString(raw[:]), nil
}

// ValidAccountID reports whether id has the shape of an account ID: 16
// lowercase hex digits.
func ValidAccountID(id string) bool {
	if len(id) != 2*accountIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkAccount validates a new account's fields.
func checkAccount(name, email string, secretHash []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkName(email); err != nil {
		return err
	}
	if len(secretHash) == 0 || len(secretHash) > 64 {
		return errors.New("store: account secret hash must be 1 to 64 bytes")
	}
	return nil
}

// activeKeys counts keys that are not revoked.
func activeKeys(keys []Key) int {
	n := 0
	for _, k := range keys {
		if !k.Revoked {
			n++
		}
	}
	return n
}

// addHistory adds a usage delta to the sample of the hour at, and forgets
// samples older than HistoryHours before at.
func addHistory(h []UsageSample, at time.Time, d Usage) []UsageSample {
	if d.Connects == 0 && d.Introductions == 0 {
		return h
	}
	hour := at.UTC().Truncate(time.Hour)
	oldest := hour.Add(-(HistoryHours - 1) * time.Hour)
	h = slices.DeleteFunc(h, func(s UsageSample) bool { return s.Hour.Before(oldest) })
	i, found := slices.BinarySearchFunc(h, hour, func(s UsageSample, t time.Time) int { return s.Hour.Compare(t) })
	if !found {
		h = slices.Insert(h, i, UsageSample{Hour: hour})
	}
	h[i].Connects += d.Connects
	h[i].Introductions += d.Introductions
	return h
}

// recentHistory is h without samples older than HistoryHours before now.
func recentHistory(h []UsageSample, now time.Time) []UsageSample {
	oldest := now.UTC().Truncate(time.Hour).Add(-(HistoryHours - 1) * time.Hour)
	out := make([]UsageSample, 0, len(h))
	for _, s := range h {
		if !s.Hour.Before(oldest) {
			out = append(out, s)
		}
	}
	return out
}

// canAddKey says whether an account may get one more key; replacing
// says that the new key replaces an active one (a rotation).
func canAddKey(a Account, keys []Key, replacing bool) error {
	if a.Suspended {
		return ErrSuspended
	}
	if !replacing && activeKeys(keys) >= MaxAccountKeys {
		return ErrTooManyKeys
	}
	if len(keys) >= MaxAccountKeysTotal {
		return ErrKeysUsedUp
	}
	return nil
}

func setSuspended(a *Account, suspended bool, now time.Time) {
	if suspended && !a.Suspended {
		a.SuspendedAt = now
	}
	if !suspended {
		a.SuspendedAt = time.Time{}
	}
	a.Suspended = suspended
}

// revoke marks k revoked at now, keeping an earlier revocation time.
func revoke(k *Key, now time.Time) {
	if !k.Revoked {
		k.Revoked, k.RevokedAt = true, now
	}
}
