package rtmfp

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/store"
	"github.com/stratus-rtmfp/stratus/server"
)

func TestNetworkChange(t *testing.T) {
	var iface atomic.Value
	iface.Store("192.0.2.10")
	interfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP(iface.Load().(string)), Mask: net.CIDRMask(24, 32)}}, nil
	}
	networkCheck = 50 * time.Millisecond
	defer func() { interfaceAddrs, networkCheck = net.InterfaceAddrs, 5*time.Second }()

	srv, _ := server.New(server.Config{Store: store.NewMemory(), Open: true})
	conn, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	go srv.Serve(conn)
	defer srv.Close()
	time.Sleep(20 * time.Millisecond)
	// Bound to all interfaces, so that setPeerInfo lists interface addresses.
	nc, err := Connect(context.Background(), "rtmfp://"+conn.LocalAddr().String()+"/k", &Config{LocalAddr: "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitAddr := func(want string) {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if s := srv.Sessions(); len(s) == 1 && len(s[0].Addresses) == 1 && net.ParseIP(want) != nil &&
				s[0].Addresses[0][:len(want)] == want {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("server never saw %s in setPeerInfo: %+v", want, srv.Sessions())
	}
	waitAddr("192.0.2.10")
	iface.Store("198.51.100.20") // the laptop moved to another network
	timeout := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case st := <-nc.Status():
			got = st.Code == ConnectNetworkChange
		case <-timeout:
			t.Fatal("no NetConnection.Connect.NetworkChange")
		}
	}
	waitAddr("198.51.100.20")
}
