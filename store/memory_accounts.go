package store

import (
	"cmp"
	"slices"
)

// CreateAccount implements Accounts.
func (m *Memory) CreateAccount(name, email string, secretHash []byte) (Account, error) {
	if err := checkAccount(name, email, secretHash); err != nil {
		return Account{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Account{}, ErrClosed
	}
	for range maxIDAttempts {
		id, err := newAccountID()
		if err != nil {
			return Account{}, err
		}
		if _, taken := m.accounts[id]; taken {
			continue
		}
		a := Account{ID: id, Name: name, Email: email, SecretHash: slices.Clone(secretHash), Created: m.hooks.now()}
		m.accounts[id] = a
		return a, nil
	}
	return Account{}, errNoAccountID
}

// GetAccount implements Accounts.
func (m *Memory) GetAccount(id string) (Account, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Account{}, ErrClosed
	}
	a, ok := m.accounts[id]
	if !ok {
		return Account{}, ErrNoAccount
	}
	a.SecretHash = slices.Clone(a.SecretHash)
	return a, nil
}

// ListAccounts implements Accounts.
func (m *Memory) ListAccounts() ([]Account, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make([]Account, 0, len(m.accounts))
	for _, a := range m.accounts {
		a.SecretHash = slices.Clone(a.SecretHash)
		out = append(out, a)
	}
	sortAccounts(out)
	return out, nil
}

// SuspendAccount implements Accounts.
func (m *Memory) SuspendAccount(id string, suspended bool) (Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Account{}, ErrClosed
	}
	a, ok := m.accounts[id]
	if !ok {
		return Account{}, ErrNoAccount
	}
	setSuspended(&a, suspended, m.hooks.now())
	m.accounts[id] = a
	for _, kid := range m.owned[id] {
		k := m.keys[kid]
		k.Suspended = suspended
		m.keys[kid] = k
	}
	return a, nil
}

// CreateAccountKey implements Accounts.
func (m *Memory) CreateAccountKey(account, name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	a, ok := m.accounts[account]
	if !ok {
		return Key{}, ErrNoAccount
	}
	if err := canAddKey(a, m.accountKeys(account), false); err != nil {
		return Key{}, err
	}
	return m.newKey(Key{Name: name, Account: account})
}

// accountKeys lists an account's keys; m.mu held.
func (m *Memory) accountKeys(account string) []Key {
	var out []Key
	for _, id := range m.owned[account] {
		out = append(out, m.keys[id])
	}
	sortKeys(out)
	return out
}

// AccountKeys implements Accounts.
func (m *Memory) AccountKeys(account string) ([]Key, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.accounts[account]; !ok {
		return nil, ErrNoAccount
	}
	return append([]Key{}, m.accountKeys(account)...), nil
}

// updateKey applies fn to a stored key.
func (m *Memory) updateKey(id string, fn func(*Key) error) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	k, ok := m.keys[id]
	if !ok {
		return Key{}, ErrNotFound
	}
	if err := fn(&k); err != nil {
		return Key{}, err
	}
	m.keys[id] = k
	return k, nil
}

// RenameKey implements Accounts.
func (m *Memory) RenameKey(id, name string) (Key, error) {
	if err := checkName(name); err != nil {
		return Key{}, err
	}
	return m.updateKey(id, func(k *Key) error { k.Name = name; return nil })
}

// SetKeyLimit implements Accounts.
func (m *Memory) SetKeyLimit(id string, maxSessions int) (Key, error) {
	return m.updateKey(id, func(k *Key) error { k.MaxSessions = max(maxSessions, 0); return nil })
}

// RotateKey implements Accounts.
func (m *Memory) RotateKey(id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Key{}, ErrClosed
	}
	old, ok := m.keys[id]
	if !ok || old.Revoked {
		return Key{}, ErrNotFound
	}
	if old.Suspended {
		return Key{}, ErrSuspended
	}
	if old.Account != "" {
		if err := canAddKey(m.accounts[old.Account], m.accountKeys(old.Account), true); err != nil {
			return Key{}, err
		}
	}
	nk, err := m.newKey(Key{Name: old.Name, Account: old.Account, MaxSessions: old.MaxSessions})
	if err != nil {
		return Key{}, err
	}
	revoke(&old, nk.Created)
	m.keys[id] = old
	return nk, nil
}

// UsageHistory implements Accounts.
func (m *Memory) UsageHistory(id string) ([]UsageSample, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.keys[id]; !ok {
		return nil, ErrNotFound
	}
	return recentHistory(m.history[id], m.hooks.now()), nil
}

func sortAccounts(a []Account) {
	slices.SortFunc(a, func(x, y Account) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return cmp.Compare(x.ID, y.ID)
	})
}
