package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// pageAll pages kanade.agents.list without a limit, following the
// cursor; between, when set, runs after the first page.
func pageAll(t *testing.T, e *env, params map[string]any, between func()) ([]string, int) {
	t.Helper()
	var out []string
	pages := 0
	for {
		b, _ := json.Marshal(params)
		m, err := e.nc.Request("kanade.agents.list", b, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Fatalf("page %d: %s %s", pages, code, m.Data)
		}
		if int64(len(m.Data)) > e.nc.MaxPayload() {
			t.Fatalf("page %d: %d bytes over max_payload", pages, len(m.Data))
		}
		out = append(out, pcs(t, string(m.Data))...)
		pages++
		next := m.Header.Get(api.HeaderNext)
		if next == "" {
			return out, pages
		}
		params[api.ParamAfter] = next
		if pages == 1 && between != nil {
			between()
		}
	}
}

// Without a limit the list comes in pages that fit max_payload, in the
// order of every sort (NULLs and PCs without the metadata key included),
// each row once, and rows written between pages do not shift the rest.
func TestListPagesWithCursor(t *testing.T) {
	n := nodetest.Start(t, nodetest.MaxPayload(64<<10))
	nc := n.Conn(t)
	s, err := Start(context.Background(), Options{Conn: nc, DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	kv, err := n.JetStream(t).KeyValue(context.Background(), "agent_meta")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{n: n, nc: nc, kv: kv, s: s}
	now := time.Now().UTC()
	const fleet = 1500
	var recs []agentRec
	for i := range fleet {
		r := agentRec{pc: fmt.Sprintf("PC%05d", i), ver: "1.0." + fmt.Sprint(i%9), beat: now.Add(-time.Duration(i%300) * time.Millisecond)}
		if i%3 == 0 {
			r.beat = r.beat.Add(-time.Hour) // offline, far from the 2-minute line
		}
		if i%5 != 0 {
			r.host = fmt.Sprintf("host-%03d.a-rather-long-domain.example.internal", i%400) // ties and NULLs
		}
		recs = append(recs, r)
	}
	insertAgents(t, n.DB, recs...)
	for i := 0; i < fleet; i += 7 {
		v := fmt.Sprintf(`{"entries":[{"key":"site","value":"Site-%02d"}]}`, i%13)
		if _, err := kv.Put(context.Background(), fmt.Sprintf("PC%05d", i), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "metadata mirrored", func() bool { return len(s.Meta.Values("site")) == (fleet+6)/7 })

	for _, q := range []map[string]any{
		{}, {"sort": "hostname"}, {"sort": "hostname", "dir": "desc"}, {"sort": "meta:site", "dir": "desc"},
		{"sort": "agent_version", "status": "online"}, {"sort": "meta:site", "q": "host-1"},
	} {
		// The whole list in one call of the plain Go function is the truth.
		var p ListParams
		b, _ := json.Marshal(q)
		json.Unmarshal(b, &p)
		all := int64(fleet)
		p.Limit = &all
		if p.Sort == "" {
			p.Sort = "pc_id" // the whole list's default (with a limit: upstream's updated_at)
		}
		want, err := List(context.Background(), n.DB, s.Meta, p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		for _, r := range want.Rows {
			wantIDs = append(wantIDs, r.PCID)
		}
		got, pages := pageAll(t, e, q, nil)
		if !slices.Equal(got, wantIDs) {
			t.Fatalf("%v: %d rows in %d pages, want %d in order", q, len(got), pages, len(wantIDs))
		}
		if len(wantIDs) > 500 && pages < 3 {
			t.Errorf("%v: %d pages: the test does not reach paging", q, pages)
		}
	}

	// Rows inserted before the cursor, once the first page is out, neither
	// repeat nor push rows out of the later pages (offsets would).
	got, _ := pageAll(t, e, map[string]any{"sort": "pc_id"}, func() {
		var early []agentRec
		for i := range 200 {
			early = append(early, agentRec{pc: fmt.Sprintf("AA%04d", i), beat: now})
		}
		insertAgents(t, n.DB, early...)
	})
	onceEach(t, "after concurrent inserts", got, recs)

	// The default whole list while every agent heartbeats between pages
	// (each moves its updated_at, upstream's default order): each agent
	// exactly once.
	got, _ = pageAll(t, e, map[string]any{}, func() {
		if err := n.DB.WriteTx(context.Background(), func(tx *sql.Tx) error {
			_, err := tx.Exec(`UPDATE agents SET updated_at = ?, last_heartbeat = ?`, store.FormatTime(time.Now()), store.FormatTime(time.Now()))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})
	onceEach(t, "the default order under heartbeats", got, recs)

	if code, body, _ := e.call(t, "kanade.agents.list", `{"after":"bogus"}`); code != "400" {
		t.Errorf("bad cursor: %s %s", code, body)
	}
}

// onceEach fails unless got lists no pc_id twice and every one of recs.
func onceEach(t *testing.T, when string, got []string, recs []agentRec) {
	t.Helper()
	seen := map[string]bool{}
	for _, pc := range got {
		if seen[pc] {
			t.Fatalf("%s: %s listed twice", when, pc)
		}
		seen[pc] = true
	}
	for _, r := range recs {
		if !seen[r.pc] {
			t.Fatalf("%s: %s missing", when, r.pc)
		}
	}
}
