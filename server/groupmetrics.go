package server

import "github.com/prometheus/client_golang/prometheus"

// groupMetrics are the NetGroup server channel's metrics.
type groupMetrics struct {
	groupJoins    prometheus.Counter
	groupLeaves   *prometheus.CounterVec
	groupMessages *prometheus.CounterVec
	groupPlan     prometheus.Histogram
	groupDrops    *prometheus.CounterVec
}

func newGroupMetrics(s *Server) (*groupMetrics, []prometheus.Collector) {
	m := &groupMetrics{
		groupJoins: prometheus.NewCounter(prometheus.CounterOpts{Name: "stratus_group_joins_total", Help: "NetGroup joins."}),
		groupLeaves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_group_leaves_total",
			Help: "NetGroup leaves by reason (flow_closed, session_closed, moved)."}, []string{"reason"}),
		groupMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_group_bootstrap_messages_total",
			Help: "Peer IDs sent on GC flows: to a joiner about a member, to a member about a joiner, or to repair the ring after a leave."}, []string{"kind"}),
		groupPlan: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stratus_group_bootstrap_per_join",
			Help: "Bootstrap messages one join caused.", Buckets: prometheus.LinearBuckets(0, 1, 11)}),
		groupDrops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_group_drops_total",
			Help: "GC flows refused and GC messages dropped, by reason (not_connected, group_limit, member_limit, rate, malformed, oversized, unknown_message, duplicate, superseded, send_failed)."}, []string{"reason"}),
	}
	groups := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stratus_groups", Help: "NetGroups with members."},
		func() float64 { g, _ := s.groups.Totals(); return float64(g) })
	members := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stratus_group_members", Help: "NetGroup memberships."},
		func() float64 { _, n := s.groups.Totals(); return float64(n) })
	return m, []prometheus.Collector{m.groupJoins, m.groupLeaves, m.groupMessages, m.groupPlan, m.groupDrops, groups, members}
}

func (m *groupMetrics) groupDrop(reason string) { m.groupDrops.WithLabelValues(reason).Inc() }
