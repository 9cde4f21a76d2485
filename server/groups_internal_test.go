package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/store"
)

// A join that comes once the client is leaving (it finished its
// NetConnection flow, its key was revoked, the server drains: the session
// closes moments later) makes no membership, and is counted. Over the
// wire the session is gone before such a message can be made to arrive
// reliably, so the handler is called directly.
func TestGroupJoinWhileLeaving(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, _ := testServer(t, store.NewMemory(), func(c *Config) { c.Open = true; c.Registerer, c.Gatherer = reg, reg })
	c := &client{srv: s, key: "k", state: leaving}
	g := &gcFlow{c: c}
	c.gc = []*gcFlow{g}
	c.onGroupMessage(g, flash.AppendGroupJoin(nil, [32]byte{1}))
	var m dto.Metric
	s.metrics.groupDrops.WithLabelValues("not_connected").Write(&m)
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Fatalf("not_connected drops: %v", n)
	}
	if g.joined || s.groupMembers.Load() != 0 {
		t.Fatal("a leaving client joined")
	}
	if groups, members := s.groups.Totals(); groups != 0 || members != 0 {
		t.Fatalf("%d groups, %d members", groups, members)
	}
}
