package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

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

// stratus keys, while a server holds the database, goes through the admin
// API with the token it finds in the data directory.
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
