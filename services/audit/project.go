package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/store"
)

// Retention is how long audit_log keeps a row (upstream's 365 days; the
// stream itself keeps 90).
const Retention = 365 * 24 * time.Hour

// projection copies AUDIT into audit_log: an ordered consumer from the
// row after the last one projected, so it needs no durable state of its
// own and a rebuilt store replays what the stream still holds.
type projection struct {
	stream jetstream.Stream
	db     *store.DB
	log    *slog.Logger
	now    func() time.Time
}

func (p *projection) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.retain(ctx)
	}()
	for ctx.Err() == nil {
		if err := p.follow(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("audit projection: restarting", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

func (p *projection) follow(ctx context.Context) error {
	var last uint64
	if err := p.db.R.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM audit_log`).Scan(&last); err != nil {
		return fmt.Errorf("read audit_log position: %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if last > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last + 1}
	}
	cons, err := p.stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("audit consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("audit consumer: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for ctx.Err() == nil {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := p.apply(ctx, []jetstream.Msg{m}); err != nil {
			return err
		}
	}
	return nil
}

// apply inserts a batch; a message that is not a record is still a row
// (its action "?"), so the trail's gaps show only where the stream has them.
func (p *projection) apply(ctx context.Context, msgs []jetstream.Msg) error {
	err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_log (id, actor, action, target, addr, payload, error, occurred_at, prev, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			var r Record
			if json.Unmarshal(m.Data(), &r) != nil || r.Action == "" {
				r = Record{Actor: "?", Action: "?", OccurredAt: md.Timestamp, Payload: json.RawMessage("null")}
			}
			if r.OccurredAt.IsZero() {
				r.OccurredAt = md.Timestamp
			}
			var target, payload, addr, errText any
			if r.Target != nil {
				target = *r.Target
			}
			if len(r.Payload) > 0 {
				payload = string(r.Payload)
			}
			if r.Addr != "" {
				addr = r.Addr
			}
			if r.Error != "" {
				errText = r.Error
			}
			if _, err := stmt.ExecContext(ctx, md.Sequence.Stream, r.Actor, r.Action, target, addr, payload, errText,
				store.FormatTime(r.OccurredAt), r.Prev, Hash(m.Data())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("project audit: %w", err)
	}
	return nil
}

// retain cleans now and every hour.
func (p *projection) retain(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := p.clean(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("audit retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clean drops rows past Retention.
func (p *projection) clean(ctx context.Context) error {
	_, err := p.db.W.ExecContext(ctx, `DELETE FROM audit_log WHERE occurred_at < ?`, store.FormatTime(p.now().Add(-Retention)))
	return err
}
