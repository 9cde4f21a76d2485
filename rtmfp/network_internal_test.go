package rtmfp

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

func TestNetworkChange(t *testing.T) {
	var iface atomic.Value
	iface.Store("192.0.2.10")
	interfaceAddrs = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP(iface.Load().(string)), Mask: net.CIDRMask(24, 32)}}, nil
	}
	networkCheck = 50 * time.Millisecond
	defer func() { interfaceAddrs, networkCheck = net.InterfaceAddrs, 5*time.Second }()

	srv := servertest.Start(t, server.Config{Open: true})
	// Bound to all interfaces, so that setPeerInfo lists interface addresses.
	nc, err := Connect(context.Background(), srv.URL("k"), &Config{LocalAddr: "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitAddr := func(want string) {
		t.Helper()
		srv.WaitFor(t, "told "+want+" in setPeerInfo", func(s []server.SessionInfo) bool {
			return len(s) == 1 && len(s[0].Addresses) == 1 && strings.HasPrefix(s[0].Addresses[0], want+":")
		})
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
