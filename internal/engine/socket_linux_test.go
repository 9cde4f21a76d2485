package engine

import (
	"net"
	"testing"
	"time"
)

// A datagram that arrives after a read emptied the socket is read at
// once by the next read, not at its deadline. (The raw socket used to
// wait for the poller without trying after such a read, but RawConn.Read
// resets the poll descriptor first, forgetting the readiness: the datagram
// waited for the next one or the deadline, and a server's session could
// time out while its client's packets sat in the socket.)
func TestRawSocketReadsWhatArrivedBetweenReads(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sock := newUDPSocket(conn, func(error, int) {})
	defer sock.close()
	if _, ok := sock.(*rawSocket); !ok {
		t.Skip("no raw socket")
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := conn.LocalAddr().(*net.UDPAddr)
	in := newInBatch()
	for i := range 20 {
		if _, err := peer.WriteToUDP([]byte{byte(i)}, to); err != nil {
			t.Fatal(err)
		}
		// Loopback delivers within the send: the datagram is in the
		// socket now, and the poller may already have taken its
		// readiness.
		time.Sleep(time.Millisecond)
		start := time.Now()
		n, err := sock.read(in, time.Now().Add(2*time.Second))
		if err != nil || n != 1 || in.n[0] != 1 || in.buf[0][0] != byte(i) {
			t.Fatalf("read %d: %d datagrams, err %v, after %v", i, n, err, time.Since(start))
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("read %d waited %v for a datagram already there", i, d)
		}
	}
}
