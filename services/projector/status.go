package projector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-go/kanade/store"
)

// Status is what kanade.projector.status answers: per stream, how far the
// projection is, so an operator can see whether it is current.
type Status struct {
	Node     string `json:"node"`
	CaughtUp bool   `json:"caught_up"`
	// Rebuilding is true while a rebuild from empty runs without the
	// secondary indexes (they are created once every stream is current).
	Rebuilding bool           `json:"rebuilding"`
	Streams    []StreamStatus `json:"streams"`
	// HistoryGaps are stretches of RESULTS or EXECUTIONS that left the
	// stream before this projection applied them; JoinBlocked says why the
	// node's read services stay out of their queue groups (a gap no
	// operator accepted), "" when they may join.
	HistoryGaps []Gap  `json:"history_gaps"`
	JoinBlocked string `json:"join_blocked,omitempty"`
	// OutputsCompression is where compressing the plain outputs of an
	// existing database stands; absent with plain outputs.
	OutputsCompression *store.CompressProgress `json:"outputs_compression,omitempty"`
	Rows               RowCounts               `json:"rows"`
	// Heartbeats counts heartbeat messages since start; invalid ones
	// (not JSON, no pc_id) are dropped, as they are in no stream.
	Heartbeats struct {
		Received uint64 `json:"received"`
		Invalid  uint64 `json:"invalid"`
		// Mismatched: pc_id not the subject's heartbeat.{pc_id}; dropped.
		Mismatched uint64 `json:"mismatched"`
	} `json:"heartbeats"`
}

// StreamStatus is one projected stream.
type StreamStatus struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// LastApplied is the stream sequence stored in projector_offsets.
	LastApplied uint64 `json:"last_applied_seq"`
	// StreamLastSeq is the stream's newest sequence (all subjects).
	StreamLastSeq uint64 `json:"stream_last_seq"`
	// Lag counts messages of the consumer's filter not yet applied.
	Lag uint64 `json:"lag"`
	// BehindSecs is how old the last applied message was when more were
	// waiting; 0 when current.
	BehindSecs float64 `json:"behind_secs"`
	// Applied counts messages applied by this process since it started.
	Applied uint64 `json:"applied"`
	// Rows is the number of rows in the table this stream projects into.
	Rows    int64   `json:"rows"`
	Rejects uint64  `json:"rejects"`
	Rate    float64 `json:"rate_per_sec"` // over the last 10 s
	// ObjectRetry is the result the stream waits for, when its output
	// object was not read yet and it is delivered again (see
	// Options.ObjectAttempts).
	ObjectRetry *ObjectRetry `json:"object_retry,omitempty"`
}

// RowCounts are the projection's tables.
type RowCounts struct {
	Results    int64 `json:"execution_results"`
	Executions int64 `json:"executions"`
	Agents     int64 `json:"agents"`
	Rejects    int64 `json:"rejects"`
}

// Status reports the projection's position in each stream. It asks the
// server for each stream's last sequence and each consumer's pending count.
func (p *Projector) Status(ctx context.Context) (Status, error) {
	st := Status{Node: p.o.NodeName, CaughtUp: !p.rebuild.active(), Rebuilding: p.rebuild.active(),
		HistoryGaps: p.Gaps(), JoinBlocked: p.JoinBlocked()}
	if st.HistoryGaps == nil {
		st.HistoryGaps = []Gap{}
	}
	st.OutputsCompression = p.compression.Load()
	var rejects int64
	for _, s := range p.streams {
		ss := StreamStatus{
			Stream: s.name, Consumer: s.durable, LastApplied: s.applied.Load(),
			Applied: s.count.Load(), Rejects: s.rejects.Load(), Rate: s.rate.perSec(time.Now()),
			ObjectRetry: s.retrying.Load(),
		}
		str, err := p.js.Stream(ctx, s.name)
		if err != nil {
			return Status{}, fmt.Errorf("projector status: stream %s: %w", s.name, err)
		}
		ss.StreamLastSeq = str.CachedInfo().State.LastSeq
		if ci, err := p.js.Consumer(ctx, s.name, s.durable); err == nil {
			info := ci.CachedInfo()
			ss.Lag = info.NumPending
			// Delivered but not committed yet.
			if d := info.Delivered.Stream; d > ss.LastApplied {
				ss.Lag += uint64(info.NumAckPending)
			}
		} else {
			ss.Lag, _, _ = s.lag()
		}
		_, behind, _ := s.lag()
		ss.BehindSecs = behind.Seconds()
		if s.kind == kindExecution {
			ss.Rows = p.rowsExecutions.Load()
		} else {
			ss.Rows = p.rowsResults.Load()
		}
		rejects += int64(ss.Rejects)
		if ss.Lag > 0 {
			st.CaughtUp = false
		}
		st.Streams = append(st.Streams, ss)
	}
	st.Heartbeats.Received, st.Heartbeats.Invalid = p.hb.received.Load(), p.hb.invalid.Load()
	st.Heartbeats.Mismatched = p.hb.mismatched.Load()
	st.Rows = RowCounts{
		Results: p.rowsResults.Load(), Executions: p.rowsExecutions.Load(),
		Agents: p.rowsAgents.Load(), Rejects: rejects,
	}
	return st, nil
}

// lag is the stream's distance from current without asking the server:
// messages not yet delivered as of the last delivery, plus one if some are
// delivered and not yet committed; and for how long it has been behind:
// since it was last current or since the publish time of the last message
// applied, whichever is later. known is false until the first fetch has
// told anything (just started): then the distance is unknown.
func (s *stream) lag() (msgs uint64, behind time.Duration, known bool) {
	applied, delivered := s.applied.Load(), s.delivered.Load()
	msgs = s.pending.Load()
	if delivered > applied {
		msgs++
	}
	if msgs == 0 && s.drained.Load() {
		return 0, 0, true
	}
	since := max(s.currentAt.Load(), s.appliedAt.Load())
	if since == 0 {
		return max(msgs, 1), time.Since(s.startedAt), false
	}
	return max(msgs, 1), time.Since(time.Unix(0, since)), true
}

// Lag is the largest distance of any stream from its head: messages not
// yet applied, and for how long the projection has been behind. It asks
// nothing of the server, so it is cheap enough to call per request.
func (p *Projector) Lag() (msgs uint64, behind time.Duration) {
	for _, s := range p.streams {
		m, b, _ := s.lag()
		msgs = max(msgs, m)
		behind = max(behind, b)
	}
	return msgs, behind
}

// CaughtUp reports whether every stream is current, or has been behind
// for no more than max. Right after start, before the first fetch has
// answered, it is false; and while a rebuild's indexes are missing.
func (p *Projector) CaughtUp(max time.Duration) bool {
	if p.rebuild.active() {
		return false
	}
	for _, s := range p.streams {
		m, b, known := s.lag()
		if !known || (m > 0 && b > max) {
			return false
		}
	}
	return true
}

// progress logs, while a stream catches up (a rebuild), how far it is and
// how fast it goes, every few seconds; and once when it is current.
func (s *stream) progress() {
	now := time.Now()
	pending := s.pending.Load()
	if pending == 0 {
		if !s.caughtUp {
			s.caughtUp = true
			n := s.count.Load()
			if n > 0 {
				took := now.Sub(s.startedAt)
				s.log.Info("projector caught up", "applied", n, "seq", s.applied.Load(),
					"took", took.Round(time.Millisecond), "rate_per_sec", int(float64(n)/max(took.Seconds(), 0.001)))
			}
		}
		return
	}
	if s.caughtUp && pending < uint64(s.p.o.Batch) {
		return // ordinary traffic
	}
	s.caughtUp = false
	if now.Sub(s.lastLog) < 5*time.Second {
		return
	}
	s.lastLog = now
	// Percent of the stream, by sequence: exact for RESULTS (one subject
	// space), close enough for the filtered EVENTS.
	seq := s.applied.Load()
	took := now.Sub(s.startedAt).Seconds()
	s.log.Info("projector catching up", "seq", seq, "pending", pending,
		"percent", fmt.Sprintf("%.1f", 100*float64(seq)/float64(seq+pending)),
		"rate_per_sec", int(float64(s.count.Load())/max(took, 0.001)))
}

// rateMeter counts events per second over the last ten seconds.
type rateMeter struct {
	mu      sync.Mutex
	buckets [10]int
	secs    [10]int64
}

func (r *rateMeter) add(now time.Time, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sec := now.Unix()
	i := sec % int64(len(r.buckets))
	if r.secs[i] != sec {
		r.secs[i], r.buckets[i] = sec, 0
	}
	r.buckets[i] += n
}

func (r *rateMeter) perSec(now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	sec := now.Unix()
	total := 0
	for i, s := range r.secs {
		if s > sec-int64(len(r.buckets)) && s <= sec {
			total += r.buckets[i]
		}
	}
	return float64(total) / float64(len(r.buckets))
}

// loadCounts reads the table sizes once; they are kept current in memory.
func (p *Projector) loadCounts(ctx context.Context) error {
	for _, c := range []struct {
		q string
		n interface{ Store(int64) }
	}{
		{`SELECT count(*) FROM execution_results`, &p.rowsResults},
		{`SELECT count(*) FROM executions`, &p.rowsExecutions},
		{`SELECT count(*) FROM agents`, &p.rowsAgents},
	} {
		var n int64
		if err := p.db.R.QueryRowContext(ctx, c.q).Scan(&n); err != nil {
			return fmt.Errorf("projector: count rows: %w", err)
		}
		c.n.Store(n)
	}
	return nil
}
