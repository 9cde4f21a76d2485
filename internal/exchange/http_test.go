package exchange

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

const key = "7d8e660a6cbf71bab35a0781-c086fb40c6fb"

func testHandler(t *testing.T) (*httptest.Server, *fakeLive) {
	r, f := newTestRegistry(0, 0)
	h := &Handler{Registry: r, CheckKey: func(k string) error {
		switch k {
		case key:
			return nil
		case "revoked":
			return ErrKeyRefused
		}
		return ErrUnknownKey
	}}
	mux := http.NewServeMux()
	h.Routes(mux)
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s, f
}

func call(t *testing.T, method, u, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// The VideoPhone protocol, byte for byte.
func TestVideoPhoneProtocol(t *testing.T) {
	s, f := testHandler(t)
	a, b := peerID('a'), peerID('b')
	base := s.URL + "/exchange/" + key
	const yes = `<?xml version="1.0" encoding="utf-8"?><result><update>true</update></result>`
	const no = `<?xml version="1.0" encoding="utf-8"?><result><update>false</update></result>`
	found := func(u, id string) string {
		return `<?xml version="1.0" encoding="utf-8"?><result><friend><user>` + u + `</user><identity>` + id + `</identity></friend></result>`
	}
	missing := func(u string) string {
		return `<?xml version="1.0" encoding="utf-8"?><result><friend><user>` + u + `</user></friend></result>`
	}
	f.connect(a, key)
	f.connect(b, key)
	for _, tc := range []struct {
		what, method, query, body string
		code                      int
		want                      string
		reason                    string
	}{
		{"register", "GET", "username=alice&identity=" + a, "", 200, yes, ""},
		{"refresh with time", "GET", "username=alice&identity=" + a + "&time=1300000000000", "", 200, yes, ""},
		{"lookup", "GET", "friends=alice&time=1", "", 200, found("alice", a), ""},
		{"lookup unknown", "GET", "friends=bob", "", 200, missing("bob"), ""},
		{"lookup escapes", "GET", "friends=" + url.QueryEscape("<b>&"), "", 200, missing("&lt;b&gt;&amp;"), ""},
		{"taken", "GET", "username=alice&identity=" + b, "", 200, no, "the name is held by another peer that is still connected"},
		{"not connected", "GET", "username=carol&identity=" + peerID('c'), "", 200, no, "that peer ID is not connected with this developer key"},
		{"post form", "POST", "", "username=bob&identity=" + b, 200, yes, ""},
		{"anonymous unregister of a live name", "GET", "username=alice&identity=0", "", 200, yes, "the name is held by a connected peer; it is removed when that session ends"},
		{"still there", "GET", "friends=alice", "", 200, found("alice", a), ""},
	} {
		code, hdr, body := call(t, tc.method, base+"?"+tc.query, tc.body)
		if code != tc.code || body != tc.want || hdr.Get("X-Exchange-Error") != tc.reason {
			t.Errorf("%s: %d %q (reason %q), want %d %q (reason %q)", tc.what, code, body, hdr.Get("X-Exchange-Error"), tc.code, tc.want, tc.reason)
		}
		if code == 200 && hdr.Get("Content-Type") != "text/xml; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.what, hdr.Get("Content-Type"))
		}
	}
	f.disconnect(a, key)
	if _, _, body := call(t, "GET", base+"?friends=alice", ""); body != missing("alice") {
		t.Errorf("after disconnect: %s", body)
	}
	if _, _, body := call(t, "GET", base+"?username=alice&identity=0", ""); body != yes {
		t.Errorf("unregister after disconnect: %s", body)
	}
}

func TestVideoPhoneBadInput(t *testing.T) {
	s, _ := testHandler(t)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/exchange/" + key, 400, "want username and identity"},
		{"/exchange/" + key + "?username=x", 400, "want username and identity"},
		{"/exchange/" + key + "?username=x&identity=nothex", 400, "64 hex digits"},
		{"/exchange/" + key + "?username=&identity=0", 400, "1 to 128 bytes"},
		{"/exchange/" + key + "?friends=" + strings.Repeat("x", 200), 400, "1 to 128 bytes"},
		{"/exchange/" + key + "?friends=%zz", 400, "malformed query"},
		{"/exchange/" + key + "?" + strings.Repeat("a", 3000), 400, "longer than 2048"},
		{"/exchange/nope?friends=x", 404, "unknown developer key"},
		{"/exchange/revoked?friends=x", 403, "revoked or suspended"},
		{"/exchange/" + strings.Repeat("k", 65) + "?friends=x", 404, "unknown developer key"},
	} {
		code, _, body := call(t, "GET", s.URL+tc.path, "")
		if code != tc.code || !strings.Contains(body, "<error>") || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.path[:min(len(tc.path), 60)], code, body, tc.code, tc.want)
		}
	}
	if code, _, _ := call(t, "POST", s.URL+"/exchange/"+key, strings.Repeat("a=b&", 2000)); code != 413 {
		t.Errorf("oversized POST body: %d", code)
	}
}

func TestJSONExchange(t *testing.T) {
	s, f := testHandler(t)
	a := peerID('a')
	f.connect(a, key)
	base := s.URL + "/api/v1/exchange/" + key + "/names/"
	for _, tc := range []struct {
		what, method, path, body string
		code                     int
		want                     string
	}{
		{"lookup free", "GET", "alice", "", 200, `{"username":"alice","available":false}`},
		{"register", "PUT", "alice", `{"identity":"` + a + `"}`, 200, `{"username":"alice","identity":"` + a + `","available":true}`},
		{"lookup", "GET", "alice", "", 200, `{"username":"alice","identity":"` + a + `","available":true}`},
		{"not connected", "PUT", "bob", `{"identity":"` + peerID('b') + `"}`, 403, `{"error":"that peer ID is not connected with this developer key"}`},
		{"bad body", "PUT", "bob", `{"identity":1}`, 400, `{"error":"body: want {\"identity\": \"\u003c64 hex digits\u003e\"}"}`},
		{"unknown field", "PUT", "bob", `{"identity":"` + a + `","x":1}`, 400, `"error"`},
		{"bad peer", "PUT", "bob", `{"identity":"zz"}`, 400, `{"error":"a peer ID is 64 hex digits"}`},
		{"held", "DELETE", "alice", "", 409, `{"error":"the name is held by a connected peer; it is removed when that session ends"}`},
		{"escaped name", "GET", "a%2Fb", "", 200, `{"username":"a/b","available":false}`},
		{"unknown key", "GET", "../../nope/names/x", "", 404, ``},
	} {
		code, hdr, body := call(t, tc.method, base+tc.path, tc.body)
		var compact bytes.Buffer
		if json.Compact(&compact, []byte(body)) == nil {
			body = compact.String() // the answers are indented
		}
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.what, code, body, tc.code, tc.want)
		}
		if hdr.Get("Access-Control-Allow-Origin") != "*" && code != 404 {
			t.Errorf("%s: no CORS header", tc.what)
		}
	}
	if code, _, body := call(t, "GET", s.URL+"/api/v1/exchange/nope/names/x", ""); code != 404 || !strings.Contains(body, "unknown developer key") {
		t.Errorf("unknown key: %d %s", code, body)
	}
	f.disconnect(a, key)
	if code, _, _ := call(t, "DELETE", base+"alice", ""); code != 204 {
		t.Errorf("delete after disconnect: %d", code)
	}
	if code, hdr, _ := call(t, "OPTIONS", base+"alice", ""); code != 204 || !strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Errorf("preflight: %d %v", code, hdr)
	}
}

func TestPolicyFiles(t *testing.T) {
	s, _ := testHandler(t)
	for path, want := range map[string]string{
		"/crossdomain.xml":          `permitted-cross-domain-policies="by-content-type"`,
		"/exchange/crossdomain.xml": `<allow-access-from domain="*"/>`,
	} {
		code, hdr, body := call(t, "GET", s.URL+path, "")
		if code != 200 || hdr.Get("Content-Type") != "text/x-cross-domain-policy" || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s %s", path, code, hdr.Get("Content-Type"), body)
		}
	}
}

func TestParseRequest(t *testing.T) {
	a := peerID('A')
	for q, want := range map[string]Request{
		"username=u&identity=" + a:         {OpRegister, "u", strings.ToLower(a)},
		"username=u&identity=0":            {OpUnregister, "u", ""},
		"friends=u&time=5":                 {OpLookup, "u", ""},
		"friends=u&username=v&identity=0":  {OpLookup, "u", ""},
		"username=%E2%98%8E&identity=0":    {OpUnregister, "☎", ""},
		"username=a+b&identity=0&identity": {OpUnregister, "a b", ""},
	} {
		got, err := ParseRequest(q)
		if err != nil || got != want {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", q, got, err, want)
		}
	}
}

// FuzzParseRequest: any query is parsed without panicking, and what it
// accepts is valid.
func FuzzParseRequest(f *testing.F) {
	f.Add("username=alice&identity=" + peerID('a'))
	f.Add("username=alice&identity=0")
	f.Add("friends=alice&time=1300000000000")
	f.Add("friends=%zz")
	f.Add("username=%00&identity=0")
	f.Fuzz(func(t *testing.T, q string) {
		req, err := ParseRequest(q)
		if err != nil {
			return
		}
		if CheckName(req.Name) != nil {
			t.Fatalf("accepted name %q", req.Name)
		}
		switch req.Op {
		case OpRegister:
			if id, err := ParsePeerID(req.Identity); err != nil || id != req.Identity {
				t.Fatalf("accepted identity %q", req.Identity)
			}
		case OpUnregister, OpLookup:
			if req.Identity != "" {
				t.Fatalf("identity %q on %v", req.Identity, req.Op)
			}
		default:
			t.Fatalf("op %v", req.Op)
		}
	})
}
