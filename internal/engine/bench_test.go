package engine

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/stratus-rtmfp/stratus/internal/handshake"
)

// BenchmarkFlowThroughputUDP streams 64 KiB messages over one flow between
// two engines on loopback UDP (both in this process: the machine's two
// cores are shared by sender and receiver).
func BenchmarkFlowThroughputUDP(b *testing.B) {
	sc, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	cc, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	_ = sc.SetReadBuffer(4 << 20)
	_ = cc.SetReadBuffer(4 << 20)
	server := serverEngine(b, sc, Config{})
	client := clientEngine(b, cc, Config{})
	defer server.Close()
	defer client.Close()
	ctx := context.Background()
	addr := sc.LocalAddr().(*net.UDPAddr).AddrPort()
	sess, err := client.Connect(ctx, handshake.AncillaryEPD("rtmfp://bench/app"), ConnectOptions{}, addr)
	if err != nil {
		b.Fatal(err)
	}
	ss, _ := server.Accept(ctx)
	f, _ := sess.OpenFlow([]byte("bench"), nil)
	msg := make([]byte, 64<<10)
	done := make(chan int64)
	go func() {
		rf, _ := ss.AcceptFlow(ctx)
		var n int64
		for {
			m, err := rf.Read(ctx)
			if err == io.EOF {
				done <- n
				return
			}
			n += int64(len(m))
		}
	}()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	got := <-done
	b.StopTimer()
	if got != int64(b.N)*int64(len(msg)) {
		b.Fatalf("received %d of %d bytes", got, int64(b.N)*int64(len(msg)))
	}
	b.ReportMetric(float64(got*8)/b.Elapsed().Seconds()/1e6, "Mbit/s")
	st := sess.Stats()
	b.ReportMetric(float64(st.Retransmissions), "rtx")
}
