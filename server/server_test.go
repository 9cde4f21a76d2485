package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
	"github.com/stratus-rtmfp/stratus/store"
)

// testServer runs a server with st on a loopback UDP socket (servertest)
// and returns it with its base URL.
func testServer(t *testing.T, st store.Store, mod func(*server.Config)) (*servertest.Server, string) {
	t.Helper()
	cfg := server.Config{Store: st}
	if mod != nil {
		mod(&cfg)
	}
	srv := servertest.Start(t, cfg)
	return srv, "rtmfp://" + srv.Addr.String()
}

func connect(t *testing.T, url string) *rtmfp.NetConnection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func statusCode(err error) string {
	var se *rtmfp.StatusError
	if errors.As(err, &se) {
		return se.Status.Code
	}
	if err == nil {
		return "no error"
	}
	return "not a status: " + err.Error()
}

func hexID(id [32]byte) string { return fmt.Sprintf("%x", id[:]) }

func TestConnectDeveloperKeys(t *testing.T) {
	leak := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leak) }) // runs after the other cleanups
	st := store.NewMemory()
	valid, _ := st.CreateKey("valid")
	revoked, _ := st.CreateKey("revoked")
	st.RevokeKey(revoked.ID)
	srv, base := testServer(t, st, nil)

	nc := connect(t, base+"/"+valid.ID)
	// nearID on the client equals what the server records.
	sessions := srv.Sessions()
	if len(sessions) != 1 || sessions[0].PeerID != nc.NearID() || sessions[0].Key != valid.ID || sessions[0].State != "connected" {
		t.Fatalf("server records %+v, client nearID %s", sessions, nc.NearID())
	}
	if nc.FarID() != hexID(srv.Fingerprint()) {
		t.Fatalf("farID %s, server fingerprint %s", nc.FarID(), hexID(srv.Fingerprint()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sk, pk, err := nc.Keepalive(ctx); err != nil || sk != 15*time.Second || pk != 10*time.Second {
		t.Fatalf("set-keepalive %v %v %v", sk, pk, err)
	}
	// The key may also come as a longer path: rtmfp://host/KEY/app/instance.
	connect(t, base+"/"+valid.ID+"/chat/room1")

	for _, c := range []struct{ url, code string }{
		{base + "/00000000000000000000dead-000000000000", rtmfp.ConnectFailed},
		{base + "/" + revoked.ID, rtmfp.ConnectRejected},
		{base + "/", rtmfp.ConnectFailed},
	} {
		_, err := rtmfp.Connect(ctx, c.url, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 5 * time.Second})
		if err == nil || statusCode(err) != c.code {
			t.Errorf("%s: got %v, want %s", c.url, err, c.code)
		}
	}
	// Open mode accepts any key.
	_, openBase := testServer(t, store.NewMemory(), func(c *server.Config) { c.Open = true })
	connect(t, openBase+"/anything-goes")

	_, u, _ := srv.KeyUsage(valid.ID)
	if u.Connects != 2 {
		t.Errorf("usage records %d connects", u.Connects)
	}
	_, u, _ = srv.KeyUsage(revoked.ID)
	if u.Rejected != 1 {
		t.Errorf("usage records %d rejected", u.Rejected)
	}
}

func TestUnreachableServerFails(t *testing.T) {
	conn, _ := net.ListenPacket("udp4", "127.0.0.1:0") // nobody answers here
	defer conn.Close()
	start := time.Now()
	_, err := rtmfp.Connect(context.Background(), "rtmfp://"+conn.LocalAddr().String()+"/key",
		&rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 2 * time.Second})
	if statusCode(err) != rtmfp.ConnectFailed || time.Since(start) > 4*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

func TestRevokeClosesLiveSessions(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	srv, base := testServer(t, st, nil)
	nc := connect(t, base+"/"+k.ID)
	if _, err := srv.RevokeKey(k.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-nc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session of a revoked key still open")
	}
	var codes []string
	for len(nc.Status()) > 0 {
		codes = append(codes, (<-nc.Status()).Code)
	}
	if !strings.Contains(strings.Join(codes, " "), rtmfp.ConnectRejected) || codes[len(codes)-1] != rtmfp.ConnectClosed {
		t.Fatalf("status events %v", codes)
	}
}

func TestCallsRelayAndErrors(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	other, _ := st.CreateKey("")
	_, base := testServer(t, st, nil)
	a := connect(t, base+"/"+k.ID)
	b := connect(t, base+"/"+k.ID)
	c := connect(t, base+"/"+other.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// An unknown call gets _error NetConnection.Call.Failed, never silence.
	if _, err := a.Call(ctx, "noSuchMethod", 1.0); statusCode(err) != rtmfp.CallFailed {
		t.Fatalf("unknown call: %v", err)
	}
	// relay(peerID, ...) reaches the peer as onRelay(fromID, ...).
	got := make(chan []any, 1)
	b.Handle("onRelay", func(args []any) { got <- args })
	if _, err := a.Call(ctx, "relay", b.NearID(), "hello", 42.0); err != nil {
		t.Fatal(err)
	}
	select {
	case args := <-got:
		if len(args) != 3 || args[0] != a.NearID() || args[1] != "hello" || args[2] != 42.0 {
			t.Fatalf("onRelay %v", args)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no onRelay")
	}
	// Not across developer keys.
	if _, err := c.Call(ctx, "relay", b.NearID(), "x"); statusCode(err) != rtmfp.CallFailed {
		t.Fatalf("relay across keys: %v", err)
	}
	// createStream works; play on a server stream fails cleanly.
	res, err := a.Call(ctx, "createStream")
	if err != nil || len(res) != 1 || res[0] != 1.0 {
		t.Fatalf("createStream %v %v", res, err)
	}
}

func TestRestartKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv, base := testServer(t, st, nil)
	k, _ := srv.CreateKey("persistent")
	nc := connect(t, base+"/"+k.ID)
	nc.Close()
	srv.Close()
	st.Close()

	st2, err := store.OpenBolt(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	srv2, base2 := testServer(t, st2, nil)
	connect(t, base2+"/"+k.ID)
	if _, u, _ := srv2.KeyUsage(k.ID); u.Connects != 2 {
		t.Fatalf("usage after restart: %+v", u)
	}
}

// Two clients introduced to each other open a direct session and exchange
// messages; none of their data passes through the server.
func TestIntroductionDirectSession(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	srv, base := testServer(t, st, nil)
	a := connect(t, base+"/"+k.ID)
	b := connect(t, base+"/"+k.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := srv.EngineStats()
	p, err := a.DialPeer(ctx, b.NearID())
	if err != nil {
		t.Fatal(err)
	}
	if p.FarID() != b.NearID() || p.RemoteAddr().String() != b.LocalAddr().String() {
		t.Fatalf("direct session to %s at %v", p.FarID(), p.RemoteAddr())
	}
	payload := bytes.Repeat([]byte("media "), 50000) // 300 KB
	f, _ := p.OpenFlow([]byte("P2P"))
	f.Write(payload)
	f.Close()
	bp, rf, err := b.AcceptPeerFlow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bp.FarID() != a.NearID() {
		t.Fatal("B sees the wrong peer")
	}
	m, err := rf.Read(ctx)
	if err != nil || !bytes.Equal(m, payload) {
		t.Fatalf("%d bytes, %v", len(m), err)
	}
	if _, err := rf.Read(ctx); err != io.EOF {
		t.Fatal(err)
	}
	after := srv.EngineStats()
	if in := after.BytesIn - before.BytesIn; in > 20000 {
		t.Fatalf("the server received %d bytes during a %d-byte P2P transfer", in, len(payload))
	}
	if after.FIHellosSent == before.FIHellosSent || after.RedirectsSent == before.RedirectsSent {
		t.Fatal("no introduction was counted")
	}
}

func TestShutdownDrains(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	srv, base := testServer(t, st, nil)
	nc := connect(t, base+"/"+k.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-nc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client not told")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var codes []string
	for len(nc.Status()) > 0 {
		codes = append(codes, (<-nc.Status()).Code)
	}
	if !strings.Contains(strings.Join(codes, " "), rtmfp.ConnectAppShutdown) {
		t.Fatalf("status events %v", codes)
	}
}

// adminServer serves srv's admin API on a loopback listener with a token
// and returns its base URL and a client that sends the token.
func adminServer(t *testing.T, srv *servertest.Server) (string, *adminClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Admin(server.AdminOptions{Token: testToken, Addr: ln.Addr().String()})}}
	h.Start()
	t.Cleanup(h.Close)
	return h.URL, &adminClient{t: t, base: h.URL}
}

const testToken = "0123456789abcdef0123456789abcdef"

type adminClient struct {
	t    *testing.T
	base string
}

// do sends a request with the bearer token (and a JSON content type when
// there is a body) and returns the status code and body.
func (c *adminClient) do(method, path, body string, hdr ...string) (int, string) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPI(t *testing.T) {
	st := store.NewMemory()
	srv, base := testServer(t, st, nil)
	_, c := adminServer(t, srv)
	if code, body := c.do("POST", "/api/keys", `{"name":"from api"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	keys, _ := srv.Keys()
	connect(t, base+"/"+keys[0].ID)
	get := func(path string) string {
		code, body := c.do("GET", path, "")
		return fmt.Sprint(code) + " " + body
	}
	for path, want := range map[string]string{
		"/healthz":                "200 ok",
		"/api/keys":               `"name": "from api"`,
		"/api/keys/" + keys[0].ID: `"connects": 1`,
		"/api/sessions":           `"state": "connected"`,
		"/api/keys/nope":          "404",
		"/metrics":                `stratus_connects_total{result="success"} 1`,
		"/api/info":               `"fingerprint"`,
		"/debug/pprof/":           "200 ",
		"/debug/pprof/goroutine":  "200 ",
	} {
		if got := get(path); !strings.Contains(got, want) {
			t.Errorf("%s: %q does not contain %q", path, got[:min(len(got), 300)], want)
		}
	}
	if !strings.Contains(get("/metrics"), `stratus_key_connects_total{key="`+keys[0].ID+`",result="success"} 1`) {
		t.Error("no per-key connect metric")
	}
}

// The admin API refuses requests without the token, with a Host that does
// not name the listener (DNS rebinding) and writes that are not JSON
// (cross-site forms); a server without a token refuses everything.
func TestAdminGuard(t *testing.T) {
	srv, _ := testServer(t, store.NewMemory(), nil)
	base, c := adminServer(t, srv)
	port := base[strings.LastIndexByte(base, ':')+1:]
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		hdr          []string
		want         int
	}{
		{"healthz needs no token", "GET", "/healthz", "", []string{"Authorization", ""}, 200},
		{"no token", "GET", "/api/keys", "", []string{"Authorization", ""}, 401},
		{"wrong token", "GET", "/api/keys", "", []string{"Authorization", "Bearer nope"}, 401},
		{"basic auth is not a bearer token", "GET", "/api/keys", "", []string{"Authorization", "Basic " + testToken}, 401},
		{"metrics need the token", "GET", "/metrics", "", []string{"Authorization", ""}, 401},
		{"pprof needs the token", "GET", "/debug/pprof/", "", []string{"Authorization", ""}, 401},
		{"create without token", "POST", "/api/keys", `{"name":"x"}`, []string{"Authorization", ""}, 401},
		{"form post", "POST", "/api/keys", `name=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"text/plain post (no preflight)", "POST", "/api/keys", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415},
		{"revoke without content type", "POST", "/api/keys/" + strings.Repeat("0", 24) + "-" + strings.Repeat("0", 12) + "/revoke", "", nil, 415},
		{"rebinding host", "GET", "/api/keys", "", []string{"Host", "evil.example:" + port}, 421},
		{"rebinding host on healthz", "GET", "/healthz", "", []string{"Host", "evil.example:" + port}, 421},
		{"other port", "GET", "/api/keys", "", []string{"Host", "127.0.0.1:1"}, 421},
		{"other address", "GET", "/api/keys", "", []string{"Host", "10.1.2.3:" + port}, 421},
		{"no port", "GET", "/api/keys", "", []string{"Host", "127.0.0.1"}, 421},
		{"localhost", "GET", "/api/keys", "", []string{"Host", "localhost:" + port}, 200},
		{"json with charset", "POST", "/api/keys", `{"name":"y"}`, []string{"Content-Type", "application/json; charset=utf-8"}, 201},
	} {
		if code, body := c.do(tc.method, tc.path, tc.body, tc.hdr...); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	keys, _ := srv.Keys()
	if len(keys) != 1 || keys[0].Name != "y" {
		t.Errorf("keys after the refused writes: %+v", keys)
	}
	// No token configured: nothing but /healthz.
	h := httptest.NewServer(srv.Admin(server.AdminOptions{}))
	defer h.Close()
	req, _ := http.NewRequest("GET", h.URL+"/api/keys", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("empty token: %s", resp.Status)
	}
}

// AdminOptions.Addr in the forms net.Listen takes: ":PORT" is every
// address (the Host check then accepts any IP literal and localhost, on
// that port); a DNS name other than localhost cannot be checked without
// DNS, so it, and an Addr that does not parse, make every request fail
// with 500 naming the problem (not a silent 421), and the server logs it.
func TestAdminAddrForms(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	srv, _ := testServer(t, store.NewMemory(), func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
	})
	get := func(o server.AdminOptions, host string) (int, string) {
		req := httptest.NewRequest("GET", "http://"+host+"/api/keys", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		srv.Admin(o).ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct {
		addr, host string
		want       int
	}{
		{":8935", "127.0.0.1:8935", 200},
		{":8935", "[::1]:8935", 200},
		{":8935", "localhost:8935", 200},
		{":8935", "127.0.0.1:8936", 421},
		{":8935", "evil.example:8935", 421},
		{"localhost:8935", "127.0.0.1:8935", 200},
		{"LOCALHOST:8935", "localhost:8935", 200},
		{"[::1]:8935", "[::1]:8935", 200},
		{"[::1]:8935", "127.0.0.1:8935", 421},
	} {
		if code, body := get(server.AdminOptions{Token: testToken, Addr: tc.addr}, tc.host); code != tc.want {
			t.Errorf("Addr %q, Host %q: %d %s, want %d", tc.addr, tc.host, code, body, tc.want)
		}
	}
	for _, addr := range []string{"stratus.example.com:8935", "8935", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:70000"} {
		code, body := get(server.AdminOptions{Token: testToken, Addr: addr}, "127.0.0.1:8935")
		if code != 500 || !strings.Contains(body, "AdminOptions.Addr") || !strings.Contains(body, addr) {
			t.Errorf("unusable Addr %q: %d %s, want 500 naming it", addr, code, body)
		}
		mu.Lock()
		logged := strings.Contains(logs.String(), "AdminOptions.Addr") && strings.Contains(logs.String(), addr)
		mu.Unlock()
		if !logged {
			t.Errorf("unusable Addr %q was not logged", addr)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// introResults reads stratus_introductions_total by result.
func introResults(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	return metricValues(t, g, "stratus_introductions_total", "result")
}

// Lookups: a connected peer of the same key is introduced; unknown peers,
// self-lookups and peers of another developer key are not; a lookup from an
// address with no session is served or refused as RefuseAnonymousLookups
// says. Each case is checked by the result the server recorded for that
// very lookup, not only by the dial failing (which could fail for any
// reason).
func TestIntroductionPolicy(t *testing.T) {
	st := store.NewMemory()
	k1, _ := st.CreateKey("")
	k2, _ := st.CreateKey("")
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			srv, base := testServer(t, st, func(c *server.Config) {
				c.RefuseAnonymousLookups = refuse
				c.Registerer, c.Gatherer = reg, reg
			})
			a := connect(t, base+"/"+k1.ID)
			b := connect(t, base+"/"+k1.ID)
			other := connect(t, base+"/"+k2.ID)
			// expect runs one lookup and checks that exactly that result
			// was recorded for it (retransmitted IHellos count again, so
			// "at least once, and nothing else").
			expect := func(what, result string, lookup func() error, wantOK bool) {
				t.Helper()
				before := introResults(t, reg)
				err := lookup()
				after := introResults(t, reg)
				if wantOK != (err == nil) {
					t.Errorf("%s: lookup error %v", what, err)
				}
				for r, n := range after {
					d := n - before[r]
					if r == result && d < 1 {
						t.Errorf("%s: no %q introduction result recorded", what, result)
					}
					if r != result && d != 0 {
						t.Errorf("%s: recorded %v × %q, want only %q", what, d, r, result)
					}
				}
				if _, ok := after[result]; !ok {
					t.Errorf("%s: no %q introduction result recorded", what, result)
				}
			}
			dial := func(from *rtmfp.NetConnection, to string) func() error {
				return func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
					defer cancel()
					_, err := from.DialPeer(ctx, to)
					return err
				}
			}
			expect("unknown peer", "unknown", dial(a, strings.Repeat("ab", 32)), false)
			expect("across keys", "isolated", dial(other, b.NearID()), false)
			expect("same key", "ok", dial(a, b.NearID()), true)
			anonymous := func() error {
				if !rawLookup(t, srv.Addr.String(), b.NearID()) {
					return errors.New("no Redirect")
				}
				return nil
			}
			if refuse {
				expect("anonymous", "anonymous", anonymous, false)
			} else {
				expect("anonymous", "ok", anonymous, true)
			}
		})
	}
}

// rawLookup sends an IHello for peerID from a socket with no session and
// reports whether a Redirect with addresses came back.
func rawLookup(t *testing.T, server string, peerID string) bool {
	t.Helper()
	id, _ := rtmfp.ParsePeerID(peerID)
	addrs, ok := lookupAnswer(t, netip.MustParseAddrPort(server), id)
	return ok && len(addrs) > 0
}
