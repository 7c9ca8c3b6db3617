// Package snapshot keeps copies of a node's SQLite projection in a
// JetStream object store, so that a node whose database is gone (deleted,
// a new disk, a node added to a cluster) gets back everything, including
// what the streams no longer hold: it restores the newest snapshot and
// replays each stream from the sequences the snapshot includes.
//
// A snapshot is VACUUM INTO of the projection, so every table in it is as
// of one commit, projector_offsets included: the sequences it carries are
// exactly those of its rows. It is zstd-compressed into the object store
// bucket "kanade_snapshots"; the object's metadata repeats the offsets, the
// schema version, the node and the row count. Periodically one node takes
// a snapshot: nodes claim each period in the KV bucket "snapshot_claims"
// with a compare-and-set, like the scheduler claims ticks; the last Keep
// snapshots are kept. kanade.snapshot.create takes one on demand.
package snapshot

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
)

// Names in JetStream.
const (
	// Bucket is the object store the snapshots live in.
	Bucket = "kanade_snapshots"
	// BucketClaims holds the last period some node claimed to snapshot.
	BucketClaims = "snapshot_claims"
	claimKey     = "periodic"
)

// Defaults of Options.
const (
	DefaultInterval = 6 * time.Hour
	DefaultKeep     = 3
)

// Metadata keys of a snapshot object.
const (
	metaNode     = "node"
	metaCreated  = "created_at"
	metaOffsets  = "offsets"
	metaSchema   = "schema"
	metaDBBytes  = "db_bytes"
	metaResults  = "results"
	metaEncoding = "encoding"
)

// Projection is what the snapshotter asks of the node's projector: a
// snapshot is taken only of a projection that is current and has no history
// gap an operator has not accepted. One with accepted gaps (it lacks what
// they held, and so will its snapshots, which carry the accepted gaps) takes
// a periodic snapshot only when no peer has for two intervals, so that a
// complete node's snapshot is preferred and a deployment whose every node
// lost history still gets snapshots from then on.
type Projection interface {
	CaughtUp(max time.Duration) bool
	HasGaps() bool
	JoinBlocked() string
}

// ready reports whether p may be snapshotted now.
func ready(p Projection) bool {
	return p == nil || p.JoinBlocked() == "" && p.CaughtUp(time.Minute)
}

// Options configure the snapshotter.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	NodeName string
	Logger   *slog.Logger
	Replicas int
	// Projection, when set, must be current and without gaps for a
	// snapshot to be taken.
	Projection Projection
	// Interval between periodic snapshots across the cluster (default
	// DefaultInterval; negative: none, only on demand).
	Interval time.Duration
	// Keep is how many snapshots stay in the bucket (default DefaultKeep).
	Keep int
	// Signer, the node's command signing key, signs each snapshot; a node
	// holding the same key restores only snapshots it signed (see
	// RestoreIfEmpty). nil: unsigned.
	Signer *signing.Signer
	// NoService skips the micro service (tests).
	NoService bool
	// Audit records each snapshot asked for before it is taken (nil: no
	// trail).
	Audit api.Auditor
}

// Info describes one snapshot.
type Info struct {
	Name      string            `json:"name"`
	Node      string            `json:"node"`
	CreatedAt time.Time         `json:"created_at"`
	Offsets   map[string]uint64 `json:"offsets"`
	Schema    int               `json:"schema"`
	DBBytes   int64             `json:"db_bytes"`
	Bytes     uint64            `json:"bytes"` // in the bucket, compressed
	Results   int64             `json:"results"`
	TookSecs  float64           `json:"took_secs,omitempty"`
	// SignedBy is the kid of the key that signed it; "" when unsigned.
	SignedBy string `json:"signed_by,omitempty"`

	oi *jetstream.ObjectInfo // as listed, for the checks before a restore
}

// Snapshotter takes snapshots of one node's projection.
type Snapshotter struct {
	o      Options
	log    *slog.Logger
	js     jetstream.JetStream
	obj    jetstream.ObjectStore
	claims jetstream.KeyValue
	svc    *api.Running

	mu     sync.Mutex // one snapshot at a time
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens (creating) the bucket and the claims bucket, and starts the
// periodic snapshots and the service.
func Start(ctx context.Context, o Options) (*Snapshotter, error) {
	if o.Conn == nil || o.DB == nil {
		return nil, errors.New("snapshot: a NATS connection and a store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	s := &Snapshotter{o: o, log: o.Logger, js: js}
	// Copies left by a snapshot that a crash interrupted.
	if stale, _ := filepath.Glob(filepath.Join(filepath.Dir(o.DB.Path), ".kanade.db.snapshot-*")); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
		s.log.Info("snapshot: removed copies left by an interrupted snapshot", "files", len(stale))
	}
	// Right after a cluster starts, a bucket of several replicas cannot be
	// placed until enough peers are up ("no suitable peers"): retried, as
	// the streams are.
	err = streams.Retry(ctx, "snapshot: buckets", s.log, func(ctx context.Context) error {
		if s.obj == nil {
			obj, err := EnsureBucket(ctx, js, o.Replicas)
			if err != nil {
				return err
			}
			s.obj = obj
		}
		claims, err := ensureClaims(ctx, js, o.Replicas)
		if err != nil {
			return err
		}
		s.claims = claims
		return nil
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if o.Interval > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.periodic(runCtx) }()
	}
	if !o.NoService {
		svc, err := s.startService()
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.svc = svc
	}
	return s, nil
}

// Stop stops the service and the periodic snapshots, waiting for one in
// progress to end (it is cancelled).
func (s *Snapshotter) Stop() error {
	if s == nil {
		return nil
	}
	var err error
	if s.svc != nil {
		err = s.svc.Stop()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return err
}

// EnsureBucket opens the snapshots object store, creating it if needed.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.ObjectStore, error) {
	obj, err := js.ObjectStore(ctx, Bucket)
	if err == nil {
		return obj, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("snapshot: object store %s: %w", Bucket, err)
	}
	obj, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: Bucket, Description: "kanade: snapshots of the SQLite projection",
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.ObjectStore(ctx, Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: create object store %s: %w", Bucket, err)
	}
	return obj, nil
}

func ensureClaims(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, BucketClaims)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("snapshot: kv %s: %w", BucketClaims, err)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: BucketClaims, Description: "kanade: the last snapshot period a node claimed",
		History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, BucketClaims)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: create kv %s: %w", BucketClaims, err)
	}
	return kv, nil
}

// ErrNotReady is returned when the projection is not worth a snapshot
// (catching up, or with a history gap not accepted).
var ErrNotReady = errors.New("snapshot: the projection is not current or has a history gap not accepted")

// noneSince reports whether the bucket holds no snapshot newer than d.
func (s *Snapshotter) noneSince(ctx context.Context, d time.Duration) bool {
	list, err := List(ctx, s.obj)
	if err != nil {
		return false
	}
	return len(list) == 0 || time.Since(list[0].CreatedAt) > d
}

// Take makes a snapshot now and prunes the bucket to the last Keep.
func (s *Snapshotter) Take(ctx context.Context) (Info, error) {
	if !ready(s.o.Projection) {
		return Info{}, ErrNotReady
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	info, err := Write(ctx, s.o.DB, s.obj, s.o.NodeName, s.o.Signer)
	if err != nil {
		return Info{}, err
	}
	info.TookSecs = time.Since(start).Seconds()
	s.log.Info("snapshot taken", "name", info.Name, "db_bytes", info.DBBytes, "bytes", info.Bytes,
		"results", info.Results, "offsets", info.Offsets, "took", time.Since(start).Round(time.Millisecond))
	if err := Prune(ctx, s.obj, s.o.Keep); err != nil {
		s.log.Warn("snapshot: prune old snapshots", "err", err)
	}
	return info, nil
}

// Write copies db into a temporary file next to it, reads the copy's
// offsets and row count, streams it zstd-compressed into obj and, with a
// signer, signs it (see signedContent).
func Write(ctx context.Context, db *store.DB, obj jetstream.ObjectStore, node string, signer *signing.Signer) (Info, error) {
	now := time.Now().UTC()
	tmp := filepath.Join(filepath.Dir(db.Path), fmt.Sprintf(".kanade.db.snapshot-%d", now.UnixNano()))
	defer os.Remove(tmp)
	if err := db.SnapshotInto(ctx, tmp); err != nil {
		return Info{}, err
	}
	info := Info{Name: now.Format("20060102T150405.000000000Z") + "-" + node, Node: node, CreatedAt: now}
	if err := readCopy(ctx, tmp, &info); err != nil {
		return Info{}, err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	offs, _ := json.Marshal(info.Offsets)
	meta := jetstream.ObjectMeta{
		Name:        info.Name,
		Description: "kanade projection snapshot of node " + node,
		Metadata: map[string]string{
			metaNode: node, metaCreated: now.Format(time.RFC3339Nano), metaOffsets: string(offs),
			metaSchema: strconv.Itoa(info.Schema), metaDBBytes: strconv.FormatInt(info.DBBytes, 10),
			metaResults: strconv.FormatInt(info.Results, 10), metaEncoding: "zstd",
		},
	}
	pr, pw := io.Pipe()
	go func() {
		enc, err := zstd.NewWriter(pw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := io.Copy(enc, f); err != nil {
			enc.Close()
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(enc.Close())
	}()
	oi, err := obj.Put(ctx, meta, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends the encoder if Put stopped early
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: put %s: %w", info.Name, err)
	}
	info.Bytes = oi.Size
	if signer != nil {
		h, err := sign(obj, oi, signer)
		if err != nil {
			return Info{}, fmt.Errorf("snapshot: sign %s: %w", info.Name, err)
		}
		meta.Headers = h
		if err := obj.UpdateMeta(ctx, info.Name, meta); err != nil {
			obj.Delete(ctx, info.Name)
			return Info{}, fmt.Errorf("snapshot: sign %s: %w", info.Name, err)
		}
		info.SignedBy = signer.Kid()
	}
	return info, nil
}

// readCopy reads what the snapshot file holds: its offsets, schema
// version and result count, all from the one copy.
func readCopy(ctx context.Context, path string, info *Info) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	info.DBBytes = st.Size()
	c, err := sql.Open("sqlite", roURI(path))
	if err != nil {
		return fmt.Errorf("snapshot: open copy: %w", err)
	}
	defer c.Close()
	info.Offsets = map[string]uint64{}
	rows, err := c.QueryContext(ctx, `SELECT stream, last_seq FROM projector_offsets`)
	if err != nil {
		return fmt.Errorf("snapshot: read offsets: %w", err)
	}
	for rows.Next() {
		var name string
		var seq uint64
		if err := rows.Scan(&name, &seq); err != nil {
			rows.Close()
			return fmt.Errorf("snapshot: read offsets: %w", err)
		}
		info.Offsets[name] = seq
	}
	rows.Close()
	if err := c.QueryRowContext(ctx, `SELECT COALESCE(max(version), 0), (SELECT count(*) FROM execution_results) FROM schema_migrations`).
		Scan(&info.Schema, &info.Results); err != nil {
		return fmt.Errorf("snapshot: read copy: %w", err)
	}
	return nil
}

// List returns the snapshots in the bucket, newest first.
func List(ctx context.Context, obj jetstream.ObjectStore) ([]Info, error) {
	objs, err := obj.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return []Info{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: list: %w", err)
	}
	out := make([]Info, 0, len(objs))
	for _, oi := range objs {
		if oi.Deleted {
			continue
		}
		out = append(out, infoOf(oi))
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	return out, nil
}

func infoOf(oi *jetstream.ObjectInfo) Info {
	m := oi.Metadata
	in := Info{Name: oi.Name, Node: m[metaNode], Bytes: oi.Size, Offsets: map[string]uint64{}, oi: oi}
	if oi.Headers != nil {
		in.SignedBy = oi.Headers.Get(signing.HeaderKid)
	}
	in.CreatedAt, _ = time.Parse(time.RFC3339Nano, m[metaCreated])
	if in.CreatedAt.IsZero() {
		in.CreatedAt = oi.ModTime
	}
	json.Unmarshal([]byte(m[metaOffsets]), &in.Offsets)
	in.Schema, _ = strconv.Atoi(m[metaSchema])
	in.DBBytes, _ = strconv.ParseInt(m[metaDBBytes], 10, 64)
	in.Results, _ = strconv.ParseInt(m[metaResults], 10, 64)
	return in
}

// Prune deletes all but the newest keep snapshots.
func Prune(ctx context.Context, obj jetstream.ObjectStore, keep int) error {
	list, err := List(ctx, obj)
	if err != nil {
		return err
	}
	var errs []error
	for i := keep; i < len(list); i++ {
		if err := obj.Delete(ctx, list[i].Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// claimState is the value of the claims key.
type claimState struct {
	Period    int64     `json:"period"`
	Node      string    `json:"node"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// periodic takes a snapshot in each period (Interval since the epoch) that
// this node claims first. A node that is not ready does not claim, so a
// ready one takes the period.
func (s *Snapshotter) periodic(ctx context.Context) {
	every := min(max(s.o.Interval/20, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !ready(s.o.Projection) {
			continue
		}
		if p := s.o.Projection; p != nil && p.HasGaps() && !s.noneSince(ctx, 2*s.o.Interval) {
			continue
		}
		period := time.Now().UnixNano() / int64(s.o.Interval)
		won, err := s.claim(ctx, period)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("snapshot: claim", "err", err)
			}
			continue
		}
		if !won {
			continue
		}
		if _, err := s.Take(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("snapshot: periodic snapshot", "err", err)
		}
	}
}

// claim moves the claims key to period if it is behind; true if this node
// moved it.
func (s *Snapshotter) claim(ctx context.Context, period int64) (bool, error) {
	val, err := json.Marshal(claimState{Period: period, Node: s.o.NodeName, ClaimedAt: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	en, err := s.claims.Get(ctx, claimKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err := s.claims.Create(ctx, claimKey, val)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return err == nil, err
	case err != nil:
		return false, err
	}
	var st claimState
	if json.Unmarshal(en.Value(), &st) == nil && st.Period >= period {
		return false, nil
	}
	if _, err := s.claims.Update(ctx, claimKey, val, en.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, nil // another node claimed it first
		}
		return false, err
	}
	return true, nil
}
