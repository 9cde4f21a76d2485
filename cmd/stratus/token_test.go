package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := adminTokenPath(dir, "")
	tok, created, err := loadOrCreateToken(path)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("first start: %q %v %v", tok, created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", fi.Mode(), err)
	}
	again, created, err := loadOrCreateToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("second start: %q %v %v", again, created, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, _, err := loadOrCreateToken(short); err == nil {
		t.Fatal("a 3-character token was accepted")
	}
}

// stratus keys, while a server holds the database locked, goes through
// the admin API the server recorded in admin.addr, with the token it finds
// in admin.token in the data directory.
func TestKeysLockedDatabaseUsesAdminAPI(t *testing.T) {
	for _, env := range []string{"STRATUS_ADMIN", "STRATUS_ADMIN_TOKEN_FILE", "STRATUS_CONFIG"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	dir := t.TempDir()
	held, err := store.OpenBolt(dir, time.Second) // the "running server"'s lock
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	k, err := held.CreateKey("remote")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: held})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tok, _, err := loadOrCreateToken(filepath.Join(dir, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var auth []string
	admin := srv.Admin(server.AdminOptions{Token: tok, Addr: ln.Addr().String()})
	h := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		admin.ServeHTTP(w, r)
	})}}
	h.Start()
	defer h.Close()
	if err := os.WriteFile(filepath.Join(dir, adminAddrFile), []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := captureStdout(t, func() error { return runKeys([]string{"list", "--json", "--data", dir}) })
	var listed []keyView
	if err := json.Unmarshal(out, &listed); err != nil || len(listed) != 1 || listed[0].ID != k.ID {
		t.Fatalf("stratus keys list printed %s (%v), want key %s", out, err, k.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auth) == 0 {
		t.Fatal("stratus keys did not call the admin API")
	}
	for _, a := range auth {
		if a != "Bearer "+tok {
			t.Fatalf("a request carried Authorization %q, want the token from admin.token", a)
		}
	}
}

// captureStdout runs fn with os.Stdout sent to a file and returns what it
// wrote.
func captureStdout(t *testing.T, fn func() error) []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdout
	os.Stdout = f
	err = fn()
	os.Stdout = saved
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// remoteKeys sends the token it is given, and a wrong one is refused.
func TestRemoteKeysSendToken(t *testing.T) {
	srv, err := server.New(server.Config{Store: store.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := loadOrCreateToken(filepath.Join(t.TempDir(), adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	h := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Admin(server.AdminOptions{Token: tok, Addr: ln.Addr().String()})}}
	h.Start()
	defer h.Close()
	rk := remoteKeys{base: h.URL, token: tok}
	k, err := rk.create("remote")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rk.revoke(k.ID); err != nil {
		t.Fatal(err)
	}
	ks, err := rk.list()
	if err != nil || len(ks) != 1 || !ks[0].Revoked {
		t.Fatalf("list: %+v %v", ks, err)
	}
	if _, err := (remoteKeys{base: h.URL, token: "wrong-token-wrong-token"}).list(); err == nil {
		t.Fatal("a wrong token was accepted")
	}
}
