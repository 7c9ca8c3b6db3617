package audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// ListParams are GET /api/audit's filters: upstream's limit, actor (exact),
// action, target and payload (unanchored regexes), since (RFC3339), and a
// cursor: before, the id of the last row of the previous page.
type ListParams struct {
	Limit   int    `json:"limit"`
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Target  string `json:"target"`
	Payload string `json:"payload"`
	Since   string `json:"since"`
	Before  int64  `json:"before"`
}

// Row is one record in the list.
type Row struct {
	ID         int64           `json:"id"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Target     *string         `json:"target"`
	Payload    json.RawMessage `json:"payload"`
	OccurredAt *string         `json:"occurred_at"`
	Addr       *string         `json:"addr"`
	Error      *string         `json:"error,omitempty"`
}

// DefaultLimit is a page when no limit is asked.
const DefaultLimit = 50

// List pages through audit_log, newest first. A page stops short of limit
// when more rows would not fit one reply (budget bytes); the next page
// starts before its last id. An empty page is the end.
func List(ctx context.Context, db *store.DB, p ListParams, budget int) ([]Row, error) {
	if p.Limit < 0 {
		return nil, api.BadRequest("limit must not be negative")
	}
	if p.Limit == 0 {
		p.Limit = DefaultLimit
	}
	where := []string{"1=1"}
	var args []any
	if p.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, p.Actor)
	}
	for _, f := range []struct{ col, pat string }{{"action", p.Action}, {"target", p.Target}, {"payload", p.Payload}} {
		pat := strings.TrimSpace(f.pat)
		if pat == "" {
			continue
		}
		if _, err := store.CompileRegexp(pat); err != nil {
			return nil, api.BadRequest("invalid regex `%s`: %v", pat, err)
		}
		where, args = append(where, "COALESCE("+f.col+", '') REGEXP ?"), append(args, pat)
	}
	if p.Since != "" {
		t, err := time.Parse(time.RFC3339Nano, p.Since)
		if err != nil {
			return nil, api.BadRequest("since: want an RFC3339 time, not %q", p.Since)
		}
		where, args = append(where, "occurred_at >= ?"), append(args, store.FormatTime(t))
	}
	if p.Before > 0 {
		where, args = append(where, "id < ?"), append(args, p.Before)
	}
	q := `SELECT id, actor, action, target, payload, occurred_at, addr, error FROM audit_log WHERE ` +
		strings.Join(where, " AND ") + ` ORDER BY id DESC LIMIT ?`
	rows, err := db.R.QueryContext(ctx, q, append(args, p.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	out := []Row{}
	size := 2
	for rows.Next() {
		var r Row
		var payload, target, addr, errText *string
		var at sql.NullString
		if err := rows.Scan(&r.ID, &r.Actor, &r.Action, &target, &payload, &at, &addr, &errText); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		r.Target, r.Addr, r.Error, r.OccurredAt = target, addr, errText, store.APITime(at)
		if payload != nil && json.Valid([]byte(*payload)) {
			r.Payload = json.RawMessage(*payload)
		} else {
			r.Payload = json.RawMessage("null")
		}
		b, _ := json.Marshal(r)
		if size += len(b) + 1; size > budget && len(out) > 0 {
			break
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Problem is one break of the chain.
type Problem struct {
	Seq     uint64 `json:"seq"`
	Problem string `json:"problem"`
}

// Verification is GET /api/audit/verify.
type Verification struct {
	OK       bool      `json:"ok"`
	Records  int       `json:"records"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Note     string    `json:"note,omitempty"`
	Problems []Problem `json:"problems"`
}

const maxProblems = 100

// Verify reads the whole stream and checks every link: each record must
// name the hash of the record just before it, with no sequence missing. The
// first record the stream still holds is the anchor when older ones aged
// out (max age 90 days).
func Verify(ctx context.Context, s jetstream.Stream) (Verification, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return Verification{}, fmt.Errorf("audit verify: %w", err)
	}
	v := Verification{OK: true, FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Problems: []Problem{}}
	add := func(seq uint64, format string, args ...any) {
		v.OK = false
		if len(v.Problems) < maxProblems {
			v.Problems = append(v.Problems, Problem{Seq: seq, Problem: fmt.Sprintf(format, args...)})
		}
	}
	if info.State.Msgs == 0 {
		return v, nil
	}
	if v.FirstSeq > 1 {
		v.Note = fmt.Sprintf("records before %d aged out or were removed from the stream; the chain is checked from there", v.FirstSeq)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return Verification{}, fmt.Errorf("audit verify: %w", err)
	}
	var prevSeq uint64
	prevHash := ""
	for prevSeq < info.State.LastSeq {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return Verification{}, fmt.Errorf("audit verify: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return Verification{}, err
			}
			seq := md.Sequence.Stream
			var r Record
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				add(seq, "not an audit record: %v", err)
			} else if prevSeq == 0 {
				if seq == 1 && r.Prev != "" {
					add(seq, "the first record names a predecessor (%s)", short(r.Prev))
				}
			} else {
				if seq != prevSeq+1 {
					add(seq, "records %d..%d are missing from the stream", prevSeq+1, seq-1)
				}
				if r.Prev != prevHash {
					add(seq, "does not link to record %d: names %s, that record hashes to %s", prevSeq, short(r.Prev), short(prevHash))
				}
			}
			prevSeq, prevHash = seq, Hash(m.Data())
			v.Records++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return Verification{}, fmt.Errorf("audit verify: %w", err)
		}
		if n == 0 {
			break // the tail was removed meanwhile
		}
	}
	if prevSeq < info.State.LastSeq {
		add(prevSeq+1, "records %d..%d are missing from the stream", prevSeq+1, info.State.LastSeq)
	}
	return v, nil
}

func short(h string) string {
	if h == "" {
		return `""`
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
