package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/peertool"
	"github.com/stratus-rtmfp/stratus/rtmfp"
)

const peerUsage = `usage:
  stratus peer publish --url rtmfp://HOST/KEY --name NAME [--register USER] [--loop] [--max-peers N] [--allow PEERID]... [--wait N] FILE.flv
  stratus peer play    --url rtmfp://HOST/KEY (--peer PEERID | --lookup USER) --name NAME --out OUT.flv [--duration D]
  stratus peer send    --url rtmfp://HOST/KEY --name NAME [--register USER] [--handler H] [--wait N] [MESSAGE...]
  stratus peer listen  --url rtmfp://HOST/KEY (--peer PEERID | --lookup USER) --name NAME [--handler H] [--duration D]

  stratus peer post    --url rtmfp://HOST/KEY --group SPEC [--count N] [--interval D] [--stay D] [--neighbor PEERID]... MESSAGE
  stratus peer listen  --url rtmfp://HOST/KEY --group SPEC [--duration D] [--neighbor PEERID]...
  stratus peer publish --url rtmfp://HOST/KEY --group SPEC --name NAME [--loop] [--wait N] FILE.flv
  stratus peer play    --url rtmfp://HOST/KEY --group SPEC --name NAME --out FILE.flv [--duration D]

publish and send print this peer's ID (64 hex digits) on a line of its own;
give it to play / listen as --peer, or register it in the server's peer-ID
exchange with --register USER and find it with --lookup USER (through the
NetConnection, or with --exchange URL through a VideoPhone-style web
service such as http://HOST:8080/exchange/KEY). Media and messages go peer
to peer: the server only introduces the peers.

With --group, post and listen join a NetGroup (SPEC is a groupspec, G:...)
and print one JSON line per event: "joining" (this peer's ID and group
address), NetGroup.Neighbor.Connect/Disconnect, NetGroup.Posting.Notify
(message, messageID), NetGroup.SendTo.Notify, and for post, "posted".
publish and play with --group put a stream into the group and record it
from there (multicast: members relay it to each other); publish waits for
--wait neighbours (default 1), play records until --duration or, without
one, until the stream is unpublished.
`

func runPeer(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, peerUsage)
		return errors.New("missing peer command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("peer "+cmd, flag.ContinueOnError)
	url := fs.String("url", "", "rtmfp://HOST[:PORT]/DEVELOPER_KEY of the rendezvous server")
	name := fs.String("name", "", "stream name")
	peer := fs.String("peer", "", "publisher's peer ID (play, listen)")
	out := fs.String("out", "", "recording (play)")
	duration := fs.Duration("duration", 0, "stop after this long (play, listen; 0: until the publisher stops)")
	loop := fs.Bool("loop", false, "repeat the file (publish)")
	maxPeers := fs.Int("max-peers", 0, "subscribers to accept at most (publish; default: maxPeerConnections, 8)")
	var allow listFlag
	fs.Var(&allow, "allow", "accept only this subscriber peer ID, repeatable (publish)")
	wait := fs.Int("wait", 1, "subscribers (group: neighbours) to wait for before starting (publish, send)")
	handler := fs.String("handler", "onMessage", "handler name of the send() calls (send, listen)")
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait for the server and the peer (post: for a first neighbour)")
	register := fs.String("register", "", "register this peer's ID under this user name in the peer-ID exchange (publish, send)")
	lookup := fs.String("lookup", "", "find the publisher's peer ID under this user name in the peer-ID exchange (play, listen)")
	exchangeURL := fs.String("exchange", "", "peer-ID exchange web service (VideoPhone protocol, e.g. http://HOST:8080/exchange/KEY); default: the server's NetConnection calls")
	groupSpec := fs.String("group", "", "groupspec of a NetGroup (post, listen, publish, play)")
	count := fs.Int("count", 1, "posts to send, each a new message (post)")
	interval := fs.Duration("interval", time.Second, "time between posts (post)")
	stay := fs.Duration("stay", 5*time.Second, "time to stay in the group after the last post (post)")
	var neighbors listFlag
	fs.Var(&neighbors, "neighbor", "connect to this group member at once, repeatable (post, listen with --group)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), peerUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	isGroup := *groupSpec != "" || cmd == "post"
	if *url == "" || *name == "" && !isGroup {
		fs.Usage()
		return errors.New("--url and --name are required")
	}
	if isGroup && *groupSpec == "" {
		fs.Usage()
		return errors.New("--group is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, err := rtmfp.Connect(ctx, *url, &rtmfp.Config{ConnectTimeout: *timeout, PeerTimeout: *timeout})
	if err != nil {
		return err
	}
	defer nc.Close()
	if isGroup {
		o := peertool.GroupOptions{Group: *groupSpec, Neighbors: neighbors, Wait: *timeout, Count: *count, Interval: *interval,
			Stay: *stay, Duration: *duration}
		switch cmd {
		case "post":
			if fs.NArg() != 1 {
				fs.Usage()
				return errors.New("one MESSAGE expected")
			}
			return peertool.GroupPost(ctx, nc, os.Stdout, fs.Arg(0), o)
		case "listen":
			return peertool.GroupListen(ctx, nc, os.Stdout, o)
		case "publish":
			if fs.NArg() != 1 || *name == "" {
				fs.Usage()
				return errors.New("--name and one FLV file expected")
			}
			fmt.Fprintf(os.Stderr, "publishing %s as %q in the group; waiting for %d neighbour(s)\n", fs.Arg(0), *name, *wait)
			err := peertool.GroupPublish(ctx, nc, fs.Arg(0), peertool.GroupPublishOptions{Group: *groupSpec, Name: *name, Loop: *loop, Wait: *wait, Log: os.Stderr})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case "play":
			if *name == "" || *out == "" {
				fs.Usage()
				return errors.New("--name and --out are required")
			}
			return recordTo(ctx, nc, *out, peertool.PlayOptions{Group: *groupSpec, Name: *name, Duration: *duration, Log: os.Stderr})
		}
		fs.Usage()
		return fmt.Errorf("--group works with post, listen, publish and play, not %q", cmd)
	}
	ex := peerExchange{nc: nc, web: *exchangeURL}
	if *register != "" {
		if err := ex.register(ctx, *register); err != nil {
			return fmt.Errorf("registering %q: %w", *register, err)
		}
		fmt.Fprintf(os.Stderr, "registered as %q in the peer-ID exchange\n", *register)
		defer ex.unregister(*register)
	}
	if *lookup != "" {
		id, err := ex.lookup(ctx, *lookup)
		if err != nil {
			return fmt.Errorf("looking up %q: %w", *lookup, err)
		}
		if id == "" {
			return fmt.Errorf("%q is not available in the peer-ID exchange", *lookup)
		}
		fmt.Fprintf(os.Stderr, "%q is %s\n", *lookup, id)
		*peer = id
	}
	switch cmd {
	case "publish":
		if fs.NArg() != 1 {
			fs.Usage()
			return errors.New("one FLV file expected")
		}
		fmt.Println(nc.NearID())
		fmt.Fprintf(os.Stderr, "publishing %s as %q; waiting for %d subscriber(s)\n", fs.Arg(0), *name, *wait)
		err := peertool.Publish(ctx, nc, fs.Arg(0), peertool.PublishOptions{Name: *name, Loop: *loop, Allow: allow, MaxPeers: *maxPeers, Wait: *wait, Log: os.Stderr})
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case "play":
		if *peer == "" || *out == "" {
			fs.Usage()
			return errors.New("--peer (or --lookup) and --out are required")
		}
		return recordTo(ctx, nc, *out, peertool.PlayOptions{Peer: *peer, Name: *name, Duration: *duration, Log: os.Stderr})
	case "send":
		return peerSend(ctx, nc, *name, *handler, *wait, fs.Args())
	case "listen":
		if *peer == "" {
			fs.Usage()
			return errors.New("--peer or --lookup is required")
		}
		return peerListen(ctx, nc, *peer, *name, *handler, *duration)
	}
	fs.Usage()
	return fmt.Errorf("unknown peer command %q", cmd)
}

// recordTo plays a stream into the FLV file out.
func recordTo(ctx context.Context, nc *rtmfp.NetConnection, out string, o peertool.PlayOptions) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	st, err := peertool.Play(ctx, nc, f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(os.Stderr, "recorded %d tags, %d bytes into %s\n", st.Tags, st.Bytes, out)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// peerSend publishes name and sends each message (arguments, or stdin
// lines) as handler(message) to the subscribers.
func peerSend(ctx context.Context, nc *rtmfp.NetConnection, name, handler string, wait int, msgs []string) error {
	ns, err := rtmfp.NewNetStream(nc, rtmfp.DirectConnections)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := ns.Publish(name); err != nil {
		return err
	}
	fmt.Println(nc.NearID())
	for len(ns.PeerStreams()) < wait {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	send := func(m string) error { return ns.Send(handler, m) }
	if len(msgs) > 0 {
		for _, m := range msgs {
			if err := send(m); err != nil {
				return err
			}
		}
	} else {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if err := send(sc.Text()); err != nil {
				return err
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let the last messages be acknowledged
	return nil
}

// peerListen plays a peer's stream and prints each send() call as a JSON
// line: {"handler": ..., "args": [...]}.
func peerListen(ctx context.Context, nc *rtmfp.NetConnection, peer, name, handler string, d time.Duration) error {
	ns, err := rtmfp.NewNetStream(nc, peer)
	if err != nil {
		return err
	}
	defer ns.Close()
	enc := json.NewEncoder(os.Stdout)
	ns.Handle(handler, func(args []any) { enc.Encode(map[string]any{"handler": handler, "args": args}) })
	if err := ns.Play(ctx, name); err != nil {
		return err
	}
	var stop <-chan time.Time
	if d > 0 {
		stop = time.After(d)
	}
	for {
		select {
		case st := <-ns.Status():
			fmt.Fprintln(os.Stderr, st.Code)
			if st.Code == rtmfp.StreamConnectRejected {
				return errors.New("the publisher refused")
			}
		case _, ok := <-ns.Messages():
			if !ok {
				return nil // the stream ended
			}
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// peerExchange registers and looks up peer IDs through the server's
// NetConnection calls, or through a VideoPhone-style web service.
type peerExchange struct {
	nc  *rtmfp.NetConnection
	web string
}

func (p peerExchange) register(ctx context.Context, user string) error {
	if p.web != "" {
		return (&rtmfp.HTTPExchange{URL: p.web}).Register(ctx, user, p.nc.NearID())
	}
	return p.nc.RegisterName(ctx, user)
}

// unregister is best effort: the name goes with the session anyway.
func (p peerExchange) unregister(user string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if p.web != "" {
		(&rtmfp.HTTPExchange{URL: p.web}).Unregister(ctx, user)
		return
	}
	p.nc.UnregisterName(ctx, user)
}

func (p peerExchange) lookup(ctx context.Context, user string) (string, error) {
	if p.web != "" {
		return (&rtmfp.HTTPExchange{URL: p.web}).Lookup(ctx, user)
	}
	return p.nc.LookupName(ctx, user)
}
