package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestClusterBenchSmoke runs the cross-node introduction load at a small
// size on a 2-node cluster, so that "stratus bench cluster" keeps
// working: every introduction completes (Redirect and Forwarded IHello).
func TestClusterBenchSmoke(t *testing.T) {
	ts, stop, err := Cluster(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	r, err := CrossIntros(context.Background(), ts[0], ts[1], 8, 400, 4, 0)
	if err != nil || r.Lookups != 400 || r.Failures != 0 || r.ForwardsMissing != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	ReportCluster(os.Stdout, "cluster intro", r)
}

// BenchmarkCrossNodeIntroduction measures introductions across the nodes
// of a 3-node cluster in this process, one at a time: a lookup at node 1
// of a peer on node 3, until both the Redirect (from node 1) and the
// Forwarded IHello (from node 3, asked over NATS) arrived. ns/op is that
// latency's mean; p50 and p99 are reported too.
func BenchmarkCrossNodeIntroduction(b *testing.B) {
	ts, stop, err := Cluster(3, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	x, err := NewCrossIntro(ts[0], ts[2], 64)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		_, done, err := x.One(i)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, done)
		i++
	}
	l := summarise(lat)
	b.ReportMetric(float64(l.P50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l.P99.Nanoseconds())/1e3, "p99-µs")
}
