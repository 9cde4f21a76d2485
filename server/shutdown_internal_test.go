package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/flash"
	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/store"
)

// Commands that the server reads after it told a client AppShutdown (a
// setPeerInfo the client sent right after connect, a ping) are not served,
// and the client still hears AppShutdown and close. They used to be
// answered on the control flow the shutdown had finished; the failed
// write aborted the session before AppShutdown left (TestShutdownDrains
// failed now and then when both were read in one round). Here both run in
// one round of the dispatcher, every time.
func TestCommandsAfterShutdownNotice(t *testing.T) {
	st := store.NewMemory()
	k, _ := st.CreateKey("")
	srv, base := testServer(t, st, nil)
	nc := connect(t, base+"/"+k.ID)
	waitOneConnected(t, srv)
	var c *client
	srv.mu.Lock()
	for _, e := range srv.engines {
		for _, sess := range e.Sessions() {
			if cl, ok := sess.Value().(*client); ok {
				c = cl
			}
		}
	}
	srv.mu.Unlock()
	if c == nil {
		t.Fatal("no client on the server")
	}
	srv.mu.Lock()
	srv.draining = true
	srv.mu.Unlock()
	c.e.Run(func() {
		c.shutdown()
		c.onCommand(flash.Command{Name: "setPeerInfo", Args: []any{"127.0.0.1:5000"}})
		ping, _ := flash.ParseMessage(flash.AppendUserControl(nil, flash.EventPingRequest, 7))
		c.onControl(ping)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-nc.Done():
	case <-ctx.Done():
		t.Fatal("the client was not closed")
	}
	var codes []string
	for len(nc.Status()) > 0 {
		codes = append(codes, (<-nc.Status()).Code)
	}
	if !slices.Contains(codes, rtmfp.ConnectAppShutdown) {
		t.Fatalf("status events %v (closed: %v), want %s among them", codes, nc.Err(), rtmfp.ConnectAppShutdown)
	}
}
