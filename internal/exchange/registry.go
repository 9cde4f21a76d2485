// Package exchange is the server's peer-ID exchange: the directory that
// Adobe's VideoPhone sample kept in a web script (reg.cgi), where a user
// registers their peer ID under a name and friends look it up. Unlike such
// a script it only accepts a peer ID that is connected right now with the
// developer key, drops entries when their session ends, lets nobody but the
// same peer take a name while its holder is connected, and bounds what it
// holds. Registry is the directory; the HTTP protocols are in http.go.
package exchange

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest name accepted, in bytes.
const MaxNameLen = 128

// Defaults for Config.
const (
	DefaultMaxNamesPerKey  = 10000
	DefaultMaxNamesPerPeer = 8
)

// Config configures a Registry.
type Config struct {
	// Live reports whether peerID (64 lowercase hex digits) is connected
	// right now with developer key key. It is called with the registry's
	// lock held, so it must not call back into the Registry.
	Live func(peerID, key string) bool
	// Bounds; 0 means the default.
	MaxNamesPerKey, MaxNamesPerPeer int
}

// Registry maps (developer key, name) to peer IDs. It is safe for
// concurrent use.
type Registry struct {
	cfg    Config
	mu     sync.Mutex
	keys   map[string]map[string]string // key -> name -> peer ID
	byPeer map[string][]entry           // peer ID -> its names
}

type entry struct{ key, name string }

// New returns an empty registry.
func New(cfg Config) *Registry {
	if cfg.MaxNamesPerKey <= 0 {
		cfg.MaxNamesPerKey = DefaultMaxNamesPerKey
	}
	if cfg.MaxNamesPerPeer <= 0 {
		cfg.MaxNamesPerPeer = DefaultMaxNamesPerPeer
	}
	return &Registry{cfg: cfg, keys: map[string]map[string]string{}, byPeer: map[string][]entry{}}
}

// CheckName validates a name.
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return ErrBadName
	}
	return nil
}

// ParsePeerID validates a peer ID and returns it in lowercase.
func ParsePeerID(id string) (string, error) {
	if len(id) != 64 {
		return "", ErrBadPeerID
	}
	id = strings.ToLower(id)
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", ErrBadPeerID
		}
	}
	return id, nil
}

// Register gives name to peer under key. Registering a name one already
// holds refreshes it (VideoPhone does every 30 minutes). A name held by a
// peer whose session ended is taken over.
func (r *Registry) Register(key, name, peer string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	peer, err := ParsePeerID(peer)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.cfg.Live(peer, key) {
		return ErrNotConnected
	}
	names := r.keys[key]
	holder, held := names[name]
	switch {
	case held && holder == peer:
		return nil
	case held && r.cfg.Live(holder, key):
		return ErrTaken
	case held:
		// Its holder left: take it over. Dropping it may have removed
		// the key's map (it was the last name), so read it again.
		r.drop(key, name, holder)
		names = r.keys[key]
	}
	if len(names) >= r.cfg.MaxNamesPerKey {
		return ErrKeyFull
	}
	if len(r.byPeer[peer]) >= r.cfg.MaxNamesPerPeer {
		return ErrPeerFull
	}
	if names == nil {
		names = map[string]string{}
		r.keys[key] = names
	}
	names[name] = peer
	r.byPeer[peer] = append(r.byPeer[peer], entry{key, name})
	return nil
}

// Unregister removes name. With peer set (a caller the server knows, on
// its own session) the name goes if that peer holds it. Without (an HTTP
// request, which proves nothing about who sends it) it goes only if its
// holder's session has ended, so that nobody can free another's name;
// otherwise ErrHeld: the name goes when that session ends. A name nobody
// holds is not an error.
func (r *Registry) Unregister(key, name, peer string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	holder, held := r.keys[key][name]
	switch {
	case !held:
		return nil
	case peer != "" && holder != strings.ToLower(peer):
		return ErrTaken
	case peer == "" && r.cfg.Live(holder, key):
		return ErrHeld
	}
	r.drop(key, name, holder)
	return nil
}

// Lookup returns the peer ID registered under name, if its session is
// connected.
func (r *Registry) Lookup(key, name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	peer, ok := r.keys[key][name]
	if !ok || !r.cfg.Live(peer, key) {
		return "", false
	}
	return peer, true
}

// Forget drops every name of peer: its session ended.
func (r *Registry) Forget(peer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.byPeer[peer] {
		if names := r.keys[e.key]; names[e.name] == peer {
			delete(names, e.name)
			if len(names) == 0 {
				delete(r.keys, e.key)
			}
		}
	}
	delete(r.byPeer, peer)
}

// Count returns how many names key has registered.
func (r *Registry) Count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys[key])
}

// drop removes one entry; r.mu held.
func (r *Registry) drop(key, name, peer string) {
	names := r.keys[key]
	delete(names, name)
	if len(names) == 0 {
		delete(r.keys, key)
	}
	list := r.byPeer[peer]
	for i, e := range list {
		if e.key == key && e.name == name {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byPeer, peer)
	} else {
		r.byPeer[peer] = list
	}
}
