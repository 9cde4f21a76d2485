package server

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/amf"
	"github.com/stratus-rtmfp/stratus/internal/engine"
	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/store"
)

// Revocations and drains racing with handshakes must not deadlock (the
// engine takes the server lock in allowKeying with its own lock held).
func TestRevokeRacingConnects(t *testing.T) {
	st := store.NewMemory()
	srv, base := testServer(t, st, func(c *Config) { c.HandshakeRate = -1 })
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				k, _ := srv.CreateKey("")
				nc, err := rtmfp.Connect(context.Background(), base+"/"+k.ID, &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 2 * time.Second})
				if err == nil {
					nc.Close()
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			keys, _ := srv.Keys()
			for _, k := range keys {
				srv.RevokeKey(k.ID)
			}
		}
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		t.Fatal("revocations deadlocked with handshakes")
	}
	close(done)
	wg.Wait()
}

// A session that opens its NetConnection flow but never sends connect is
// closed after the connect timeout all the same.
func TestConnectTimeoutWithOpenFlow(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.ConnectTimeout = time.Second })
	sess := rawSession(t, srv, base, 200*time.Millisecond)
	f, _ := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	f.Write(flash.AppendUserControl(nil, flash.EventPingRequest, 1)) // anything but connect
	start := time.Now()
	waitSessions(t, srv, 10*time.Second, "a session with a live flow but no connect stays open", func(s []SessionInfo) bool { return len(s) == 0 })
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("closed after %v, before the 1 s connect timeout", d)
	}
}

// Open mode counts made-up keys under one metrics label.
func TestOpenModeKeyLabels(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.Open = true })
	for i := range 3 {
		connect(t, base+"/made-up-"+string(rune('a'+i)))
	}
	h := srv.Admin(AdminOptions{Token: "t"})
	rec := &strings.Builder{}
	w := &recorder{b: rec}
	req := mustGet("/metrics")
	req.Host = "127.0.0.1"
	req.Header.Set("Authorization", "Bearer t")
	h.ServeHTTP(w, req)
	out := rec.String()
	if strings.Contains(out, "made-up-") || !strings.Contains(out, `stratus_key_connects_total{key="unregistered",result="success"} 3`) {
		t.Fatalf("metrics:\n%s", grepLines(out, "stratus_key_connects_total"))
	}
}

// rawConnect sends connect with the given app and tcUrl on a raw session
// and returns the code of the answer and the NetConnection flow.
func rawConnect(t *testing.T, srv *Server, base, app, tcURL string) (string, *engine.SendFlow, *engine.RecvFlow) {
	t.Helper()
	sess := rawSession(t, srv, base, 0)
	f, err := sess.OpenFlow(flash.TCMetadata(0, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := flash.AppendCommand(nil, "connect", 1, amf.NewObject("app", app, "tcUrl", tcURL, "objectEncoding", 3.0))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(msg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rf, err := sess.AcceptFlow(ctx)
	if err != nil {
		t.Fatal("no answer flow:", err)
	}
	for {
		raw, err := rf.Read(ctx)
		if err != nil {
			t.Fatal("no answer to connect:", err)
		}
		m, err := flash.ParseMessage(raw)
		if err != nil || !m.IsCommand() {
			continue
		}
		cmd, _ := flash.ParseCommand(m)
		if cmd.Name == "_result" || cmd.Name == "_error" {
			for _, a := range cmd.Args {
				if o, ok := a.(*amf.Object); ok {
					code, _, _ := flash.InfoCode(o)
					return code, f, rf
				}
			}
			return cmd.Name, f, rf
		}
	}
}

// librtmfp sends app "live" whatever the URL: the key in tcUrl counts.
func TestConnectKeyFromTcUrl(t *testing.T) {
	st := store.NewMemory()
	valid, _ := st.CreateKey("valid")
	revoked, _ := st.CreateKey("revoked")
	st.RevokeKey(revoked.ID)
	srv, base := testServer(t, st, nil)
	for _, c := range []struct{ app, tcURL, want string }{
		{"live", base + "/" + valid.ID, flash.ConnectSuccess},
		{valid.ID, base + "/" + valid.ID, flash.ConnectSuccess},
		{valid.ID, "", flash.ConnectSuccess},
		{"live", base + "/" + revoked.ID, flash.ConnectRejected},
		{"live", base + "/unknown", flash.ConnectFailed},
		{"", "", flash.ConnectFailed},
	} {
		if got, _, _ := rawConnect(t, srv, base, c.app, c.tcURL); got != c.want {
			t.Errorf("app %q tcUrl %q: %s, want %s", c.app, c.tcURL, got, c.want)
		}
	}
}

// librtmfp sends setPeerInfo without Flash's null command object: its first
// address sits where the object would and must not be lost.
func TestSetPeerInfoWithoutNullObject(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("k")
	srv, base := testServer(t, st, nil)
	code, f, rf := rawConnect(t, srv, base, "live", base+"/"+k.ID)
	if code != flash.ConnectSuccess {
		t.Fatal(code)
	}
	msg, _ := flash.AppendCommand(nil, "setPeerInfo", 0, "192.0.2.2:5000", "[fd00::2]:5001")
	f.Write(msg)
	want := []string{"192.0.2.2:5000", "[fd00::2]:5001"}
	// setPeerInfo is answered with set-keepalive: once that came back the
	// server has stored the addresses.
	waitKeepalive(t, rf, 2)
	if s := srv.Sessions(); len(s) != 1 || !slices.Equal(s[0].Addresses, want) {
		t.Fatalf("server keeps %+v, want addresses %v", s, want)
	}
}

// waitKeepalive reads the server's NetConnection flow until the n-th
// set-keepalive (0x29) event: connect's, then one per setPeerInfo.
func waitKeepalive(t *testing.T, rf *engine.RecvFlow, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n > 0 {
		raw, err := rf.Read(ctx)
		if err != nil {
			t.Fatal("no set-keepalive:", err)
		}
		m, err := flash.ParseMessage(raw)
		if err != nil {
			continue
		}
		if ev, _, err := flash.ParseUserControl(m); err == nil && ev == flash.EventSetKeepalive {
			n--
		}
	}
}

// Shutdown acting on clients while the dispatcher is still opening their
// NetConnection flows (connects in flight) must not race it (run with
// -race): client state is only touched on the dispatcher.
func TestShutdownRacingConnects(t *testing.T) {
	srv, base := testServer(t, store.NewMemory(), func(c *Config) { c.Open = true; c.HandshakeRate = -1 })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := rtmfp.Connect(context.Background(), base+"/k"+string(rune('a'+i)), &rtmfp.Config{LocalAddr: "127.0.0.1:0", ConnectTimeout: 2 * time.Second})
			if err == nil {
				<-nc.Done() // told to go by the shutdown
				nc.Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
