package rtmfp_test

import (
	"context"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v4/vnet"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/store"
)

// natWorld is an in-process internet: the server on a public network and
// two peers, each behind its own NAT.
type natWorld struct {
	wan        *vnet.Router
	serverNet  *vnet.Net
	peerA      *vnet.Net
	peerB      *vnet.Net
	serverAddr string
}

func newNATWorld(t *testing.T, natA, natB vnet.NATType) *natWorld {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "203.0.113.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	w := &natWorld{wan: wan, serverAddr: "203.0.113.10:1935"}
	if w.serverNet, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"203.0.113.10"}}); err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(w.serverNet); err != nil {
		t.Fatal(err)
	}
	lan := func(cidr, public, host string, nat vnet.NATType) *vnet.Net {
		nat.Mode = vnet.NATModeNormal
		r, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: cidr, StaticIPs: []string{public}, NATType: &nat, LoggerFactory: lf})
		if err != nil {
			t.Fatal(err)
		}
		if err := wan.AddRouter(r); err != nil {
			t.Fatal(err)
		}
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{host}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddNet(n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	w.peerA = lan("10.1.0.0/24", "203.0.113.1", "10.1.0.2", natA)
	w.peerB = lan("10.2.0.0/24", "203.0.113.2", "10.2.0.2", natB)
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Stop() })
	conn, err := w.serverNet.ListenPacket("udp4", w.serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: store.NewMemory(), Open: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return w
}

func (w *natWorld) connect(t *testing.T, n *vnet.Net, host string) *rtmfp.NetConnection {
	t.Helper()
	conn, err := n.ListenPacket("udp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := rtmfp.Connect(context.Background(), "rtmfp://"+w.serverAddr+"/key",
		&rtmfp.Config{PacketConn: conn, ConnectTimeout: 10 * time.Second, PeerTimeout: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

var (
	fullCone       = vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}
	portRestricted = vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
	symmetric      = vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
)

func TestNATTraversal(t *testing.T) {
	for _, c := range []struct {
		name       string
		pub, sub   vnet.NATType
		shouldWork bool
	}{
		{"full-cone/full-cone", fullCone, fullCone, true},
		{"port-restricted/port-restricted", portRestricted, portRestricted, true},
		{"full-cone/symmetric", fullCone, symmetric, true},
		{"symmetric/symmetric", symmetric, symmetric, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newNATWorld(t, c.pub, c.sub)
			a := w.connect(t, w.peerA, "10.1.0.2")
			b := w.connect(t, w.peerB, "10.2.0.2")
			pub := publisher(t, a, "cam")
			ns, _ := rtmfp.NewNetStream(b, a.NearID())
			start := time.Now()
			err := ns.Play(context.Background(), "cam")
			if !c.shouldWork {
				if err == nil {
					t.Fatal("a session formed through two symmetric NATs")
				}
				waitStatus(t, ns, rtmfp.StreamConnectFailed)
				if d := time.Since(start); d > 12*time.Second {
					t.Fatalf("the failure took %v", d)
				}
				t.Logf("failed cleanly after %v: %v", time.Since(start).Round(time.Millisecond), err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, ns, rtmfp.PlayStart)
			for i := range 20 {
				pub.WriteVideo(uint32(i*40), []byte{0x17, 1, byte(i)})
			}
			timeout := time.After(10 * time.Second)
			for i := 0; i < 20; {
				select {
				case m := <-ns.Messages():
					if m.Kind == rtmfp.KindVideo {
						if m.Payload[2] != byte(i) {
							t.Fatalf("video %d out of order", i)
						}
						i++
					}
				case <-timeout:
					t.Fatalf("%d of 20 video messages through the NATs", i)
				}
			}
			t.Logf("streamed after %v", time.Since(start).Round(time.Millisecond))
		})
	}
}
