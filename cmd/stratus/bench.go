package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/bench"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

const benchUsage = `usage: stratus bench <connect | idle | intro | groups | hold | all> [flags]

  connect  connects per second: handshake through NetConnection.Connect.Success
  idle     memory per idle session: holds --sessions sessions on the embedded server
  intro    introductions per second and lookup-to-Redirect latency
  cluster  introductions across cluster nodes (see: stratus bench cluster -h)
  groups   NetGroup joins per second, join-to-bootstrap latency and memory per
           membership: --members memberships in --groups groups, held by --clients
           sessions (one GC flow per membership); with --url the defaults are
           1600 in 20 groups held by 200 sessions, within a default server's
           limits (--max-sessions-per-ip 256 from this host, --max-groups-per-session 8)
  hold     holds --sessions connected sessions for --hold, then closes them;
           prints a line with "held" once all are up (measure the server's
           memory then)
  all      connect, intro, groups and idle, one after the other

Without --url the load runs against an embedded server on loopback (in this
process); with --url rtmfp://HOST:PORT/KEY it runs against that server, which
may be any RTMFP server (idle needs the embedded one: it measures this
process's memory).
`

func runBench(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, benchUsage)
		return errors.New("missing bench command")
	}
	what := args[0]
	if what == "cluster" {
		return runBenchCluster(args[1:])
	}
	fs := flag.NewFlagSet("bench "+what, flag.ContinueOnError)
	url := fs.String("url", "", "server to load (default: an embedded server on loopback)")
	clients := fs.Int("connects", 20000, "connects to run (connect)")
	sessions := fs.Int("sessions", 100000, "sessions to hold (idle, hold)")
	hold := fs.Duration("hold", time.Minute, "how long to hold the sessions once all are up (hold)")
	lookups := fs.Int("lookups", 100000, "introductions to run (intro)")
	members := fs.Int("members", 100000, "NetGroup memberships (groups; with --url default 1600)")
	groups := fs.Int("groups", 1000, "NetGroups the memberships are spread over (groups; with --url default 20)")
	groupClients := fs.Int("clients", 1000, "sessions holding the memberships, members/clients groups each (groups; with --url default 200)")
	conc := fs.Int("concurrency", 16, "concurrent clients")
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var t *bench.Target
	if *url == "" {
		var err error
		if t, err = bench.Embedded(nil); err != nil {
			return err
		}
		defer t.Local.Close()
		fmt.Printf("embedded server at %s\n", t.URL)
	} else {
		addrs, app, err := rtmfp.ParseURL(*url)
		if err != nil {
			return err
		}
		var v4 netip.AddrPort
		for _, a := range addrs {
			if a.Addr().Is4() {
				v4 = a
				break
			}
		}
		if !v4.IsValid() {
			return errors.New("bench needs an IPv4 server address")
		}
		t = &bench.Target{URL: *url, Server: v4, App: app}
		// Another server has its limits: all clients come from this
		// host, and a session holds at most 8 groups by default.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*int{"members": members, "groups": groups, "clients": groupClients} {
			if !set[name] {
				*v = map[string]int{"members": 1600, "groups": 20, "clients": 200}[name]
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := func(name string) error {
		var r any
		var err error
		switch name {
		case "connect":
			r, err = bench.Connects(ctx, t, *clients, *conc)
		case "idle":
			r, err = bench.Idle(ctx, t, *sessions, *conc)
		case "intro":
			r, err = bench.Intros(ctx, t, *lookups, *conc)
		case "groups":
			r, err = bench.Groups(ctx, t, bench.GroupsConfig{Members: *members, Groups: *groups, Clients: *groupClients, Concurrency: *conc})
		case "hold":
			r, err = bench.Hold(ctx, t, *sessions, *conc, *hold, func(r bench.HoldResult) {
				fmt.Printf("hold: %d sessions held (%d failed), opened in %v; holding them for %v\n",
					r.Sessions, r.Failures, r.Opened.Round(time.Millisecond), *hold)
			})
		default:
			fs.Usage()
			return fmt.Errorf("unknown bench %q", name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		bench.Report(os.Stdout, name, r)
		return nil
	}
	if what == "all" {
		for _, n := range []string{"connect", "intro", "groups", "idle"} {
			if err := run(n); err != nil {
				return err
			}
		}
		return nil
	}
	return run(what)
}
