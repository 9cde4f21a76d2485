package rtmfp_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkP2PStream streams 8 KiB video messages from a publisher to one
// subscriber over loopback UDP (both in this process) and reports the
// throughput and the CPU time (both peers) per Mbit/s.
func BenchmarkP2PStream(b *testing.B) {
	url := startServerB(b)
	a, s := dialB(b, url), dialB(b, url)
	pub, sub := pubSubB(b, a, s, "bench", 1)
	payload := make([]byte, 8<<10)
	payload[0] = 0x17
	done := make(chan int)
	go func() {
		n := 0
		for range b.N {
			m := <-sub[0].Messages()
			n += len(m.Payload)
		}
		done <- n
	}()
	cpu0, wall0 := cpuTime(), time.Now()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := range b.N {
		for pub.WriteVideo(uint32(i), payload) != nil {
			time.Sleep(100 * time.Microsecond) // the subscriber's window is full: wait
		}
	}
	got := <-done
	b.StopTimer()
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	mbit := float64(got) * 8 / 1e6 / wall.Seconds()
	b.ReportMetric(mbit, "Mbit/s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds()/mbit*1000, "ms-CPU/s-per-Mbit/s")
}

// BenchmarkPublisherFanout measures what one WriteVideo costs the
// publisher with 1 and with 8 subscribers.
func BenchmarkPublisherFanout(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(map[int]string{1: "1-subscriber", 8: "8-subscribers"}[n], func(b *testing.B) {
			url := startServerB(b)
			a := dialB(b, url)
			var subs []*rtmfp.NetConnection
			for range n {
				subs = append(subs, dialB(b, url))
			}
			pub, streams := pubSubB(b, a, nil, "fan", n, subs...)
			payload := make([]byte, 2<<10)
			stop := make(chan struct{})
			for _, s := range streams {
				go func() {
					for {
						select {
						case <-s.Messages():
						case <-stop:
							return
						}
					}
				}()
			}
			b.ResetTimer()
			for i := range b.N {
				for pub.WriteVideo(uint32(i), payload) != nil {
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.StopTimer()
			close(stop)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber-write")
		})
	}
}
