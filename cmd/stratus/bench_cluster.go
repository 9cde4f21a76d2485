package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/stratus-rtmfp/stratus/internal/bench"
)

const benchClusterUsage = `usage: stratus bench cluster [--nodes N] [--lookups N] [--concurrency N] [--targets N]

Starts N cluster nodes in this process (embedded NATS, routes on loopback)
and measures introductions across nodes: peers connected to the last node
are looked up at the first, and the time from each lookup to the Redirect
(from the first node) and to the Forwarded IHello at the peer (from the
last node, asked over NATS) is recorded.
`

func runBenchCluster(args []string) error {
	fs := flag.NewFlagSet("bench cluster", flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "cluster nodes")
	lookups := fs.Int("lookups", 50000, "introductions to run")
	conc := fs.Int("concurrency", 16, "concurrent initiators")
	peers := fs.Int("targets", 64, "peers looked up, in turn, on the last node")
	rate := fs.Float64("rate", 0, "lookups per second in all, paced (latency at a given load); 0: as fast as the Redirects come back (throughput)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchClusterUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 2 {
		return fmt.Errorf("--nodes %d: a cluster bench needs at least 2", *nodes)
	}
	ts, stop, err := bench.Cluster(*nodes, nil)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("%d nodes: initiators at %s, target peer at %s\n", *nodes, ts[0].URL, ts[len(ts)-1].URL)
	r, err := bench.CrossIntros(context.Background(), ts[0], ts[len(ts)-1], *peers, *lookups, *conc, *rate)
	if err != nil {
		return err
	}
	bench.ReportCluster(os.Stdout, "cluster intro", r)
	if os.Getenv("STRATUS_BENCH_DEBUG") != "" {
		for _, t := range ts {
			fmt.Printf("%s: engine %+v\n  cluster %+v\n", t.Local.ClusterNode(), t.Local.EngineStats(), t.Local.ClusterCounters())
		}
	}
	return nil
}
