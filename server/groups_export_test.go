package server

import "github.com/stratus-rtmfp/stratus/internal/membership"

// SetGroupDirectory plugs a membership directory into cfg, as cluster
// mode does, for the tests of package server_test.
func SetGroupDirectory(cfg *Config, f func(membership.Handler) membership.Directory) {
	cfg.groupDirectory = f
}

// Settle returns once the event callbacks the server's engines had queued
// have run. With one engine shard per core, callbacks about sessions of
// different shards run in no set order: a later client's event proves
// nothing about an earlier one's, a barrier across the shards does.
func Settle(s *Server) {
	for _, e := range s.engineList() {
		e.Run(func() {})
	}
}
