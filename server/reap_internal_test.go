package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/directory"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/store"
)

// A client that vanishes without a word is reaped after ReapAfter, and
// nothing of it stays in the registry.
func TestDeadClientIsReaped(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	srv, base := testServer(t, st, func(c *Config) { c.ReapAfter = 2 * time.Second })
	conn, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	nc, err := rtmfp.Connect(context.Background(), base+"/"+k.ID, &rtmfp.Config{PacketConn: conn})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitOneConnected(t, srv)
	conn.Close() // the client vanishes
	start := time.Now()
	waitSessions(t, srv, 10*time.Second, "the vanished client was not reaped", func(s []SessionInfo) bool { return len(s) == 0 })
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("reaped after %v, before ReapAfter (2 s)", d)
	}
	t.Logf("reaped after %v", time.Since(start))
	peers := srv.dir.(*directory.Local).Len()
	srv.mu.Lock()
	n := peers + len(srv.byAddr) + len(srv.perIP) + len(srv.perKey) + len(srv.live)
	srv.mu.Unlock()
	if n != 0 {
		t.Fatal("registry entries left behind")
	}
}
