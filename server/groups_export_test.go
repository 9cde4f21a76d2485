package server

import "github.com/stratus-rtmfp/stratus/internal/membership"

// SetGroupDirectory plugs a membership directory into cfg, as cluster
// mode does, for the tests of package server_test.
func SetGroupDirectory(cfg *Config, f func(membership.Handler) membership.Directory) {
	cfg.groupDirectory = f
}
