//go:build !linux

package engine

import "net"

// newUDPSocket returns the portable socket (the batched fast path is
// Linux's).
func newUDPSocket(conn *net.UDPConn, warn func(error, int)) socket { return newConnSocket(conn, warn) }

// openShardConns gives one shard elsewhere than on Linux.
func openShardConns(conn *net.UDPConn, n int) ([]*net.UDPConn, bool, error) {
	return []*net.UDPConn{conn}, false, nil
}
