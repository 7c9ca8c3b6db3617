package embedded

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkSync measures JetStream publish throughput into a file stream
// with each --nats-sync mode, side by side: one publisher waiting for every
// ack (an agent's outbox), and 16 publishers at once (a fleet).
func BenchmarkSync(b *testing.B) {
	payload := make([]byte, 1024)
	for _, mode := range []Sync{SyncAlways, SyncInterval} {
		for _, pubs := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/publishers=%d", mode, pubs), func(b *testing.B) {
				srv, err := Start(Options{StoreDir: b.TempDir(), Listen: "127.0.0.1:0", Sync: mode,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Shutdown()
				nc, err := srv.Connect("bench")
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				js, _ := jetstream.New(nc)
				ctx := context.Background()
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage}); err != nil {
					b.Fatal(err)
				}
				const perPub = 2000
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					errs := make(chan error, pubs)
					for p := 0; p < pubs; p++ {
						go func(p int) {
							for j := 0; j < perPub/pubs; j++ {
								if _, err := js.Publish(ctx, fmt.Sprintf("b.%d", p), payload); err != nil {
									errs <- err
									return
								}
							}
							errs <- nil
						}(p)
					}
					for p := 0; p < pubs; p++ {
						if err := <-errs; err != nil {
							b.Fatal(err)
						}
					}
				}
				el := time.Since(start)
				b.ReportMetric(float64(b.N*perPub)/el.Seconds(), "msgs/s")
			})
		}
	}
}
