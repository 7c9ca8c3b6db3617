// Package projector turns the agents' JetStream streams into the SQLite
// projection, exactly once, and serves kanade.projector.status.
//
// JetStream is the source of truth. Each stream (RESULTS, EVENTS and the
// backend's EXECUTIONS) is read through a durable pull consumer named after
// the node, in batches; a batch is applied in one SQLite transaction that
// also records the stream's last applied sequence in projector_offsets, and
// the messages are acked only after that commit. Anything at or below the
// stored sequence is skipped, so a crash anywhere loses nothing and applies
// nothing twice. SQLite, not the consumer, is the truth of the position: on
// start the consumer is recreated at the stored offset + 1 whenever the two
// disagree, which is also how an empty kanade.db rebuilds itself.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Defaults of Options.
const (
	DefaultBatch        = 1000
	DefaultMaxPayload   = 16 << 20
	DefaultReapInterval = 3 * time.Minute
	// rejectPrefix bounds the payload kept for a rejected message.
	rejectPrefix = 4 << 10
)

// Options configure the projector.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	NodeName string
	Logger   *slog.Logger

	// Retention deletes results (and executions, rejects and silent
	// agents) older than this; 0 keeps everything.
	Retention time.Duration
	// Batch is the most messages applied in one transaction (default 1000).
	Batch int
	// MaxPayload rejects larger messages (default 16 MiB).
	MaxPayload int
	// ReapInterval is how often in-flight rows past their deadline are
	// finished and retention runs (default 3 min).
	ReapInterval time.Duration
	// RebuildMin is the backlog of RESULTS into an empty projection from
	// which the secondary indexes are dropped during the replay and built
	// once at the end (default DefaultRebuildMin; negative never).
	RebuildMin int
	// AcceptGaps accepts the history gaps found (recorded, and found during
	// this run): the read services may join although the projection lacks
	// what the streams lost before it applied them (see Gap).
	AcceptGaps bool
	// PlainOutputs stores stdout and stderr as plain text; by default they
	// are stored zstd-compressed (store.EncodeOutput), and plain outputs of
	// an existing database are compressed in the background.
	PlainOutputs bool
	// ObjectDeadline bounds one attempt at reading an output object
	// (default DefaultObjectDeadline).
	ObjectDeadline time.Duration
	// ObjectAttempts is how many deliveries of a result may try its output
	// object when the read fails for a reason that may pass (a timeout, an
	// object not there yet, a NATS error); the last one stores the result
	// with a note (default DefaultObjectAttempts; 1 notes at once). A bad
	// or vanished object is a note at the first.
	ObjectAttempts int
	// ObjectBackoff is the wait before the second attempt; it doubles for
	// each further one, up to 30 s (default DefaultObjectBackoff). The
	// stream waits for the result meanwhile.
	ObjectBackoff time.Duration
	// NoService skips the micro service (tests, benchmarks).
	NoService bool
}

// Projector is a running projector.
type Projector struct {
	o       Options
	log     *slog.Logger
	js      jetstream.JetStream
	db      *store.DB
	streams []*stream
	known   *knownValues
	hb      *heartbeats
	svc     *api.Running
	rebuild rebuildState
	gaps    gapState
	// compression is where compressing an existing database's outputs
	// stands (nil with PlainOutputs, or before the job has looked).
	compression atomic.Pointer[store.CompressProgress]

	outputsMu sync.Mutex
	outputs   jetstream.ObjectStore // see outputStore
	outputStr jetstream.Stream      // see outputStream

	rowsResults    atomic.Int64
	rowsExecutions atomic.Int64
	rowsAgents     atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start loads the stored offsets, positions the consumers and starts
// consuming. It returns once every consumer is in place.
func Start(ctx context.Context, o Options) (*Projector, error) {
	if o.Conn == nil || o.DB == nil {
		return nil, errors.New("projector: a NATS connection and a store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NodeName == "" {
		o.NodeName = "kanade"
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.RebuildMin == 0 {
		o.RebuildMin = DefaultRebuildMin
	}
	if o.ObjectDeadline <= 0 {
		o.ObjectDeadline = DefaultObjectDeadline
	}
	if o.ObjectAttempts <= 0 {
		o.ObjectAttempts = DefaultObjectAttempts
	}
	if o.ObjectBackoff <= 0 {
		o.ObjectBackoff = DefaultObjectBackoff
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = DefaultReapInterval
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("projector: jetstream: %w", err)
	}
	p := &Projector{o: o, log: o.Logger, js: js, db: o.DB, known: newKnownValues()}
	specs := []struct {
		name, filter, suffix string
		kind                 kind
	}{
		{wire.StreamResults, wire.SubjectResultsAll, "results", kindResult},
		{wire.StreamEvents, wire.SubjectStartedAll, "events", kindStarted},
		{streams.StreamExecutions, streams.SubjectExecutions, "executions", kindExecution},
	}
	if err := p.loadCounts(ctx); err != nil {
		return nil, err
	}
	if err := p.loadGaps(ctx); err != nil {
		return nil, err
	}
	for _, sp := range specs {
		s := &stream{
			p: p, name: sp.name, filter: sp.filter, kind: sp.kind,
			durable: "projector_" + o.NodeName + "_" + sp.suffix,
			log:     p.log.With("stream", sp.name),
		}
		if err := s.load(ctx); err != nil {
			return nil, err
		}
		if err := s.positionRetrying(ctx); err != nil {
			return nil, err
		}
		p.streams = append(p.streams, s)
	}
	if err := p.prepareRebuild(ctx); err != nil {
		return nil, err
	}
	p.hb = newHeartbeats(p)
	if err := p.hb.subscribe(); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, s := range p.streams {
		s.start(runCtx, &p.wg)
	}
	p.wg.Add(4)
	go func() { defer p.wg.Done(); p.compressOutputs(runCtx) }()
	go func() { defer p.wg.Done(); p.hb.run(runCtx) }()
	go func() { defer p.wg.Done(); p.finishRebuild(runCtx) }()
	go func() { defer p.wg.Done(); p.maintain(runCtx) }()

	if !o.NoService {
		svc, err := p.startService()
		if err != nil {
			p.Stop()
			return nil, err
		}
		p.svc = svc
	}
	return p, nil
}

// Stop stops consuming and waits for the batch in hand to commit; the
// heartbeats buffered so far are flushed.
func (p *Projector) Stop() error {
	if p == nil {
		return nil
	}
	var err error
	if p.svc != nil {
		err = p.svc.Stop()
	}
	if p.hb != nil {
		p.hb.unsubscribe()
	}
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	return err
}

// compressOutputs compresses the plain outputs of an existing database in
// the background, while the projection is current (see
// store.CompressOutputs); with PlainOutputs it forgets the job instead.
func (p *Projector) compressOutputs(ctx context.Context) {
	if p.o.PlainOutputs {
		if err := p.db.ForgetCompressOutputs(ctx); err != nil {
			p.log.Warn("projector: reset the output compression job", "err", err)
		}
		return
	}
	ready := func() bool { return p.CaughtUp(time.Minute) }
	progress := func(cp store.CompressProgress) { p.compression.Store(&cp) }
	if err := p.db.CompressOutputs(ctx, 500, ready, p.log, progress); err != nil && ctx.Err() == nil {
		p.log.Error("projector: compress existing outputs", "err", err)
	}
}
