package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratus-rtmfp/stratus/internal/httpx"
	"github.com/stratus-rtmfp/stratus/store"
)

// PacketStats are the packet and handshake counters of the server's
// listeners, added up.
type PacketStats struct {
	PacketsIn, PacketsOut, BytesIn, BytesOut uint64
	// Datagrams dropped, by reason: too short, unknown session ID, failed
	// decryption or checksum, wrong mode, bad cookie, bad certificate, bad
	// keying, a limit, oversized.
	DropShort, DropUnknownSID, DropDecrypt, DropMode     uint64
	DropCookie, DropCertificate, DropKeying, DropLimited uint64
	DropOversize                                         uint64
	HandshakesOK, HandshakesFailed, CookieChanges        uint64
	RHellosSent, RedirectsSent, FIHellosSent             uint64
	SessionsOpen                                         int64
	// HandlerPanics counts server event handlers that panicked (a bug:
	// each aborted its session, the server carried on).
	HandlerPanics uint64
	// Wakeups counts the iterations of the listeners' readers, each begun
	// by a batch of datagrams, a timer or writes from elsewhere. A wake-up
	// costs more than the protocol work of a datagram on a lightly loaded
	// server: wake-ups per datagram in says how well work is batched.
	Wakeups uint64
}

// engineStats adds up the engines' counters.
func (s *Server) engineStats() PacketStats {
	var t PacketStats
	for _, e := range s.engineList() {
		st := e.Stats()
		t.PacketsIn += st.PacketsIn
		t.PacketsOut += st.PacketsOut
		t.BytesIn += st.BytesIn
		t.BytesOut += st.BytesOut
		t.DropShort += st.DropShort
		t.DropUnknownSID += st.DropUnknownSID
		t.DropDecrypt += st.DropDecrypt
		t.DropMode += st.DropMode
		t.DropCookie += st.DropCookie
		t.DropCertificate += st.DropCertificate
		t.DropKeying += st.DropKeying
		t.DropLimited += st.DropLimited
		t.DropOversize += st.DropOversize
		t.HandshakesOK += st.HandshakesOK
		t.HandshakesFailed += st.HandshakesFailed
		t.CookieChanges += st.CookieChanges
		t.RHellosSent += st.RHellosSent
		t.RedirectsSent += st.RedirectsSent
		t.FIHellosSent += st.FIHellosSent
		t.SessionsOpen += st.SessionsOpen
		t.HandlerPanics += st.EventPanics
		t.Wakeups += st.Wakeups
	}
	return t
}

// EngineStats returns the summed packet and handshake counters of all
// listeners.
func (s *Server) EngineStats() PacketStats { return s.engineStats() }

// SessionInfo describes one session for the admin API.
type SessionInfo struct {
	PeerID    string           `json:"peer_id"`
	Address   string           `json:"address"`
	Addresses []string         `json:"addresses,omitempty"`
	Key       string           `json:"key,omitempty"`
	State     string           `json:"state"`
	Since     time.Time        `json:"since"`
	Stats     map[string]int64 `json:"stats"`
}

// Sessions lists the open sessions.
func (s *Server) Sessions() []SessionInfo {
	engines := s.engineList()
	var out []SessionInfo
	for _, e := range engines {
		for _, sess := range e.Sessions() {
			c, ok := sess.Value().(*client)
			if !ok {
				continue
			}
			s.mu.Lock()
			if c.gone || c.refusal != "" {
				s.mu.Unlock()
				continue // closing, or only there to be told a limit
			}
			info := SessionInfo{PeerID: hexID(c.peerID), Address: c.observed.String(), Key: c.key, Since: c.opened,
				State: [...]string{"wait_connect", "connected", "leaving"}[c.state]}
			for _, a := range c.addrs {
				info.Addresses = append(info.Addresses, a.String())
			}
			s.mu.Unlock()
			st := sess.Stats()
			info.Stats = map[string]int64{"packets_in": int64(st.PacketsRecv), "packets_out": int64(st.PacketsSent),
				"data_bytes_in": int64(st.DataBytesRecv), "data_bytes_out": int64(st.DataBytesSent), "retransmissions": int64(st.Retransmissions)}
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Admin returns the admin HTTP API:
//
//	GET  /healthz                   200 while serving, 503 while draining
//	GET  /metrics                   Prometheus metrics
//	GET  /api/sessions              open sessions
//	GET  /api/keys                  developer keys with their usage
//	POST /api/keys                  create a key: {"name": "..."}
//	GET  /api/keys/{key}            one key and its usage
//	POST /api/keys/{key}/revoke     revoke it (DELETE /api/keys/{key} too)
//	GET  /api/info                  fingerprint, listeners, public addresses
//	GET  /api/cluster               the cluster: nodes, sessions and load per node
//	GET  /api/cluster/sessions      connected clients on every node (the directory): ?key=K&node=N&limit=N (default 1000), or ?peer=ID
//	GET  /api/groups                NetGroups per developer key (groupRoutes)
//	GET  /api/groups/{id}           one group's members
//	GET  /debug/pprof/...           Go's profiler (net/http/pprof)
//
// Everything but /healthz needs o.Token as a bearer token, writes to /api/
// need a JSON content type, and every request a Host header naming the
// listener (see AdminOptions).
func (s *Server) Admin(o AdminOptions) http.Handler {
	g := newAdminGuard(s.adminRoutes(), o)
	if g.bad != nil {
		s.log.Error("the admin API refuses every request", "err", g.bad)
	}
	return g
}

func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		draining := s.draining || s.closed
		s.mu.Unlock()
		if draining {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		// A node cut off from its cluster still serves its own clients:
		// healthy, and it says so.
		w.Write([]byte("ok\n" + s.clusterHealth()))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/sessions", func(w http.ResponseWriter, r *http.Request) { httpx.WriteJSON(w, http.StatusOK, s.Sessions()) })
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		st, ok := s.Cluster()
		if !ok {
			httpx.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not clustered (stratus server --cluster)"})
			return
		}
		httpx.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /api/cluster/sessions", func(w http.ResponseWriter, r *http.Request) {
		if s.node == nil {
			httpx.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not clustered (stratus server --cluster)"})
			return
		}
		q := r.URL.Query()
		if id := q.Get("peer"); id != "" {
			p, ok := s.Peer(id)
			if !ok {
				httpx.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such peer connected"})
				return
			}
			httpx.WriteJSON(w, http.StatusOK, p)
			return
		}
		limit := 1000
		if v, err := strconv.Atoi(q.Get("limit")); err == nil && v >= 0 {
			limit = min(v, 100000)
		}
		total, list := s.Peers(q.Get("key"), q.Get("node"), limit)
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"total": total, "sessions": list})
	})
	mux.HandleFunc("GET /api/info", func(w http.ResponseWriter, r *http.Request) {
		var listeners []string
		for _, e := range s.engineList() {
			listeners = append(listeners, e.LocalAddr().String())
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"fingerprint": hexID(s.id.PeerID), "listeners": listeners,
			"public_addresses": addrStrings(s.cfg.PublicAddresses), "open": s.cfg.Open})
	})
	type keyView struct {
		store.Key
		Usage store.Usage `json:"usage"`
	}
	mux.HandleFunc("GET /api/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := s.Keys()
		if err != nil {
			writeError(w, err)
			return
		}
		out := make([]keyView, 0, len(keys))
		for _, k := range keys {
			_, u, _ := s.KeyUsage(k.ID)
			out = append(out, keyView{k, u})
		}
		httpx.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /api/keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && r.ContentLength != 0 {
			http.Error(w, "body: want {\"name\": \"...\"}", http.StatusBadRequest)
			return
		}
		k, err := s.CreateKey(req.Name)
		if err != nil {
			writeError(w, err)
			return
		}
		httpx.WriteJSON(w, http.StatusCreated, keyView{Key: k})
	})
	show := func(w http.ResponseWriter, r *http.Request) {
		k, u, err := s.KeyUsage(r.PathValue("key"))
		if err != nil {
			writeError(w, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, keyView{k, u})
	}
	revoke := func(w http.ResponseWriter, r *http.Request) {
		k, err := s.RevokeKey(r.PathValue("key"))
		if err != nil {
			writeError(w, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, keyView{Key: k})
	}
	mux.HandleFunc("GET /api/keys/{key}", show)
	mux.HandleFunc("POST /api/keys/{key}/revoke", revoke)
	mux.HandleFunc("DELETE /api/keys/{key}", revoke)
	s.groupRoutes(mux)
	return mux
}

func addrStrings(a []netip.AddrPort) []string {
	out := make([]string, 0, len(a))
	for _, x := range a {
		out = append(out, x.String())
	}
	return out
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrNotFound) {
		code = http.StatusNotFound
	}
	httpx.WriteError(w, code, err.Error())
}
