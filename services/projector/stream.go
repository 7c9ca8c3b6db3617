package projector

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stream is one projected stream: a fetcher that pulls and decodes batches
// and an applier that commits them in order. The fetcher owns the batches
// channel and closes it when it stops; the applier drains it, so the batch
// in hand at Stop still commits.
type stream struct {
	p       *Projector
	name    string
	filter  string
	durable string
	kind    kind
	log     *slog.Logger

	cons    jetstream.Consumer
	nextDel uint64 // consumer delivery sequence expected next (fetcher only)
	// retry is the result whose output object is being waited for
	// (fetcher only); retrying mirrors it for the status.
	retry    *ObjectRetry
	retrying atomic.Pointer[ObjectRetry]

	applied   atomic.Uint64 // last applied stream sequence (as stored)
	appliedAt atomic.Int64  // publish time of the last applied message, unix ns
	pending   atomic.Uint64 // messages not yet delivered, as of the last delivery
	delivered atomic.Uint64 // stream sequence of the newest message fetched
	drained   atomic.Bool   // the last fetch found nothing new
	currentAt atomic.Int64  // last time everything was applied and nothing waited, unix ns
	count     atomic.Uint64 // messages applied by this process
	rejects   atomic.Uint64 // rows in rejects for this stream
	rate      rateMeter
	startedAt time.Time
	lastLog   time.Time
	caughtUp  bool
}

// batch is a run of decoded messages in delivery order. done, if set, is
// closed once the batch has committed and been acked.
type batch struct {
	items []item
	done  chan struct{}
}

// load reads the stream's stored offset and its reject count.
func (s *stream) load(ctx context.Context) error {
	var seq uint64
	err := s.p.db.W.QueryRowContext(ctx, `SELECT last_seq FROM projector_offsets WHERE stream = ?`, s.name).Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("projector: read offset of %s: %w", s.name, err)
	}
	s.applied.Store(seq)
	var n uint64
	if err := s.p.db.W.QueryRowContext(ctx, `SELECT count(*) FROM rejects WHERE stream = ?`, s.name).Scan(&n); err != nil {
		return fmt.Errorf("projector: count rejects of %s: %w", s.name, err)
	}
	s.rejects.Store(n)
	s.startedAt = time.Now()
	return nil
}

func (s *stream) consumerConfig(startSeq uint64) jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		Durable:       s.durable,
		Description:   "kanade projector of " + s.name + " on node " + s.p.o.NodeName,
		FilterSubject: s.filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Minute,
		MaxAckPending: 4 * s.p.o.Batch,
		// A node gone for a week leaves no consumer behind; when it comes
		// back its offset in SQLite puts a new one in place.
		InactiveThreshold: 7 * 24 * time.Hour,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
	if startSeq > 1 {
		c.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.OptStartSeq = startSeq
	}
	return c
}

// position puts the durable consumer right after the stored offset. An
// existing consumer is kept only if the last message it delivered is the
// last one applied: otherwise messages it delivered but SQLite never saw
// (a crash before commit) would come back only after the ack wait,
// behind newer ones, or the database was replaced (a rebuild).
func (s *stream) position(ctx context.Context) error {
	off := s.applied.Load()
	str, err := s.p.js.Stream(ctx, s.name)
	if err != nil {
		return fmt.Errorf("projector: look up stream %s: %w", s.name, err)
	}
	if last := str.CachedInfo().State.LastSeq; off > last {
		// The stream was deleted and made again: its sequences restarted
		// below the offset, and skipping them would lose everything in
		// it. Replay it whole: rows are idempotent and counters move only
		// when a row changes, so what was projected before is harmless.
		s.log.Warn("projector: stream is behind the stored offset (was it recreated?); replaying it",
			"offset", off, "stream_last_seq", last)
		off = 0
		s.applied.Store(off)
	}
	c, err := s.p.js.Consumer(ctx, s.name, s.durable)
	switch {
	case err == nil:
		info := c.CachedInfo()
		if info.Delivered.Stream == off && info.Config.FilterSubject == s.filter && info.Config.AckPolicy == jetstream.AckExplicitPolicy {
			s.cons = c
			s.nextDel = info.Delivered.Consumer + 1
			s.log.Info("projector consumer resumed", "consumer", s.durable, "offset", off)
			return nil
		}
		s.log.Info("projector consumer repositioned", "consumer", s.durable, "offset", off,
			"consumer_delivered", info.Delivered.Stream)
		if err := s.p.js.DeleteConsumer(ctx, s.name, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("projector: delete consumer %s: %w", s.durable, err)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	default:
		return fmt.Errorf("projector: look up consumer %s: %w", s.durable, err)
	}
	if err := s.createConsumer(ctx, off); err != nil {
		return err
	}
	s.log.Info("projector consumer created", "consumer", s.durable, "from_seq", off+1)
	return nil
}

// positionRetrying is position, tried again for a while: a node that
// restarts into a cluster finds its stream replicas catching up and the
// JetStream API slow or leaderless for some seconds, and one timed-out
// look-up must not stop the node.
func (s *stream) positionRetrying(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for attempt := 1; ; attempt++ {
		err := s.position(ctx)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		s.log.Warn("projector: positioning the consumer failed; retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

// createConsumer makes the durable consumer deliver from right after off.
func (s *stream) createConsumer(ctx context.Context, off uint64) error {
	c, err := s.p.js.CreateConsumer(ctx, s.name, s.consumerConfig(off+1))
	if err != nil {
		return fmt.Errorf("projector: create consumer %s: %w", s.durable, err)
	}
	s.cons, s.nextDel = c, 1
	return nil
}

func (s *stream) start(ctx context.Context, wg *sync.WaitGroup) {
	batches := make(chan batch, 1)
	wg.Add(2)
	go func() { defer wg.Done(); s.fetchLoop(ctx, batches) }()
	go func() { defer wg.Done(); s.applyLoop(ctx, batches) }()
}

// fetchLoop pulls batches until ctx ends, then closes batches.
func (s *stream) fetchLoop(ctx context.Context, batches chan<- batch) {
	defer close(batches)
	backoff := time.Second
	for ctx.Err() == nil {
		msgs, err := s.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("projector fetch failed", "err", err)
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				if !s.reset(ctx, batches, nil, 0) {
					return
				}
			}
			if !sleep(ctx, backoff) {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		// A delivery the client never received (a dropped connection)
		// would come back after the ack wait, behind newer messages that
		// by then moved the offset past it. The consumer's delivery
		// sequence shows such a hole: keep what came before it and
		// restart the consumer from the offset.
		gap := -1
		for i, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				gap = i
				break
			}
			if md.Sequence.Consumer != s.nextDel {
				gap = i
				break
			}
			s.nextDel++
		}
		if gap >= 0 {
			s.log.Warn("projector delivery gap; restarting consumer at offset", "expected_delivery", s.nextDel)
			msgs = msgs[:gap]
		}
		items, again := s.decode(ctx, msgs)
		if ctx.Err() != nil {
			return
		}
		if again != nil || gap >= 0 {
			// A message is delivered again by putting the consumer back
			// at the offset once what came before it committed, not by a
			// NAK: a NAK'd message comes back behind newer ones, which by
			// then moved the offset past it (and the batch's order is the
			// projection's). The stream waits for it meanwhile.
			var wait time.Duration
			if again != nil {
				s.setRetry(again)
				wait = s.p.objectBackoff(again.Attempts)
				s.log.Warn("projector: output object not read; the result is delivered again",
					"seq", again.Seq, "attempt", again.Attempts, "of", s.p.o.ObjectAttempts, "in", wait, "reason", again.Reason)
			}
			if !s.reset(ctx, batches, items, wait) {
				return
			}
			continue
		}
		select {
		case batches <- batch{items: items}:
		case <-ctx.Done():
			return
		}
	}
}

// reset hands the items before a fault to the applier, waits until they
// commit, waits wait more, then recreates the consumer after the stored
// offset: the messages delivered after those items come again.
func (s *stream) reset(ctx context.Context, batches chan<- batch, before []item, wait time.Duration) bool {
	done := make(chan struct{})
	select {
	case batches <- batch{items: before, done: done}:
	case <-ctx.Done():
		return false
	}
	select {
	case <-done:
	case <-ctx.Done():
		return false
	}
	if wait > 0 && !sleep(ctx, wait) {
		return false
	}
	for ctx.Err() == nil {
		if err := s.p.js.DeleteConsumer(ctx, s.name, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			s.log.Warn("projector: delete consumer", "err", err)
		}
		err := s.createConsumer(ctx, s.applied.Load())
		if err == nil {
			return true
		}
		s.log.Warn("projector: recreate consumer", "err", err)
		if !sleep(ctx, 2*time.Second) {
			return false
		}
	}
	return false
}

// fetch returns the messages available now, or waits a while for the
// first one when there are none.
func (s *stream) fetch(ctx context.Context) ([]jetstream.Msg, error) {
	n := s.p.o.Batch
	msgs, err := collect(s.cons.FetchNoWait(n))
	if len(msgs) > 0 {
		s.drained.Store(false)
	}
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	s.drained.Store(true)
	s.markCurrent()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msgs, err = collect(s.cons.Fetch(1, jetstream.FetchContext(wctx)))
	if err != nil || len(msgs) == 0 {
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
		return msgs, err
	}
	s.markCurrent() // current until this message arrived
	s.drained.Store(false)
	more, err := collect(s.cons.FetchNoWait(n - 1))
	return append(msgs, more...), err
}

// markCurrent records now as a time the stream was current, if it is:
// the last fetch found nothing new and everything delivered is applied.
func (s *stream) markCurrent() {
	if s.drained.Load() && s.applied.Load() >= s.delivered.Load() {
		s.currentAt.Store(time.Now().UnixNano())
	}
}

func collect(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return out, err
	}
	return out, nil
}

// applyLoop commits batches in order until the fetcher closes the channel.
// A batch that keeps failing is retried (the messages stay unacked) until
// Stop, when it is dropped: the restarted consumer delivers it again.
func (s *stream) applyLoop(ctx context.Context, batches <-chan batch) {
	for b := range batches {
		backoff := 200 * time.Millisecond
		for {
			err := s.apply(b.items)
			if err == nil {
				break
			}
			s.log.Error("projector apply failed; retrying the batch", "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		if b.done != nil {
			close(b.done)
		}
	}
}

// setRetry records the result waited for (nil: none).
func (s *stream) setRetry(r *ObjectRetry) {
	s.retry = r
	s.retrying.Store(r)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
