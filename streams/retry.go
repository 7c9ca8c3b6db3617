package streams

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Retry runs fn until it succeeds, for up to a minute (30 attempts, 2 s
// apart, each bounded to 10 s): while a cluster forms, JetStream calls time
// out until its leaders are elected, and a stream or bucket of several
// replicas cannot be placed until enough peers are up ("no suitable
// peers"). Each failed attempt is logged as what; the last error is
// returned wrapped in what.
func Retry(ctx context.Context, what string, log *slog.Logger, fn func(context.Context) error) error {
	if log == nil {
		log = slog.Default()
	}
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || attempt >= 30 {
			return fmt.Errorf("%s: %w", what, err)
		}
		log.Warn(what+": retrying", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
