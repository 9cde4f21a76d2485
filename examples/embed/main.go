// Command embed shows Stratus used as a library from another module: it
// runs a rendezvous server on loopback with a developer-key store of its
// own, connects to it with the client SDK as Flash would, prints the status
// and exits.
//
//	cd examples/embed && go run .
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
	"github.com/stratus-rtmfp/stratus/server"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	// The application decides which keys exist: here one fixed key, kept
	// by the store in keystore.go.
	keys := newFixedStore("0123456789abcdef01234567-89abcdef0123", "embedded demo")
	srv, err := server.New(server.Config{Store: keys})
	if err != nil {
		return err
	}
	defer srv.Close()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := srv.Listen(conn); err != nil {
		return err
	}
	url := "rtmfp://" + conn.LocalAddr().String() + "/" + keys.id
	fmt.Println("server listening at", url)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := rtmfp.Connect(ctx, url, &rtmfp.Config{LocalAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	fmt.Printf("%s: nearID %s\n", rtmfp.ConnectSuccess, nc.NearID())
	// A key the store does not know is refused.
	if _, err := rtmfp.Connect(ctx, "rtmfp://"+conn.LocalAddr().String()+"/not-a-key", &rtmfp.Config{LocalAddr: "127.0.0.1:0"}); err == nil {
		fmt.Fprintln(os.Stderr, "an unknown key was accepted")
		os.Exit(1)
	}
	nc.Close()
	return srv.Shutdown(ctx)
}
