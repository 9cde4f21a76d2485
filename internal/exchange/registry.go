// Package exchange is the server's peer-ID exchange: the directory that
// Adobe's VideoPhone sample kept in a web script (reg.cgi), where a user
// registers their peer ID under a name and friends look it up. Unlike such
// a script it only accepts a peer ID that is connected right now with the
// developer key, drops entries when their session ends, lets nobody but the
// same peer take a name while its holder is connected, and bounds what it
// holds, separately for what peers register themselves and what anybody
// registers for them over HTTP. Registry is the directory; the HTTP
// protocols are in http.go.
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

// Origin is who made a registration.
type Origin uint8

const (
	// Self: the peer itself, on its own session (the NetConnection call
	// stratus.exchange.register), which proves who asks.
	Self Origin = iota
	// Anyone: an HTTP request, which proves nothing about who sends it;
	// peer IDs are not secret (lookups hand them out).
	Anyone
	origins
)

// Config configures a Registry.
type Config struct {
	// Live reports whether peerID (64 lowercase hex digits) is connected
	// right now with developer key key. It is called with the registry's
	// lock held, so it must not call back into the Registry.
	Live func(peerID, key string) bool
	// Bounds, each applied to each Origin separately, so that names
	// registered over HTTP against a peer's ID, which anybody can make,
	// never use up the room of the peer's own registrations. 0 means the
	// default.
	MaxNamesPerKey, MaxNamesPerPeer int
}

// Registry maps (developer key, name) to peer IDs. It is safe for
// concurrent use.
type Registry struct {
	cfg    Config
	mu     sync.Mutex
	keys   map[string]*keyNames // developer key -> its names
	byPeer map[string][]entry   // peer ID -> its names
}

// keyNames are one developer key's names.
type keyNames struct {
	names map[string]holder
	count [origins]int // names by origin
}

type holder struct {
	peer   string
	origin Origin
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
	return &Registry{cfg: cfg, keys: map[string]*keyNames{}, byPeer: map[string][]entry{}}
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

// Register gives name to peer under key, on behalf of by. Registering a
// name one already holds refreshes it (VideoPhone does every 30
// minutes); the peer's own registration of a name made for it over HTTP
// makes it its own, room permitting. A name held by a peer whose session
// ended is taken over.
func (r *Registry) Register(key, name, peer string, by Origin) error {
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
	kn := r.keys[key]
	var h holder
	held := false
	if kn != nil {
		h, held = kn.names[name]
	}
	switch {
	case held && h.peer == peer:
		if by == Self && h.origin != Self && r.room(kn, peer, Self) == nil {
			kn.count[h.origin]--
			kn.count[Self]++
			kn.names[name] = holder{peer, Self}
		}
		return nil
	case held && r.cfg.Live(h.peer, key):
		return ErrTaken
	case held:
		// Its holder left: take it over. Dropping it may have removed
		// the key's names (it was the last one), so look again.
		r.drop(key, name, h.peer)
		kn = r.keys[key]
	}
	if err := r.room(kn, peer, by); err != nil {
		return err
	}
	if kn == nil {
		kn = &keyNames{names: map[string]holder{}}
		r.keys[key] = kn
	}
	kn.names[name] = holder{peer, by}
	kn.count[by]++
	r.byPeer[peer] = append(r.byPeer[peer], entry{key, name})
	return nil
}

// room says whether the key (kn, which may be nil) and the peer may hold
// one more name made by by; r.mu held.
func (r *Registry) room(kn *keyNames, peer string, by Origin) error {
	if kn != nil && kn.count[by] >= r.cfg.MaxNamesPerKey {
		return ErrKeyFull
	}
	n := 0
	for _, e := range r.byPeer[peer] {
		if kn := r.keys[e.key]; kn != nil && kn.names[e.name].origin == by {
			n++
		}
	}
	if n >= r.cfg.MaxNamesPerPeer {
		return ErrPeerFull
	}
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
	kn := r.keys[key]
	if kn == nil {
		return nil
	}
	h, held := kn.names[name]
	switch {
	case !held:
		return nil
	case peer != "" && h.peer != strings.ToLower(peer):
		return ErrTaken
	case peer == "" && r.cfg.Live(h.peer, key):
		return ErrHeld
	}
	r.drop(key, name, h.peer)
	return nil
}

// Lookup returns the peer ID registered under name, if its session is
// connected.
func (r *Registry) Lookup(key, name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kn := r.keys[key]
	if kn == nil {
		return "", false
	}
	h, ok := kn.names[name]
	if !ok || !r.cfg.Live(h.peer, key) {
		return "", false
	}
	return h.peer, true
}

// Forget drops peer's names under key unless the peer is still
// connected with that key (another session of the same identity): a
// session of it ended. The check is made here, under the registry's lock,
// so that a session connecting meanwhile never loses the names it
// registers.
func (r *Registry) Forget(peer, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.Live(peer, key) {
		return
	}
	list := r.byPeer[peer]
	kept := list[:0]
	for _, e := range list {
		if e.key == key {
			r.unname(e.key, e.name, peer)
		} else {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		delete(r.byPeer, peer)
	} else {
		r.byPeer[peer] = kept
	}
}

// Count returns how many names key has registered.
func (r *Registry) Count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kn := r.keys[key]; kn != nil {
		return len(kn.names)
	}
	return 0
}

// drop removes one entry; r.mu held.
func (r *Registry) drop(key, name, peer string) {
	r.unname(key, name, peer)
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

// unname removes name from key's names if peer holds it; r.mu held.
func (r *Registry) unname(key, name, peer string) {
	kn := r.keys[key]
	if kn == nil {
		return
	}
	if h, ok := kn.names[name]; ok && h.peer == peer {
		delete(kn.names, name)
		kn.count[h.origin]--
		if len(kn.names) == 0 {
			delete(r.keys, key)
		}
	}
}
