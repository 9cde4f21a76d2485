// Command stratus is the Stratus RTMFP rendezvous service and its tools.
//
//	stratus server   run the rendezvous service
//	stratus keys     manage developer keys
//	stratus probe    connect to an RTMFP server, like Flash would, and measure it
//	stratus bench    load the server and measure it
//	stratus peer     publish/play FLV and send/listen peer to peer
//	stratus version  version and VCS revision of the binary
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

const usage = `usage: stratus <command> [flags]

commands:
  server   run the RTMFP rendezvous service (see: stratus server -h)
  keys     create, list, revoke and show developer keys (see: stratus keys)
  probe    connect to an RTMFP server as Flash would and report (see: stratus probe -h)
  bench    load tool: connects/s, memory per idle session, introductions/s (see: stratus bench)
  peer     publish and play FLV peer to peer, send and listen to messages (see: stratus peer)
  version  print the version, VCS revision and Go version of this binary
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(os.Args[2:])
	case "keys":
		err = runKeys(os.Args[2:])
	case "probe":
		err = runProbe(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "peer":
		err = runPeer(os.Args[2:])
	case "version", "-version", "--version":
		fmt.Println(versionString())
		return
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "stratus: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stratus:", err)
		os.Exit(1)
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
