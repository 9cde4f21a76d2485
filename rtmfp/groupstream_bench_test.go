package rtmfp_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/rtmfp"
)

// BenchmarkGroupStreamRelay: a publisher and 5 players in one group over
// loopback UDP; each iteration is one second of a 1 Mbit/s stream, in
// real time. It reports the CPU the whole process spends (all six
// members: receiving, relaying, publishing) per member and per Mbit the
// players relay to each other, and the share of a core each member uses.
func BenchmarkGroupStreamRelay(b *testing.B) {
	const members = 6
	pub, players, recs, _ := multicast(b, members, 0, rtmfp.MulticastSettings{}, groupOpts{spec: testSpec})
	tags := synthMedia(1, 1000)
	var relayed0 uint64
	for _, p := range players {
		mi := p.MulticastInfo()
		relayed0 += mi.BytesPushedToPeers + mi.BytesRequestedByPeers
	}
	cpu0, wall0 := cpuTime(), time.Now()
	b.ResetTimer()
	for i := range b.N {
		shifted := make([]tag, len(tags))
		for k, tg := range tags {
			tg.ts += uint32(i * 1000)
			shifted[k] = tg
		}
		if err := publishRealFrom(pub, shifted, uint32(i*1000)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	var relayed uint64
	for _, p := range players {
		mi := p.MulticastInfo()
		relayed += mi.BytesPushedToPeers + mi.BytesRequestedByPeers
	}
	relayedMbit := float64(relayed-relayed0) * 8 / 1e6
	b.ReportMetric(cpu.Seconds()*1000/members/relayedMbit, "ms-CPU/member/relayed-Mbit")
	b.ReportMetric(cpu.Seconds()/wall.Seconds()/members*100, "%core/member")
	b.ReportMetric(relayedMbit/wall.Seconds()/float64(len(players)), "relayed-Mbit/s/player")
	_ = recs
}

// publishRealFrom is publishReal for tags whose first timestamp is base.
func publishRealFrom(ns *rtmfp.NetStream, tags []tag, base uint32) error {
	start := time.Now()
	for _, tg := range tags {
		if d := time.Duration(tg.ts-base)*time.Millisecond - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		var err error
		switch tg.kind {
		case rtmfp.KindVideo:
			err = ns.WriteVideo(tg.ts, tg.data)
		case rtmfp.KindAudio:
			err = ns.WriteAudio(tg.ts, tg.data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkGroupPublisherUpload: how the publisher's upload grows with
// the audience (1, 5, 10 and 20 players), for 4 s of a 300 kbit/s
// stream: bytes it sent per byte of media. It fails at 3x or more (the
// issue's goal: the upload stays below 3x the stream's rate however large
// the audience).
func BenchmarkGroupPublisherUpload(b *testing.B) {
	for _, n := range []int{1, 5, 10, 20} {
		b.Run(fmt.Sprintf("players-%d", n), func(b *testing.B) {
			var up *countingConn
			pub, _, recs, _ := multicast(b, n+1, 0, rtmfp.MulticastSettings{}, groupOpts{spec: testSpec, wrap: func(i int, c net.PacketConn) net.PacketConn {
				if i != 0 {
					return c
				}
				up = &countingConn{PacketConn: c}
				return up
			}})
			tags := synthMedia(4, 300)
			var sent, media int64
			b.ResetTimer()
			for i := range b.N {
				shifted := make([]tag, len(tags))
				for k, tg := range tags {
					tg.ts += uint32(i * 4000)
					shifted[k] = tg
				}
				before := up.sent.Load()
				if err := publishRealFrom(pub, shifted, uint32(i*4000)); err != nil {
					b.Fatal(err)
				}
				sent += up.sent.Load() - before
				media += int64(mediaBytes(tags))
			}
			b.StopTimer()
			for k, r := range recs {
				r.waitHolds(b, fmt.Sprint("player ", k), tags, 0.95, 20*time.Second)
			}
			ratio := float64(sent) / float64(media)
			b.ReportMetric(ratio, "x-stream-upload")
			if ratio >= 3 {
				b.Fatalf("with %d players the publisher's upload is %.2fx the stream (the goal: below 3x)", n, ratio)
			}
		})
	}
}
