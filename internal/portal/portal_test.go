package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
	"github.com/stratus-rtmfp/stratus/store"
)

const testAdminToken = "operator-token-0123456789"

type env struct {
	t    *testing.T
	srv  *servertest.Server
	st   *store.Memory
	web  *httptest.Server
	port *Portal
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return newEnvWith(t, store.NewMemory(), nil, mod)
}

// newEnvWith is newEnv with the store the server and the portal use (st
// itself, or wrapped) given.
func newEnvWith(t *testing.T, st *store.Memory, wrapped interface {
	store.Store
	store.Accounts
}, mod func(*Config)) *env {
	t.Helper()
	if wrapped == nil {
		wrapped = st
	}
	srv := servertest.Start(t, server.Config{Store: wrapped})
	cfg := Config{Server: srv.Server, Accounts: wrapped, AdminToken: testAdminToken, RTMFPPort: srv.Addr.Port(), SignupsPerHour: -1}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(p.Handler())
	t.Cleanup(web.Close)
	return &env{t: t, srv: srv, st: st, web: web, port: p}
}

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	e   *env
	c   *http.Client
	hdr http.Header // sent with every request
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, hdr: http.Header{}}
}

type answer struct {
	code int
	hdr  http.Header
	body string
}

func (b *browser) do(method, path string, body io.Reader, ct string) answer {
	b.e.t.Helper()
	req, _ := http.NewRequest(method, b.e.web.URL+path, body)
	for k, v := range b.hdr {
		req.Header[k] = v
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(data)}
}

func (b *browser) get(path string) answer { return b.do("GET", path, nil, "") }

// post sends a form, as it is (the caller puts the CSRF token in).
func (b *browser) post(path string, form url.Values) answer {
	return b.do("POST", path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// token reads the CSRF token from a page.
func (b *browser) token(path string) string {
	b.e.t.Helper()
	a := b.get(path)
	m := csrfRe.FindStringSubmatch(a.body)
	if m == nil {
		b.e.t.Fatalf("no CSRF token on %s (%d): %s", path, a.code, a.body)
	}
	return m[1]
}

func (e *env) signupJSON(body string) answer {
	return e.browser().do("POST", "/api/v1/signup", strings.NewReader(body), "application/json")
}

func TestSignupJSON(t *testing.T) {
	e := newEnv(t, nil)
	a := e.signupJSON(`{"name": "Ada", "email": "ada@example.com"}`)
	if a.code != 201 {
		t.Fatalf("%d %s", a.code, a.body)
	}
	var out signedUp
	if err := json.Unmarshal([]byte(a.body), &out); err != nil {
		t.Fatal(err)
	}
	if !store.ValidKeyFormat(out.Key) || out.URL != "rtmfp://127.0.0.1:"+itoa(e.srv.Addr.Port())+"/"+out.Key ||
		!strings.HasPrefix(out.Secret, "s1."+out.Account+".") || out.ExchangeURL != e.web.URL+"/exchange/"+out.Key {
		t.Fatalf("answer %+v", out)
	}
	if a.hdr.Get("Cache-Control") != "no-store" {
		t.Error("the secret may be cached")
	}
	// The key works at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("connecting with the new key: %v", err)
	}
	nc.Close()
	// The same address again: accepted, so sign-up tells nothing.
	if a := e.signupJSON(`{"name": "Ada again", "email": "ada@example.com"}`); a.code != 201 {
		t.Fatalf("second sign-up with one address: %d %s", a.code, a.body)
	}
	for _, tc := range []struct{ body, want string }{
		{`not json`, "must be a JSON object"},
		{`{"name": "x"}`, `and \"email\" are required`},
		{`{"email": "a@b.c"}`, `and \"email\" are required`},
		{`{"name": "x", "email": "a@b.c", "admin": true}`, "must be a JSON object"},
		{`{"name": "x", "email": "a@b.c"} {}`, "data after the JSON object"},
		{`{"name": "", "email": "a@b.c"}`, "Name is required"},
		{`{"name": "x", "email": "not an address"}`, "plain address"},
		{`{"name": "x", "email": "Ada <a@b.c>"}`, "plain address"},
		{`{"name": "` + strings.Repeat("n", 101) + `", "email": "a@b.c"}`, "longer than 100"},
		{`{"name": "x", "email": "` + strings.Repeat("e", 251) + `@b.c"}`, "longer than 254"},
		{`{"name": "bell\u0007", "email": "a@b.c"}`, "not allowed"},
		{`{"name": 5, "email": "a@b.c"}`, "must be a JSON object"},
	} {
		a := e.signupJSON(tc.body)
		if a.code != 400 || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.body[:min(len(tc.body), 40)], a.code, a.body, tc.want)
		}
	}
	if a := e.browser().do("POST", "/api/v1/signup", strings.NewReader(`{"name":"x","email":"a@b.c"}`), "text/plain"); a.code != 415 {
		t.Errorf("text/plain: %d", a.code)
	}
	if a := e.signupJSON(`{"name": "` + strings.Repeat("x", 5000) + `", "email": "a@b.c"}`); a.code != 413 {
		t.Errorf("oversized body: %d", a.code)
	}
	// Two accounts were made, nothing else.
	if accts, _ := e.st.ListAccounts(); len(accts) != 2 {
		t.Errorf("%d accounts", len(accts))
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// The URLs a sign-up answers with are built from the request's Host only
// when it is a DNS name or an IP address with a numeric port; anything
// else (Go lets through characters such as ' ( ) ; in a Host header) is
// replaced by the address the request came in on.
func TestSignupURLsIgnoreAForgedHost(t *testing.T) {
	e := newEnv(t, nil)
	listener := strings.TrimPrefix(e.web.URL, "http://")
	for host, want := range map[string]string{
		"stratus.test:8080":           "http://stratus.test:8080",
		"[::1]:8080":                  "http://[::1]:8080",
		"evil'(alert);x.example":      "http://" + listener,
		"evil.example:80'+alert(1)+'": "http://" + listener,
		"evil.example:99999":          "http://" + listener,
		"evil.example:8080;x=1":       "http://" + listener,
		"evil.example:8080:9090":      "http://" + listener,
	} {
		b := e.browser()
		req, _ := http.NewRequest("POST", e.web.URL+"/api/v1/signup", strings.NewReader(`{"name":"n","email":"a@b.c"}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		var out signedUp
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("Host %q: %d %v", host, resp.StatusCode, err)
		}
		if out.ExchangeURL != want+"/exchange/"+out.Key || out.Dashboard != want+"/dashboard" {
			t.Errorf("Host %q: exchange_url %q, dashboard %q; want them under %s", host, out.ExchangeURL, out.Dashboard, want)
		}
	}
}

func TestSignupRateLimit(t *testing.T) {
	proxy := netip.MustParsePrefix("127.0.0.1/32")
	e := newEnv(t, func(c *Config) { c.SignupsPerHour = 2; c.TrustedProxies = []netip.Prefix{proxy} })
	from := func(xff string) int {
		b := e.browser()
		if xff != "" {
			b.hdr.Set("X-Forwarded-For", xff)
		}
		return b.do("POST", "/api/v1/signup", strings.NewReader(`{"name":"n","email":"a@b.c"}`), "application/json").code
	}
	got := []int{from("198.51.100.7"), from("198.51.100.8"), from("198.51.100.9"), from("203.0.113.1"), from("10.9.9.9, 203.0.113.2")}
	want := []int{201, 201, 429, 201, 201} // one /24 gets two; another network its own
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sign-ups through the proxy: %v, want %v", got, want)
		}
	}
	// Without a trusted proxy, X-Forwarded-For is ignored: the second
	// environment's source is 127.0.0.1 whatever the header says.
	e2 := newEnv(t, func(c *Config) { c.SignupsPerHour = 1 })
	b := e2.browser()
	b.hdr.Set("X-Forwarded-For", "198.51.100.1")
	b.do("POST", "/api/v1/signup", strings.NewReader(`{"name":"n","email":"a@b.c"}`), "application/json")
	b.hdr.Set("X-Forwarded-For", "203.0.113.1")
	if a := b.do("POST", "/api/v1/signup", strings.NewReader(`{"name":"n","email":"a@b.c"}`), "application/json"); a.code != 429 || !strings.Contains(a.body, "too many sign-ups") {
		t.Fatalf("spoofed X-Forwarded-For: %d %s", a.code, a.body)
	}
	// The form shares the budget.
	tok := b.token("/")
	if a := b.post("/signup", url.Values{"csrf": {tok}, "name": {"n"}, "email": {"a@b.c"}, "terms": {"accept"}}); a.code != 429 {
		t.Fatalf("form after the budget: %d", a.code)
	}
}

// Sign-ups from all networks together have a budget too: one attacker
// may hold many networks (an IPv6 /32 is 65,536 /48s).
func TestSignupTotalBudget(t *testing.T) {
	proxy := netip.MustParsePrefix("127.0.0.1/32")
	e := newEnv(t, func(c *Config) {
		c.SignupsPerHour, c.SignupsPerHourTotal, c.TrustedProxies = 1, 3, []netip.Prefix{proxy}
	})
	var got []int
	for i := range 5 {
		b := e.browser()
		b.hdr.Set("X-Forwarded-For", fmt.Sprintf("2001:db8:%x::1", i)) // a /48 each
		a := b.do("POST", "/api/v1/signup", strings.NewReader(`{"name":"n","email":"a@b.c"}`), "application/json")
		got = append(got, a.code)
		if a.code == 429 && !strings.Contains(a.body, "too many sign-ups on this server") {
			t.Fatalf("refusal: %s", a.body)
		}
	}
	if want := []int{201, 201, 201, 429, 429}; !slices.Equal(got, want) {
		t.Fatalf("sign-ups from five /48s with a total of 3 an hour: %v, want %v", got, want)
	}
	if accts, _ := e.st.ListAccounts(); len(accts) != 3 {
		t.Fatalf("%d accounts", len(accts))
	}
}

// signedIn signs a developer up (JSON) and in (the form), and returns the
// browser, the dashboard's CSRF token and what sign-up answered.
func (e *env) signedIn() (*browser, string, signedUp) {
	e.t.Helper()
	var out signedUp
	if err := json.Unmarshal([]byte(e.signupJSON(`{"name":"Dev","email":"dev@example.com"}`).body), &out); err != nil {
		e.t.Fatal(err)
	}
	b := e.browser()
	if a := b.post("/signin", url.Values{"csrf": {b.token("/signin")}, "secret": {out.Secret}}); a.code != 303 {
		e.t.Fatalf("sign-in: %d %s", a.code, a.body)
	}
	return b, b.token("/dashboard"), out
}

// Every key edit is a synced database write: an account has a budget of
// them, and keys are bounded in all (revoked ones included), so create
// and revoke loops neither hammer nor grow the database without end.
func TestKeyEditBounds(t *testing.T) {
	e := newEnv(t, nil)
	b, tok, out := e.signedIn()
	allowed := 0
	edit := func(path string) (location string, ok bool) {
		a := b.post(path, url.Values{"csrf": {tok}, "name": {"k"}})
		if a.code == 303 {
			allowed++
			return a.hdr.Get("Location"), true
		}
		if a.code != 429 || !strings.Contains(a.body, "Too many key changes") {
			t.Fatalf("%s: %d %s", path, a.code, a.body)
		}
		return "", false
	}
	for range 100 {
		loc, ok := edit("/dashboard/keys")
		if !ok {
			break
		}
		if _, ok := edit("/dashboard/keys/" + strings.TrimPrefix(loc, "/dashboard?created=") + "/revoke"); !ok {
			break
		}
	}
	if allowed != keyWritesBurst {
		t.Fatalf("%d key edits allowed at once, want %d", allowed, keyWritesBurst)
	}
	if a := b.post("/dashboard/keys/"+out.Key+"/rename", url.Values{"csrf": {tok}, "name": {"x"}}); a.code != 429 {
		t.Fatalf("rename over the budget: %d", a.code)
	}

	// The bound on all keys: another account brought to the edge
	// through the store.
	e2 := newEnv(t, nil)
	b, tok, out = e2.signedIn()
	for range store.MaxAccountKeysTotal - 1 {
		k, err := e2.st.CreateAccountKey(out.Account, "old")
		if err != nil {
			t.Fatal(err)
		}
		e2.st.RevokeKey(k.ID)
	}
	for _, path := range []string{"/dashboard/keys", "/dashboard/keys/" + out.Key + "/rotate"} {
		if a := b.post(path, url.Values{"csrf": {tok}, "name": {"more"}}); a.code != 409 || !strings.Contains(a.body, "revoked ones included") {
			t.Fatalf("%s past the bound on all keys: %d %s", path, a.code, a.body)
		}
	}
	if d := b.get("/dashboard"); !strings.Contains(d.body, fmt.Sprintf("%d of at most %d keys in all", store.MaxAccountKeysTotal, store.MaxAccountKeysTotal)) {
		t.Fatalf("the dashboard does not show the bound: %s", d.body)
	}
}

func TestSignupClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SignupsPerHour = 0 })
	if a := e.signupJSON(`{"name":"n","email":"a@b.c"}`); a.code != 403 || !strings.Contains(a.body, "closed") {
		t.Fatalf("%d %s", a.code, a.body)
	}
	if a := e.browser().get("/"); !strings.Contains(a.body, "Sign-up is closed") || strings.Contains(a.body, `action="/signup"`) {
		t.Fatal("the home page still offers sign-up")
	}
}

// The whole developer flow over plain HTTP: sign up, see the key, sign
// out, sign in with the secret, create, rename, rotate and revoke keys.
func TestDeveloperFlow(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	tok := b.token("/")
	if a := b.post("/signup", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "terms": {"accept"}}); a.code != 403 {
		t.Fatalf("sign-up without a CSRF token: %d", a.code)
	}
	if a := b.post("/signup", url.Values{"csrf": {tok}, "name": {"Ada"}, "email": {"ada@example.com"}}); a.code != 400 || !strings.Contains(a.body, "accept the terms") || !strings.Contains(a.body, `value="ada@example.com"`) {
		t.Fatalf("sign-up without the terms: %d", a.code)
	}
	a := b.post("/signup", url.Values{"csrf": {tok}, "name": {"Ada <b>"}, "email": {"ada@example.com"}, "terms": {"accept"}})
	if a.code != 201 {
		t.Fatalf("sign-up: %d %s", a.code, a.body)
	}
	secret := regexp.MustCompile(`s1\.[0-9a-f]{16}\.[0-9a-f]{64}`).FindString(a.body)
	key := regexp.MustCompile(`[0-9a-f]{24}-[0-9a-f]{12}`).FindString(a.body)
	if secret == "" || key == "" || !strings.Contains(a.body, "rtmfp://127.0.0.1:") || !strings.Contains(a.body, "nc.connect(&#34;rtmfp://") {
		t.Fatalf("welcome page: %s", a.body)
	}
	dash := b.get("/dashboard")
	if dash.code != 200 || !strings.Contains(dash.body, key) || !strings.Contains(dash.body, "Ada &lt;b&gt;") || !strings.Contains(dash.body, "<svg") {
		t.Fatalf("dashboard after sign-up: %d %s", dash.code, dash.body)
	}
	dtok := csrfRe.FindStringSubmatch(dash.body)[1]
	if dtok == tok {
		t.Fatal("the CSRF token did not change at sign-in")
	}
	// Sign out; the dashboard is gone.
	if a := b.post("/signout", url.Values{"csrf": {dtok}}); a.code != 303 {
		t.Fatalf("sign-out: %d", a.code)
	}
	if a := b.get("/dashboard"); a.code != 303 || a.hdr.Get("Location") != "/signin" {
		t.Fatalf("dashboard signed out: %d", a.code)
	}
	// Wrong secrets all read the same.
	stok := b.token("/signin")
	var msgs []string
	for _, s := range []string{"nope", "s1.0123456789abcdef." + strings.Repeat("0", 64), secret[:len(secret)-1] + "x", strings.Repeat("s", 500)} {
		a := b.post("/signin", url.Values{"csrf": {stok}, "secret": {s}})
		if a.code != 401 {
			t.Fatalf("wrong secret %q: %d", s[:min(len(s), 30)], a.code)
		}
		msgs = append(msgs, regexp.MustCompile(`<p class="error"[^>]*>([^<]*)`).FindStringSubmatch(a.body)[1])
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Fatalf("sign-in errors differ: %q", msgs)
		}
	}
	if a := b.post("/signin", url.Values{"csrf": {stok}, "secret": {secret}}); a.code != 303 || a.hdr.Get("Location") != "/dashboard" {
		t.Fatalf("sign-in: %d %s", a.code, a.body)
	}
	dtok = b.token("/dashboard")
	// Create, rename.
	a = b.post("/dashboard/keys", url.Values{"csrf": {dtok}, "name": {"second"}})
	if a.code != 303 || !strings.HasPrefix(a.hdr.Get("Location"), "/dashboard?created=") {
		t.Fatalf("create: %d %s", a.code, a.body)
	}
	second := strings.TrimPrefix(a.hdr.Get("Location"), "/dashboard?created=")
	if a := b.get(a.hdr.Get("Location")); !strings.Contains(a.body, "Created key "+second) {
		t.Fatal("no notice after create")
	}
	if a := b.post("/dashboard/keys/"+second+"/rename", url.Values{"csrf": {dtok}, "name": {"renamed"}}); a.code != 303 {
		t.Fatalf("rename: %d", a.code)
	}
	if k, _ := e.st.GetKey(second); k.Name != "renamed" {
		t.Fatalf("renamed key: %+v", k)
	}
	// Rotate the first key while a client uses it: the client is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, "rtmfp://"+e.srv.Addr.String()+"/"+key, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if a := b.get("/dashboard/keys/" + key + "/rotate"); a.code != 200 || !strings.Contains(a.body, "1 live session") {
		t.Fatalf("rotate confirmation: %d %s", a.code, a.body)
	}
	a = b.post("/dashboard/keys/"+key+"/rotate", url.Values{"csrf": {dtok}})
	if a.code != 303 || !strings.HasPrefix(a.hdr.Get("Location"), "/dashboard?rotated=") {
		t.Fatalf("rotate: %d %s", a.code, a.body)
	}
	select {
	case <-nc.Done():
	case <-ctx.Done():
		t.Fatal("the rotated key's session stayed open")
	}
	rotated := strings.TrimPrefix(a.hdr.Get("Location"), "/dashboard?rotated=")
	if k, _ := e.st.GetKey(rotated); k.Revoked || k.Name != "first key" {
		t.Fatalf("new key %+v", k)
	}
	// Revoke.
	if a := b.post("/dashboard/keys/"+second+"/revoke", url.Values{"csrf": {dtok}}); a.code != 303 {
		t.Fatalf("revoke: %d", a.code)
	}
	if k, _ := e.st.GetKey(second); !k.Revoked {
		t.Fatal("not revoked")
	}
	// Every write needs the token; another account's key reads as missing.
	other := e.browser()
	otok := other.token("/")
	other.post("/signup", url.Values{"csrf": {otok}, "name": {"Bob"}, "email": {"bob@example.com"}, "terms": {"accept"}})
	otok = other.token("/dashboard")
	for _, path := range []string{"/dashboard/keys/" + rotated + "/revoke", "/dashboard/keys/" + rotated + "/rotate", "/dashboard/keys/" + rotated + "/rename"} {
		if a := other.post(path, url.Values{"csrf": {otok}, "name": {"mine"}}); a.code != 404 {
			t.Errorf("%s by another account: %d", path, a.code)
		}
		if a := b.post(path, url.Values{"name": {"x"}}); a.code != 403 {
			t.Errorf("%s without CSRF: %d", path, a.code)
		}
		if a := b.post(path, url.Values{"csrf": {otok}, "name": {"x"}}); a.code != 403 {
			t.Errorf("%s with another session's token: %d", path, a.code)
		}
	}
	if a := b.post("/dashboard/keys", url.Values{"csrf": {dtok}, "name": {""}}); a.code != 400 {
		t.Errorf("empty key name: %d", a.code)
	}
	if a := b.post("/dashboard/keys/"+rotated+"/delete", url.Values{"csrf": {dtok}}); a.code != 404 {
		t.Errorf("unknown action: %d", a.code)
	}
	if a := b.get("/dashboard/keys/" + rotated + "/rename"); a.code != 200 || !strings.Contains(a.body, `value="first key"`) {
		t.Errorf("rename page: %d", a.code)
	}
	if a := b.get("/dashboard/keys/" + rotated + "/delete"); a.code != 404 {
		t.Errorf("unknown action page: %d", a.code)
	}
	// A cross-site form post is refused before anything runs.
	b.hdr.Set("Sec-Fetch-Site", "cross-site")
	if a := b.post("/dashboard/keys", url.Values{"csrf": {dtok}, "name": {"evil"}}); a.code != 403 {
		t.Errorf("cross-site post: %d", a.code)
	}
	b.hdr.Del("Sec-Fetch-Site")
	b.hdr.Set("Origin", "http://evil.example")
	if a := b.post("/dashboard/keys", url.Values{"csrf": {dtok}, "name": {"evil"}}); a.code != 403 {
		t.Errorf("post from another origin: %d", a.code)
	}
}

// countingStore counts usage writes.
type countingStore struct {
	*store.Memory
	writes atomic.Int64
}

func (c *countingStore) AddUsage(b map[string]store.Usage) error {
	c.writes.Add(1)
	return c.Memory.AddUsage(b)
}

// Loading the dashboard or the operator's page writes nothing (each write
// is synced to disk, and page loads are anybody's to make): the usage the
// server has not written yet is shown from its memory, in the counters
// and in the current hour of the chart.
func TestPageLoadsDoNotWrite(t *testing.T) {
	mem := store.NewMemory()
	st := &countingStore{Memory: mem}
	e := newEnvWith(t, mem, st, nil)
	b, _, out := e.signedIn()
	op := e.browser()
	op.post("/operator/signin", url.Values{"csrf": {op.token("/operator")}, "token": {testAdminToken}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := st.writes.Load()
	const loads = 5
	for i := 1; i <= loads; i++ {
		nc, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		d := b.get("/dashboard")
		if !strings.Contains(d.body, fmt.Sprintf(" UTC</td><td>%d</td>", i)) {
			t.Fatalf("load %d: the hour's connects are not %d: %s", i, i, d.body)
		}
		if a := op.get("/operator"); a.code != 200 || !strings.Contains(a.body, out.Key) {
			t.Fatalf("operator page: %d", a.code)
		}
	}
	// The server's own write every 5 s may fall in the loop; the pages
	// must not have added theirs.
	if n := st.writes.Load() - before; n > 1 {
		t.Fatalf("%d page loads with new usage made %d usage writes", 2*loads, n)
	}
}

func TestCookies(t *testing.T) {
	for _, tc := range []struct {
		name, public string
		cookie       string
		secure       bool
	}{
		{"plain http", "", "stratus_session", false},
		{"behind TLS", "https://stratus.example.com", "__Host-stratus_session", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.PublicURL = tc.public })
			b := e.browser()
			if tc.public != "" {
				b.hdr.Set("Origin", tc.public)
			}
			tok := b.token("/")
			a := b.post("/signup", url.Values{"csrf": {tok}, "name": {"n"}, "email": {"a@b.c"}, "terms": {"accept"}})
			if a.code != 201 {
				t.Fatalf("sign-up: %d %s", a.code, a.body)
			}
			var found bool
			for _, c := range (&http.Response{Header: a.hdr}).Cookies() {
				if c.Name != tc.cookie {
					continue
				}
				found = true
				if !c.HttpOnly || c.Secure != tc.secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
					t.Errorf("cookie %+v", c)
				}
			}
			if !found {
				t.Fatalf("no %s cookie in %v", tc.cookie, a.hdr["Set-Cookie"])
			}
			if tc.public != "" && !strings.Contains(a.body, "rtmfp://stratus.example.com:") {
				t.Errorf("the URL does not use the public host")
			}
		})
	}
}

func TestOperator(t *testing.T) {
	e := newEnv(t, nil)
	var out signedUp
	json.Unmarshal([]byte(e.signupJSON(`{"name":"Dev","email":"dev@example.com"}`).body), &out)
	b := e.browser()
	a := b.get("/operator")
	if a.code != 200 || !strings.Contains(a.body, "Admin token") {
		t.Fatalf("operator page signed out: %d", a.code)
	}
	tok := csrfRe.FindStringSubmatch(a.body)[1]
	if a := b.post("/operator/signin", url.Values{"csrf": {tok}, "token": {"wrong"}}); a.code != 401 {
		t.Fatalf("wrong token: %d", a.code)
	}
	if a := b.post("/operator/accounts/"+out.Account+"/suspend", url.Values{"csrf": {tok}}); a.code != 403 {
		t.Fatalf("suspend while not operator: %d", a.code)
	}
	if a := b.post("/operator/signin", url.Values{"csrf": {tok}, "token": {testAdminToken}}); a.code != 303 {
		t.Fatalf("operator sign-in: %d", a.code)
	}
	a = b.get("/operator")
	if !strings.Contains(a.body, out.Account) || !strings.Contains(a.body, "dev@example.com") || !strings.Contains(a.body, out.Key) {
		t.Fatalf("operator page: %s", a.body)
	}
	tok = csrfRe.FindStringSubmatch(a.body)[1]
	// Quota 1: a second session is refused.
	if a := b.post("/operator/keys/"+out.Key+"/quota", url.Values{"csrf": {tok}, "max_sessions": {"1"}}); a.code != 303 {
		t.Fatalf("quota: %d %s", a.code, a.body)
	}
	for _, bad := range []string{"-1", "x", "99999999999", "1e3"} {
		if a := b.post("/operator/keys/"+out.Key+"/quota", url.Values{"csrf": {tok}, "max_sessions": {bad}}); a.code != 400 {
			t.Errorf("quota %q: %d", bad, a.code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "too many sessions") {
		t.Fatalf("second session over the quota: %v", err)
	}
	// Suspend: the live session closes, connects are refused, the
	// developer cannot create keys.
	if a := b.post("/operator/accounts/"+out.Account+"/suspend", url.Values{"csrf": {tok}}); a.code != 303 {
		t.Fatalf("suspend: %d", a.code)
	}
	select {
	case <-nc.Done():
	case <-ctx.Done():
		t.Fatal("the suspended account's session stayed open")
	}
	if _, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("connect while suspended: %v", err)
	}
	dev := e.browser()
	stok := dev.token("/signin")
	dev.post("/signin", url.Values{"csrf": {stok}, "secret": {out.Secret}})
	d := dev.get("/dashboard")
	if !strings.Contains(d.body, "suspended by the operator") {
		t.Fatal("the dashboard does not say the account is suspended")
	}
	if a := dev.post("/dashboard/keys", url.Values{"csrf": {csrfRe.FindStringSubmatch(d.body)[1]}, "name": {"more"}}); a.code != 403 {
		t.Fatalf("create while suspended: %d", a.code)
	}
	if a := b.post("/operator/accounts/"+out.Account+"/reinstate", url.Values{"csrf": {tok}}); a.code != 303 {
		t.Fatalf("reinstate: %d", a.code)
	}
	nc2, err := rtmfp.Connect(ctx, out.URL, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("connect after reinstating: %v", err)
	}
	nc2.Close()
	if a := b.post("/operator/accounts/0123456789abcdef/suspend", url.Values{"csrf": {tok}}); a.code != 404 {
		t.Errorf("unknown account: %d", a.code)
	}
	if a := b.post("/operator/accounts/"+out.Account+"/delete", url.Values{"csrf": {tok}}); a.code != 404 {
		t.Errorf("unknown action: %d", a.code)
	}
	if a := b.post("/operator/keys/"+out.Key+"/quota", url.Values{"max_sessions": {"3"}}); a.code != 403 {
		t.Errorf("quota without CSRF: %d", a.code)
	}
}

// The exchange and the policy files are served by the portal, the pages
// carry the security headers, the stylesheet is there.
func TestPortalServes(t *testing.T) {
	e := newEnv(t, nil)
	var out signedUp
	json.Unmarshal([]byte(e.signupJSON(`{"name":"Dev","email":"dev@example.com"}`).body), &out)
	b := e.browser()
	for path, want := range map[string]string{
		"/exchange/" + out.Key + "?friends=x":      `<result><friend><user>x</user></friend></result>`,
		"/api/v1/exchange/" + out.Key + "/names/x": `"available": false`,
		"/crossdomain.xml":                         `by-content-type`,
		"/exchange/crossdomain.xml":                `allow-access-from`,
		"/static/style.css":                        `:focus-visible`,
		"/terms":                                   `provided as is`,
		"/signin":                                  `<label for="secret">`,
		"/exchange/0123456789abcdef01234567-89abcdef0123?friends=x": `unknown developer key`,
	} {
		a := b.get(path)
		if !strings.Contains(a.body, want) {
			t.Errorf("%s: %d %s", path, a.code, a.body[:min(len(a.body), 200)])
		}
		if a.hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
	a := b.get("/")
	if !strings.Contains(a.hdr.Get("Content-Security-Policy"), "default-src 'none'") || a.hdr.Get("X-Frame-Options") != "DENY" || a.hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", a.hdr)
	}
	if a := b.get("/nothing-here"); a.code != 404 {
		t.Errorf("unknown path: %d", a.code)
	}
	// The exchange takes writes from other origins (it has no cookies).
	b.hdr.Set("Sec-Fetch-Site", "cross-site")
	if a := b.do("PUT", "/api/v1/exchange/"+out.Key+"/names/x", strings.NewReader(`{"identity":"`+strings.Repeat("a", 64)+`"}`), "application/json"); a.code != 403 || !strings.Contains(a.body, "not connected") {
		t.Errorf("cross-origin exchange write: %d %s", a.code, a.body)
	}
}

// A form that cannot be parsed is a bad request (400), not one that is too
// large (413), which only an oversized body is.
func TestFormErrors(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser()
	tok := b.token("/signin")
	if a := b.do("POST", "/signin", strings.NewReader("csrf="+tok+"&secret=%zz"), "application/x-www-form-urlencoded"); a.code != 400 || !strings.Contains(a.body, "could not be read") {
		t.Fatalf("malformed form: %d %s", a.code, a.body)
	}
	big := url.Values{"csrf": {tok}, "secret": {strings.Repeat("s", 9<<10)}}
	if a := b.post("/signin", big); a.code != 413 {
		t.Fatalf("oversized form: %d", a.code)
	}
}

func FuzzParseSignupJSON(f *testing.F) {
	f.Add([]byte(`{"name": "Ada", "email": "ada@example.com"}`))
	f.Add([]byte(`{"name": "", "email": ""}`))
	f.Add([]byte(`{"name": "\u0000", "email": "a@b"} x`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseSignupJSON(body)
		if err == nil {
			checkAccepted(t, s)
		}
	})
}

func FuzzParseSignupForm(f *testing.F) {
	f.Add("name=Ada&email=ada%40example.com&terms=accept")
	f.Add("name=%00&email=x&terms=accept")
	f.Add("name=a&name=b&email=a@b.c&terms=accept&terms=no")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		s, err := ParseSignupForm(form)
		if err == nil {
			checkAccepted(t, s)
		}
	})
}

func checkAccepted(t *testing.T, s Signup) {
	t.Helper()
	if s.Name == "" || len(s.Name) > maxNameLen || len(s.Email) > maxEmailLen || !strings.Contains(s.Email, "@") {
		t.Fatalf("accepted %+v", s)
	}
	if _, err := checkText("n", s.Name, maxNameLen); err != nil {
		t.Fatalf("accepted name %q: %v", s.Name, err)
	}
	// What is accepted can be stored.
	if _, err := store.NewMemory().CreateAccount(s.Name, s.Email, []byte("h")); err != nil {
		t.Fatalf("accepted %+v but the store refuses it: %v", s, err)
	}
}

func TestSecretFormat(t *testing.T) {
	for _, s := range []string{"", "s1..", "s2.0123456789abcdef." + strings.Repeat("a", 64), "s1.0123456789ABCDEF." + strings.Repeat("a", 64), "s1.0123456789abcdef." + strings.Repeat("a", 63)} {
		if _, _, ok := splitSecret(s); ok {
			t.Errorf("splitSecret(%q) accepted", s)
		}
	}
	if id, r, ok := splitSecret("s1.0123456789abcdef." + strings.Repeat("a", 64)); !ok || id != "0123456789abcdef" || len(r) != 64 {
		t.Error("a well-formed secret refused")
	}
}
