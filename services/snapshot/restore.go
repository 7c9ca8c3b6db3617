package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Empty reports whether the projection at path holds nothing: no file, or
// a database with no stream offsets and no result rows (created and never
// fed). Only such a database is replaced by a snapshot.
func Empty(ctx context.Context, path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return true, nil
	} else if err != nil {
		return false, fmt.Errorf("snapshot: %w", err)
	}
	// Opened read-write, as the store will be: rows may still sit in the
	// WAL of a node that crashed (the main file can even be empty), and
	// only a writer recovers them.
	c, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return false, fmt.Errorf("snapshot: open %s: %w", path, err)
	}
	defer c.Close()
	var tables int
	if err := c.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
		AND name IN ('projector_offsets', 'execution_results')`).Scan(&tables); err != nil {
		return false, fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	if tables < 2 {
		return tables == 0, nil
	}
	var n int
	if err := c.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM projector_offsets)
		+ (SELECT count(*) FROM (SELECT 1 FROM execution_results LIMIT 1))`).Scan(&n); err != nil {
		return false, fmt.Errorf("snapshot: read %s: %w", path, err)
	}
	return n == 0, nil
}

// RestoreIfEmpty puts the newest usable snapshot in place of an empty or
// missing projection at path, before the store is opened. It returns the
// snapshot restored, or nil when the projection was not empty or there is
// no snapshot (the projector then replays the streams from their start).
// Progress is logged every few seconds. A snapshot written by a newer
// schema than this binary's is skipped, and so is one whose name, size or
// chunks are out of bounds; with verify (the node's command signing key)
// so is one not signed by that key: the bucket is written through
// JetStream, and a restored file becomes this node's projection.
func RestoreIfEmpty(ctx context.Context, js jetstream.JetStream, path string, verify *signing.Signer, log *slog.Logger) (*Info, error) {
	empty, err := Empty(ctx, path)
	if err != nil || !empty {
		return nil, err
	}
	obj, err := js.ObjectStore(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		log.Info("snapshot: the projection is empty and there is no snapshot bucket; replaying the streams")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: object store %s: %w", Bucket, err)
	}
	list, err := List(ctx, obj)
	if err != nil {
		return nil, err
	}
	if verify == nil && len(list) > 0 {
		log.Warn("snapshot: this node has no signing key: snapshots are restored without checking who made them")
	}
	for _, in := range list {
		if why := check(in.oi, verify); why != "" {
			log.Warn("snapshot: skipped", "name", in.Name, "why", why)
			continue
		}
		if in.Schema > store.SchemaVersion() {
			log.Warn("snapshot: skipped, made by a newer schema", "name", in.Name, "schema", in.Schema, "ours", store.SchemaVersion())
			continue
		}
		log.Info("snapshot: the projection is empty; restoring the newest snapshot", "name", in.Name,
			"node", in.Node, "created_at", in.CreatedAt, "bytes", in.Bytes, "db_bytes", in.DBBytes, "offsets", in.Offsets)
		start := time.Now()
		if err := restore(ctx, obj, in, path, log); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			// A damaged snapshot (digest, zstd, a short read): an older
			// one may do.
			log.Error("snapshot: restore failed; trying an older one", "name", in.Name, "err", err)
			continue
		}
		in.TookSecs = time.Since(start).Seconds()
		log.Info("snapshot: restored; the streams replay from its sequences", "name", in.Name,
			"results", in.Results, "took", time.Since(start).Round(time.Millisecond))
		warnOlderThanStreams(ctx, js, in, log)
		return &in, nil
	}
	log.Info("snapshot: the projection is empty and there is no usable snapshot; replaying the streams")
	return nil, nil
}

// restore downloads in into a temporary file and renames it over path.
func restore(ctx context.Context, obj jetstream.ObjectStore, in Info, path string, log *slog.Logger) error {
	tmp := path + ".restore"
	os.Remove(tmp)
	defer os.Remove(tmp)
	r, err := obj.Get(ctx, in.Name)
	if err != nil {
		return fmt.Errorf("snapshot: get %s: %w", in.Name, err)
	}
	defer r.Close()
	var read atomic.Int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := read.Load()
				log.Info("snapshot: restoring", "name", in.Name, "read", n, "of", in.Bytes,
					"percent", fmt.Sprintf("%.1f", 100*float64(n)/float64(max(in.Bytes, 1))))
			}
		}
	}()
	defer close(done)
	dec, err := zstd.NewReader(&counter{r: r, n: &read}, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer dec.Close()
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// The object store checks the SHA-256 digest at the end of the object:
	// a damaged snapshot fails here rather than being renamed into place.
	// The file must come out exactly as large as the copy was (db_bytes),
	// and no larger is written.
	n, err := io.Copy(f, io.LimitReader(dec, in.DBBytes+1))
	if err == nil && n != in.DBBytes {
		err = fmt.Errorf("decompressed to %d bytes, the copy was %d", n, in.DBBytes)
	}
	if err == nil {
		// Drain to the end: the digest is checked there.
		if _, err = io.Copy(io.Discard, r); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot: restore %s: %w", in.Name, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

type counter struct {
	r io.Reader
	n *atomic.Int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// roURI is a read-only file: URI for path (a plain name would ignore the
// mode).
func roURI(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro"
}

// warnOlderThanStreams says so when a stream no longer holds the messages
// right after the snapshot's sequence: the projector will record the
// history gap (and keep the node out of the read queue groups).
func warnOlderThanStreams(ctx context.Context, js jetstream.JetStream, in Info, log *slog.Logger) {
	for name, seq := range in.Offsets {
		s, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		first := s.CachedInfo().State.FirstSeq
		switch {
		case first <= seq+1:
		case name == wire.StreamEvents:
			// Read through a filter: the lost messages may not be
			// started events at all, and those only fill in `version`.
			log.Info("snapshot: older than the EVENTS stream; run-started events after it may be gone",
				"name", in.Name, "snapshot_seq", seq, "stream_first_seq", first)
		default:
			log.Warn("snapshot: older than the stream: messages after it are gone, history is lost",
				"name", in.Name, "stream", name, "snapshot_seq", seq, "stream_first_seq", first)
		}
	}
}
