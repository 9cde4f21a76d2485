package servertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

func TestStartAndWait(t *testing.T) {
	srv := servertest.Start(t, server.Config{})
	key := srv.NewKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, srv.URL(key), &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv.WaitClients(t, 1)
	if s := srv.Sessions(); len(s) != 1 || s[0].PeerID != nc.NearID() || s[0].Key != key {
		t.Fatalf("sessions %+v", s)
	}
	srv.WaitEvent(t, nc.NearID(), server.SessionPeerInfo) // Connect sends it before returning
	nc.Close()
	srv.WaitEvent(t, nc.NearID(), server.SessionClosed)
	srv.WaitSessions(t, 0)
	var kinds []server.SessionEventKind
	for _, ev := range srv.Events() {
		if ev.PeerID == nc.NearID() {
			kinds = append(kinds, ev.Kind)
		}
	}
	want := []server.SessionEventKind{server.SessionOpened, server.SessionConnected, server.SessionPeerInfo, server.SessionClosed}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}
