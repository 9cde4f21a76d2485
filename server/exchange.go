package server

import (
	"encoding/hex"
	"net/http"

	"github.com/stratus-rtmfp/stratus/internal/exchange"
	"github.com/stratus-rtmfp/stratus/internal/flash"
)

// The peer-ID exchange's calls on the NetConnection. The "stratus."
// prefix keeps them clear of any application's own method names.
const (
	callRegister   = "stratus.exchange.register"   // (name) → true; registers the caller's own peer ID
	callUnregister = "stratus.exchange.unregister" // (name) → true; only a name the caller holds
	callLookup     = "stratus.exchange.lookup"     // (name) → peer ID, or null
)

func newExchange(s *Server) *exchange.Registry {
	return exchange.New(exchange.Config{
		Live:            s.Connected,
		MaxNamesPerKey:  s.cfg.ExchangeMaxNamesPerKey,
		MaxNamesPerPeer: s.cfg.ExchangeMaxNamesPerPeer,
	})
}

// Connected reports whether peerID (64 hex digits) is connected right now
// with developer key key (by any of its sessions: the same identity may
// be connected with several keys at once).
func (s *Server) Connected(peerID, key string) bool {
	raw, err := hex.DecodeString(peerID)
	if err != nil || len(raw) != 32 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[peerKey{[32]byte(raw), key}] > 0
}

// Exchange returns the HTTP side of the peer-ID exchange (see the
// internal/exchange package and the README): Adobe's VideoPhone protocol
// at /exchange/{key}, a JSON API at /api/v1/exchange/{key}/names/{name},
// and Flash Player's policy files at /crossdomain.xml and
// /exchange/crossdomain.xml. Mount it at those paths.
func (s *Server) Exchange() http.Handler {
	mux := http.NewServeMux()
	h := &exchange.Handler{Registry: s.exchange, CheckKey: s.exchangeKey}
	h.Routes(mux)
	return mux
}

// ExchangeNames returns how many names a key has in the exchange.
func (s *Server) ExchangeNames(key string) int { return s.exchange.Count(key) }

// exchangeKey says whether a key may use the exchange.
func (s *Server) exchangeKey(key string) error {
	switch s.keys.check(key) {
	case keyValid:
		return nil
	case keyUnknown:
		return exchange.ErrUnknownKey
	}
	return exchange.ErrKeyRefused
}

// exchangeCall serves the exchange's NetConnection calls; it returns
// false for any other method.
func (s *Server) exchangeCall(c *client, cmd flash.Command) bool {
	switch cmd.Name {
	case callRegister, callUnregister, callLookup:
	default:
		return false
	}
	var name string
	if args := cmd.Arguments(); len(args) > 0 {
		name, _ = args[0].(string)
	}
	if err := exchange.CheckName(name); err != nil {
		c.callFailed(cmd, err.Error())
		return true
	}
	s.mu.Lock()
	key := c.key
	s.mu.Unlock()
	peer := hexID(c.peerID)
	var result any = true
	var err error
	switch cmd.Name {
	case callRegister:
		err = s.exchange.Register(key, name, peer, exchange.Self)
	case callUnregister:
		err = s.exchange.Unregister(key, name, peer)
	case callLookup:
		if id, ok := s.exchange.Lookup(key, name); ok {
			result = id
		} else {
			result = nil // null: not available
		}
	}
	if err != nil {
		c.callFailed(cmd, err.Error())
		return true
	}
	if cmd.TxID > 0 {
		c.command("_result", cmd.TxID, nil, result)
	}
	s.metrics.calls.WithLabelValues("exchange").Inc()
	return true
}
