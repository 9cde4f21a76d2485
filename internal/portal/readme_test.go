package portal

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/exchange"
)

// routeRecorder records the patterns routes are added under.
type routeRecorder []string

func (r *routeRecorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*r = append(*r, pattern)
}

// endpoint is a method and a path whose {wildcards} are all written {}.
type endpoint struct{ method, path string }

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

func parseEndpoint(method, path string) endpoint {
	path = strings.ReplaceAll(path, "{$}", "")
	return endpoint{method, wildcard.ReplaceAllString(path, "{}")}
}

// serves reports whether a route serves a documented endpoint: the same
// method and path, or, for a route ending in /, a path under it.
func (route endpoint) serves(doc endpoint) bool {
	if route.method != doc.method {
		return false
	}
	if route.path != "/" && strings.HasSuffix(route.path, "/") {
		return strings.HasPrefix(doc.path, route.path)
	}
	return route.path == doc.path
}

// readmeEndpoints reads the endpoint table of the README's portal
// section: each code span of a row's first cell is METHOD[|METHOD...] PATH.
func readmeEndpoints(t *testing.T) []endpoint {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "### The developer portal and the peer-ID exchange")
	if start < 0 {
		t.Fatal("no portal section in the README")
	}
	var out []endpoint
	inTable := false
	for _, line := range strings.Split(text[start:], "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cell := strings.ReplaceAll(line, `\|`, "\x00")
		cell = strings.Split(cell, "|")[1]
		spans := strings.Split(cell, "`")
		for i := 1; i < len(spans); i += 2 {
			methods, path, ok := strings.Cut(strings.ReplaceAll(spans[i], "\x00", "|"), " ")
			if !ok {
				t.Errorf("README endpoint %q: want METHOD PATH", spans[i])
				continue
			}
			for _, m := range strings.Split(methods, "|") {
				out = append(out, parseEndpoint(m, path))
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no endpoint table in the README's portal section")
	}
	return out
}

// The README's endpoint table lists every route the portal and the
// exchange serve, and nothing they do not.
func TestREADMEListsEveryEndpoint(t *testing.T) {
	var patterns routeRecorder
	(&Portal{}).routes(&patterns)
	(&exchange.Handler{}).Routes(&patterns)
	var routes []endpoint
	for _, pat := range patterns {
		method, path, ok := strings.Cut(pat, " ")
		if !ok {
			t.Fatalf("route %q has no method", pat)
		}
		routes = append(routes, parseEndpoint(method, path))
	}
	docs := readmeEndpoints(t)
	for i, r := range routes {
		found := false
		for _, d := range docs {
			found = found || r.serves(d)
		}
		if !found {
			t.Errorf("route %q is not in the README's endpoint table", patterns[i])
		}
	}
	for _, d := range docs {
		found := false
		for _, r := range routes {
			found = found || r.serves(d)
		}
		if !found {
			t.Errorf("the README lists %s %s, which no route serves", d.method, d.path)
		}
	}
}
