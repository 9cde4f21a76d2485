package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. Per-key series carry the
// developer key as a label: keys are few and operator-issued.
type metrics struct {
	reg          prometheus.Registerer
	gather       prometheus.Gatherer
	sessions     prometheus.Gauge
	clients      prometheus.Gauge
	connects     *prometheus.CounterVec
	keyConnects  *prometheus.CounterVec
	intros       *prometheus.CounterVec
	keyIntros    *prometheus.CounterVec
	introLatency prometheus.Histogram
	drops        *prometheus.CounterVec
	calls        *prometheus.CounterVec
	relays       prometheus.Counter
	keyBytes     *prometheus.CounterVec
	usageErrors  prometheus.Counter
	redirects    *prometheus.CounterVec
	*groupMetrics
}

func newMetrics(s *Server, reg prometheus.Registerer, g prometheus.Gatherer) *metrics {
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, g = r, r
	}
	m := &metrics{
		reg: reg, gather: g,
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stratus_sessions", Help: "Open RTMFP sessions."}),
		clients:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "stratus_clients", Help: "Clients that completed connect."}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_connects_total",
			Help: "connect commands by result (success, unknown_key, revoked_key, suspended_key, key_limit, session_limit, ip_session_limit, draining, bad_request)."}, []string{"result"}),
		keyConnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_key_connects_total",
			Help: "connect commands per developer key and result."}, []string{"key", "result"}),
		intros: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_introductions_total",
			Help: "Peer-ID lookups by result (ok, unknown, dead, self, isolated, anonymous, limited)."}, []string{"result"}),
		keyIntros: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_key_introductions_total",
			Help: "Introductions per developer key of the target."}, []string{"key"}),
		introLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stratus_introduction_seconds",
			Help: "Time to answer a lookup with Redirect and Forwarded IHello.", Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_server_drops_total",
			Help: "Handshakes and sessions the server's limits dropped or refused, by reason (hello_prefix_rate, hello_rate, handshake_rate, lookup_rate, session_limit, ip_session_limit, draining, the last three with _refused when the client was told, connect_timeout)."}, []string{"reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_calls_total",
			Help: "NetConnection calls the server answered, by result."}, []string{"result"}),
		relays: prometheus.NewCounter(prometheus.CounterOpts{Name: "stratus_relays_total", Help: "relay calls forwarded as onRelay."}),
		keyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_key_control_bytes_total",
			Help: "Bytes of NetConnection messages (commands, not media) per developer key and direction."}, []string{"key", "dir"}),
	}
	m.usageErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "stratus_usage_write_errors_total",
		Help: "Failed writes of per-key usage counters to the store (the counters are kept and written with the next batch)."})
	m.redirects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stratus_cluster_redirects_total",
		Help: "New clients sent to a less loaded cluster node with an RTMFP Redirect at handshake, by node."}, []string{"node"})
	reg.MustRegister(m.redirects, &clusterCollector{s: s}, m.usageErrors, m.sessions, m.clients, m.connects, m.keyConnects, m.intros, m.keyIntros, m.introLatency, m.drops, m.calls, m.relays, m.keyBytes,
		&engineCollector{s: s})
	var groupCollectors []prometheus.Collector
	m.groupMetrics, groupCollectors = newGroupMetrics(s)
	reg.MustRegister(groupCollectors...)
	return m
}

func (m *metrics) connect(key, result string) {
	m.connects.WithLabelValues(result).Inc()
	if key != "" {
		m.keyConnects.WithLabelValues(key, result).Inc()
	}
}

func (m *metrics) intro(key, result string) {
	m.intros.WithLabelValues(result).Inc()
	if key != "" && result == "ok" {
		m.keyIntros.WithLabelValues(key).Inc()
	}
}

func (m *metrics) bytesIn(key string, n int) {
	if key != "" {
		m.keyBytes.WithLabelValues(key, "in").Add(float64(n))
	}
}

func (m *metrics) bytesOut(key string, n int) {
	if key != "" {
		m.keyBytes.WithLabelValues(key, "out").Add(float64(n))
	}
}

// engineCollector exports the engines' packet, handshake and drop counters.
type engineCollector struct{ s *Server }

var (
	descPackets    = prometheus.NewDesc("stratus_packets_total", "UDP datagrams by direction.", []string{"dir"}, nil)
	descBytes      = prometheus.NewDesc("stratus_bytes_total", "UDP bytes by direction.", []string{"dir"}, nil)
	descHandshakes = prometheus.NewDesc("stratus_handshakes_total", "Keying handshakes by result.", []string{"result"}, nil)
	descDrops      = prometheus.NewDesc("stratus_drops_total", "Datagrams dropped by the engines, by reason.", []string{"reason"}, nil)
	descHellos     = prometheus.NewDesc("stratus_startup_replies_total", "Startup replies sent, by kind.", []string{"kind"}, nil)
	descWakeups    = prometheus.NewDesc("stratus_wakeups_total", "Iterations of the UDP readers: each began with a wake-up for datagrams, a timer or writes from elsewhere.", nil, nil)
	descPanics     = prometheus.NewDesc("stratus_handler_panics_total", "Server event handlers that panicked (each aborted its session; a bug to report).", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descHandshakes, descDrops, descHellos, descWakeups, descPanics} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.engineStats()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(descPackets, st.PacketsIn, "in")
	counter(descPackets, st.PacketsOut, "out")
	counter(descBytes, st.BytesIn, "in")
	counter(descBytes, st.BytesOut, "out")
	counter(descHandshakes, st.HandshakesOK, "ok")
	counter(descHandshakes, st.HandshakesFailed, "failed")
	counter(descDrops, st.DropShort, "short")
	counter(descDrops, st.DropUnknownSID, "unknown_session")
	counter(descDrops, st.DropDecrypt, "decrypt")
	counter(descDrops, st.DropMode, "mode")
	counter(descDrops, st.DropCookie, "cookie")
	counter(descDrops, st.DropCertificate, "certificate")
	counter(descDrops, st.DropKeying, "keying")
	counter(descDrops, st.DropLimited, "limited")
	counter(descDrops, st.DropOversize, "oversize")
	counter(descHellos, st.RHellosSent, "rhello")
	counter(descHellos, st.RedirectsSent, "redirect")
	counter(descHellos, st.FIHellosSent, "fihello")
	counter(descHellos, st.CookieChanges, "cookie_change")
	ch <- prometheus.MustNewConstMetric(descWakeups, prometheus.CounterValue, float64(st.Wakeups))
	ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(st.HandlerPanics))
}
