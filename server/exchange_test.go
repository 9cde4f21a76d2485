package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/exchange"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server/servertest"
	"github.com/stratus-rtmfp/stratus/store"
)

// exchangeServer starts a server with one key and the exchange's web
// service, and returns a VideoPhone client of that key and a context for
// the test's calls.
func exchangeServer(t *testing.T) (*servertest.Server, string, string, *rtmfp.HTTPExchange, context.Context) {
	t.Helper()
	srv, base := testServer(t, store.NewMemory(), nil)
	key := srv.NewKey(t)
	web := httptest.NewServer(srv.Exchange())
	t.Cleanup(web.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return srv, base, key, &rtmfp.HTTPExchange{URL: web.URL + "/exchange/" + key}, ctx
}

// The peer-ID exchange against live sessions of the SDK, over both the
// NetConnection calls and the VideoPhone web service: a name is
// registered while its peer is connected, refused for a peer that is not,
// and gone once the session ends.
func TestExchangeLiveSessions(t *testing.T) {
	srv, base, key, x, ctx := exchangeServer(t)
	web := x.URL[:strings.Index(x.URL, "/exchange/")]
	other := srv.NewKey(t)

	alice := connect(t, base+"/"+key)
	bob := connect(t, base+"/"+key)
	stranger := connect(t, base+"/"+other)
	srv.WaitClients(t, 3)

	if err := alice.RegisterName(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if id, err := bob.LookupName(ctx, "alice"); err != nil || id != alice.NearID() {
		t.Fatalf("bob looks up alice: %q %v", id, err)
	}
	if id, err := stranger.LookupName(ctx, "alice"); err != nil || id != "" {
		t.Fatalf("another key's client found alice: %q %v", id, err)
	}
	if err := bob.RegisterName(ctx, "alice"); statusCode(err) != rtmfp.CallFailed || !strings.Contains(err.Error(), "still connected") {
		t.Fatalf("bob takes alice's name: %v", err)
	}
	// The web service sees the same directory.
	if id, err := x.Lookup(ctx, "alice"); err != nil || id != alice.NearID() {
		t.Fatalf("HTTP lookup: %q %v", id, err)
	}
	if err := x.Register(ctx, "bob", bob.NearID()); err != nil {
		t.Fatal(err)
	}
	if id, _ := alice.LookupName(ctx, "bob"); id != bob.NearID() {
		t.Fatalf("alice looks up bob: %q", id)
	}
	if err := x.Register(ctx, "mallory", strings.Repeat("ab", 32)); !errors.Is(err, rtmfp.ErrExchangeRefused) {
		t.Fatalf("a peer ID that is not connected: %v", err)
	}
	if err := x.Register(ctx, "stranger", stranger.NearID()); !errors.Is(err, rtmfp.ErrExchangeRefused) {
		t.Fatalf("a peer connected with another key: %v", err)
	}
	if err := (&rtmfp.HTTPExchange{URL: web + "/exchange/0123456789abcdef01234567-89abcdef0123"}).Register(ctx, "x", bob.NearID()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown key: %v", err)
	}
	if srv.ExchangeNames(key) != 2 {
		t.Fatalf("ExchangeNames = %d", srv.ExchangeNames(key))
	}

	// Alice leaves: her name goes with her session.
	alice.Close()
	srv.WaitClients(t, 2)
	if id, err := x.Lookup(ctx, "alice"); err != nil || id != "" {
		t.Fatalf("after alice left, HTTP lookup: %q %v", id, err)
	}
	if id, err := bob.LookupName(ctx, "alice"); err != nil || id != "" {
		t.Fatalf("after alice left, RTMFP lookup: %q %v", id, err)
	}
	if srv.ExchangeNames(key) != 1 {
		t.Fatalf("ExchangeNames after alice left = %d", srv.ExchangeNames(key))
	}
	if err := bob.RegisterName(ctx, "alice"); err != nil {
		t.Fatalf("the freed name: %v", err)
	}
	if err := bob.UnregisterName(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if id, _ := x.Lookup(ctx, "alice"); id != "" {
		t.Fatalf("after unregister: %q", id)
	}
	// Bad names are refused on the NetConnection too.
	if err := bob.RegisterName(ctx, ""); statusCode(err) != rtmfp.CallFailed {
		t.Fatalf("empty name: %v", err)
	}
	if !srv.Connected(bob.NearID(), key) || srv.Connected(bob.NearID(), other) || srv.Connected("zz", key) {
		t.Fatal("Connected answers wrongly")
	}
}

// Peer IDs are public and an HTTP registration proves nothing about who
// sends it, so anybody can register names against a connected peer's ID
// over HTTP, up to the per-peer bound; the peer's own registrations on its
// NetConnection must still succeed.
func TestExchangeHTTPCannotFillAPeersOwnRoom(t *testing.T) {
	srv, base, key, x, ctx := exchangeServer(t)
	victim := connect(t, base+"/"+key)
	srv.WaitClients(t, 1)
	var err error
	n := 0
	for ; err == nil && n < 100; n++ {
		err = x.Register(ctx, fmt.Sprintf("junk%d", n), victim.NearID())
	}
	if !errors.Is(err, rtmfp.ErrExchangeRefused) || n-1 != exchange.DefaultMaxNamesPerPeer {
		t.Fatalf("HTTP registrations against one peer ID: %d accepted, then %v", n-1, err)
	}
	if err := victim.RegisterName(ctx, "victim"); err != nil {
		t.Fatalf("the peer's own registration after HTTP filled its ID: %v", err)
	}
	if id, err := x.Lookup(ctx, "victim"); err != nil || id != victim.NearID() {
		t.Fatalf("lookup: %q %v", id, err)
	}
}

// Account suspension, per-key quotas and keys made outside the server
// reach it through KeyChanged.
func TestKeyChanged(t *testing.T) {
	st := store.NewMemory()
	srv, base := testServer(t, st, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	acct, _ := st.CreateAccount("dev", "dev@example.com", []byte("h"))
	// A connect with the key before it exists is remembered as unknown
	// for a while; KeyChanged after creating it clears that.
	k, _ := st.CreateAccountKey(acct.ID, "app")
	if err := srv.KeyChanged(k.ID); err != nil {
		t.Fatal(err)
	}
	nc := connect(t, base+"/"+k.ID)
	srv.WaitClients(t, 1)

	st.SuspendAccount(acct.ID, true)
	srv.KeyChanged(k.ID)
	select {
	case <-nc.Done():
	case <-ctx.Done():
		t.Fatal("the suspended account's session stayed open")
	}
	_, err := rtmfp.Connect(ctx, base+"/"+k.ID, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if statusCode(err) != rtmfp.ConnectRejected || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("connect while suspended: %v", err)
	}
	st.SuspendAccount(acct.ID, false)
	srv.KeyChanged(k.ID)
	st.SetKeyLimit(k.ID, 1)
	srv.KeyChanged(k.ID)
	connect(t, base+"/"+k.ID)
	_, err = rtmfp.Connect(ctx, base+"/"+k.ID, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if statusCode(err) != rtmfp.ConnectRejected || !strings.Contains(err.Error(), "too many sessions") {
		t.Fatalf("second session over the key's quota of 1: %v", err)
	}
	if n := srv.LiveSessions(k.ID); n != 1 {
		t.Fatalf("LiveSessions = %d", n)
	}
}
