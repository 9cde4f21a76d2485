package rtmfp_test

import (
	"context"
	"testing"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
	"github.com/stratus-rtmfp/stratus/server/servertest"
)

func startServerB(b *testing.B) string {
	return servertest.Start(b, server.Config{Open: true}).URL("k")
}

func dialB(b *testing.B, url string) *rtmfp.NetConnection {
	nc, err := rtmfp.Connect(context.Background(), url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return nc
}

// pubSubB publishes name on a and subscribes each of subs (or s) to it,
// waiting for Play.Start.
func pubSubB(b *testing.B, a, s *rtmfp.NetConnection, name string, n int, subs ...*rtmfp.NetConnection) (*rtmfp.NetStream, []*rtmfp.NetStream) {
	pub, _ := rtmfp.NewNetStream(a, rtmfp.DirectConnections)
	pub.Publish(name)
	if s != nil {
		subs = []*rtmfp.NetConnection{s}
	}
	var out []*rtmfp.NetStream
	for _, c := range subs {
		ns, _ := rtmfp.NewNetStream(c, a.NearID())
		if err := ns.Play(context.Background(), name); err != nil {
			b.Fatal(err)
		}
		for st := range ns.Status() {
			if st.Code == rtmfp.PlayStart {
				break
			}
		}
		out = append(out, ns)
	}
	return pub, out
}
