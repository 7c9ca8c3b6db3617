package projector

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-go/kanade/store"
)

// Gap is a stretch of a stream that was gone (expired or purged) before
// this projection applied it: the projection lacks whatever those messages
// held. Only the streams read whole (RESULTS, EXECUTIONS) are checked:
// their sequences are consecutive for the projector, so a jump is a loss.
// EVENTS is read through a filter, where jumps are normal.
type Gap struct {
	Stream     string  `json:"stream"`
	FromSeq    uint64  `json:"from_seq"`
	ToSeq      uint64  `json:"to_seq"`
	DetectedAt string  `json:"detected_at"`
	AcceptedAt *string `json:"accepted_at,omitempty"`
}

// gapState is the gaps recorded in projector_gaps, kept in memory.
type gapState struct {
	mu   sync.Mutex
	list []Gap
}

const sqlGap = `INSERT OR IGNORE INTO projector_gaps (stream, from_seq, to_seq, detected_at, accepted_at)
	VALUES (?,?,?,?,?)`

// loadGaps reads the recorded gaps; with accept, every gap not yet
// accepted is accepted now (the operator's --accept-history-gap).
func (p *Projector) loadGaps(ctx context.Context) error {
	if p.o.AcceptGaps {
		now := store.FormatTime(time.Now())
		err := p.db.WriteTx(ctx, func(tx *sql.Tx) error {
			r, err := tx.ExecContext(ctx, `UPDATE projector_gaps SET accepted_at = ? WHERE accepted_at IS NULL`, now)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n > 0 {
				p.log.Warn("projector: history gaps accepted by the operator (--accept-history-gap); the projection lacks what they held", "gaps", n)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("projector: accept gaps: %w", err)
		}
	}
	rows, err := p.db.W.QueryContext(ctx, `SELECT stream, from_seq, to_seq, detected_at, accepted_at
		FROM projector_gaps ORDER BY detected_at, stream, from_seq`)
	if err != nil {
		return fmt.Errorf("projector: read gaps: %w", err)
	}
	defer rows.Close()
	var list []Gap
	for rows.Next() {
		var g Gap
		var acc sql.NullString
		if err := rows.Scan(&g.Stream, &g.FromSeq, &g.ToSeq, &g.DetectedAt, &acc); err != nil {
			return fmt.Errorf("projector: read gaps: %w", err)
		}
		if acc.Valid {
			g.AcceptedAt = &acc.String
		}
		list = append(list, g)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("projector: read gaps: %w", err)
	}
	p.gaps.mu.Lock()
	p.gaps.list = list
	p.gaps.mu.Unlock()
	for _, g := range list {
		if g.AcceptedAt == nil {
			p.log.Warn("projector: history gap not accepted: this node stays out of the read queue groups until an operator starts it with --accept-history-gap",
				"stream", g.Stream, "from_seq", g.FromSeq, "to_seq", g.ToSeq)
		}
	}
	return nil
}

// Gaps lists the history gaps of this projection, accepted or not.
func (p *Projector) Gaps() []Gap {
	p.gaps.mu.Lock()
	defer p.gaps.mu.Unlock()
	return append([]Gap(nil), p.gaps.list...)
}

// JoinBlocked says why this node's read services must stay out of their
// queue groups: a history gap no operator accepted. "" when none.
func (p *Projector) JoinBlocked() string {
	p.gaps.mu.Lock()
	defer p.gaps.mu.Unlock()
	for _, g := range p.gaps.list {
		if g.AcceptedAt == nil {
			return fmt.Sprintf("history gap in %s (sequences %d-%d lost before this projection applied them; accept with --accept-history-gap)",
				g.Stream, g.FromSeq, g.ToSeq)
		}
	}
	return ""
}

// HasGaps reports whether the projection lacks any stretch of a stream,
// accepted or not (its snapshots would lack it too).
func (p *Projector) HasGaps() bool {
	p.gaps.mu.Lock()
	defer p.gaps.mu.Unlock()
	return len(p.gaps.list) > 0
}

// gapCheck is what applyTx needs to notice a hole in a stream read whole.
type gapCheck struct {
	whole  bool      // the consumer reads every subject of the stream
	cutoff time.Time // messages published before this would be pruned anyway
	accept bool      // record new gaps as accepted
	// plainOutputs is Options.PlainOutputs (carried here, with the rest
	// of what a batch's transaction needs to know of the options).
	plainOutputs bool
}

// checkGap records a hole between prev and it.seq (both stream sequences,
// prev applied) in projector_gaps within the batch's transaction. A hole
// whose next message is older than the retention cutoff lost only what
// retention would delete: it is no gap.
func checkGap(st *stmts, stream string, gc gapCheck, prev uint64, it *item, res *txResult) error {
	if !gc.whole || it.seq <= prev+1 {
		return nil
	}
	if !gc.cutoff.IsZero() && it.published.Before(gc.cutoff) {
		return nil
	}
	now := store.FormatTime(time.Now())
	g := Gap{Stream: stream, FromSeq: prev + 1, ToSeq: it.seq - 1, DetectedAt: now}
	var acc any
	if gc.accept {
		acc, g.AcceptedAt = now, &now
	}
	if _, err := st.exec(sqlGap, stream, int64(g.FromSeq), int64(g.ToSeq), now, acc); err != nil {
		return fmt.Errorf("store gap: %w", err)
	}
	res.gaps = append(res.gaps, g)
	return nil
}

// addGaps records gaps a committed batch found.
func (p *Projector) addGaps(gaps []Gap) {
	if len(gaps) == 0 {
		return
	}
	p.gaps.mu.Lock()
	p.gaps.list = append(p.gaps.list, gaps...)
	p.gaps.mu.Unlock()
	for _, g := range gaps {
		if g.AcceptedAt != nil {
			p.log.Warn("projector: history lost (accepted by --accept-history-gap): these messages left the stream before this projection applied them",
				"stream", g.Stream, "from_seq", g.FromSeq, "to_seq", g.ToSeq)
			continue
		}
		p.log.Error("projector: history lost: these messages left the stream before this projection applied them; "+
			"the node stays out of the read queue groups until an operator accepts the gap (--accept-history-gap) or restores a snapshot",
			"stream", g.Stream, "from_seq", g.FromSeq, "to_seq", g.ToSeq)
	}
}
