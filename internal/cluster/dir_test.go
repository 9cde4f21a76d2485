package cluster

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/internal/directory/directorytest"
)

// The cluster's directory passes the same conformance suite as a single
// server's, on a 3-node cluster (embedded NATS, routes on loopback) and
// on a lone node.
func TestDirectoryConformance(t *testing.T) {
	leak := goleak.IgnoreCurrent()
	for _, n := range []int{3, 1} {
		t.Run(map[int]string{1: "1node", 3: "3nodes"}[n], func(t *testing.T) {
			tc := startCluster(t, n, nil)
			directorytest.Run(t, func(t *testing.T, hs []directory.Handler) []directorytest.Node {
				var out []directorytest.Node
				for i, nd := range tc.nodes[:min(len(hs), len(tc.nodes))] {
					tc.handlers[i].set(hs[i])
					out = append(out, directorytest.Node{Name: nd.Name(), Dir: nd.Directory()})
				}
				return out
			})
		})
	}
	goleak.VerifyNone(t, leak)
}
