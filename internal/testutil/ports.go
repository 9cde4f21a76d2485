package testutil

import (
	"net"
	"testing"
)

// FreeTCPPorts returns n TCP ports that were free on 127.0.0.1 a moment
// ago: for servers whose addresses must be known before any of them
// starts (a cluster's seed routes). Another process could take one in
// between, which fails the start loudly rather than passing wrongly.
func FreeTCPPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
