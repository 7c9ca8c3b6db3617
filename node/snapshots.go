package node

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/services/snapshot"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// restoreSnapshot puts the newest snapshot in place of an empty or
// missing projection before the store opens (see snapshot.RestoreIfEmpty).
// It returns the snapshot restored, nil if none was.
func restoreSnapshot(ctx context.Context, js jetstream.JetStream, path string, verify *signing.Signer, log *slog.Logger) (*snapshot.Info, error) {
	in, err := snapshot.RestoreIfEmpty(ctx, js, path, verify, log.With("component", "snapshot"))
	if err != nil {
		return nil, fmt.Errorf("restore snapshot: %w", err)
	}
	return in, nil
}

// startSnapshots runs this node's snapshotter: it takes part in the
// periodic snapshots and answers kanade.snapshot.*, except while its
// projection has a history gap not accepted (see snapshot.Projection).
func startSnapshots(ctx context.Context, o Options, nc *nats.Conn, db *store.DB, p *projector.Projector, aud api.Auditor, log *slog.Logger) (*snapshot.Snapshotter, error) {
	so := o.Snapshot
	so.Conn, so.DB, so.NodeName, so.Projection, so.Signer = nc, db, o.NodeName, p, o.Signer
	so.Logger, so.Replicas, so.Audit = log.With("component", "snapshot"), o.Replicas, aud
	if p.JoinBlocked() != "" {
		so.NoService = true
		log.Warn("snapshot: this node's projection has a history gap not accepted; it takes no snapshots")
	}
	s, err := snapshot.Start(ctx, so)
	if err != nil {
		return nil, fmt.Errorf("start snapshots: %w", err)
	}
	return s, nil
}

// warnRetention warns when the projection keeps results longer than the
// RESULTS stream holds them: past the stream's window only a snapshot can
// bring them back to a node that lost its database. The window is the
// stream's max age, or less when its byte limit fills first at the rate
// seen so far (span of the messages held × max bytes / bytes held).
func warnRetention(ctx context.Context, js jetstream.JetStream, log *slog.Logger, retention time.Duration, snapshots bool) {
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		return
	}
	cfg, state := s.CachedInfo().Config, s.CachedInfo().State
	window := cfg.MaxAge
	if cfg.MaxBytes > 0 && state.Bytes > 0 && state.LastTime.After(state.FirstTime) {
		span := state.LastTime.Sub(state.FirstTime)
		if byBytes := time.Duration(float64(span) * float64(cfg.MaxBytes) / float64(state.Bytes)); window == 0 || byBytes < window {
			window = byBytes
		}
	}
	if window == 0 || (retention > 0 && retention <= window) {
		return
	}
	keep := "everything"
	if retention > 0 {
		keep = retention.String()
	}
	msg := "--retention is longer than the RESULTS stream holds messages: a node that loses its kanade.db gets the older results back only from a snapshot"
	if !snapshots {
		msg = "--retention is longer than the RESULTS stream holds messages and snapshots are off: a node that loses its kanade.db cannot get the older results back"
	}
	log.Warn(msg, "retention", keep, "stream_window", window.Round(time.Minute).String(),
		"stream_max_age", cfg.MaxAge.String(), "stream_max_bytes", cfg.MaxBytes, "stream_bytes", state.Bytes)
}
