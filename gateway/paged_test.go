package gateway

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/agents"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/scheduler"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// smallPayload keeps paging tests fast: a page holds a few hundred rows.
const smallPayload = 64 << 10

type pagedItem struct {
	ID  string `json:"id"`
	Pad string `json:"pad"`
}

// pagedService answers kanade.test.list from items (sorted by id) a page
// at a time; fail, when set, answers that error for every page but the
// first.
func pagedService(t *testing.T, nc *nats.Conn, items []pagedItem, fail error) {
	t.Helper()
	startService(t, nc, api.Service{Name: "test", Endpoints: []api.Endpoint{{
		Name: "list", Subject: "kanade.test.list", HTTP: "GET /api/test", Tier: api.TierViewer, Paged: true,
		Handler: func(_ context.Context, r api.Request) (any, error) {
			var p struct {
				After string `json:"after"`
			}
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			if p.After != "" && fail != nil {
				return nil, fail
			}
			i, _ := slices.BinarySearchFunc(items, p.After, func(it pagedItem, id string) int {
				if it.ID <= id {
					return -1
				}
				return 1
			})
			hdr := map[string]string{"X-Total-Count": fmt.Sprint(len(items))}
			return api.FitPage(items[i:], false, r.PageBudget(), func(it pagedItem) string { return it.ID }, hdr)
		},
	}}})
}

func makeItems(n int) []pagedItem {
	out := make([]pagedItem, n)
	for i := range out {
		out[i] = pagedItem{ID: fmt.Sprintf("item-%06d", i), Pad: strings.Repeat("x", 100+i%50)}
	}
	return out
}

func getJSON(t *testing.T, url string, v any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v (%d bytes)", url, err, len(body))
	}
	return resp
}

// A paged list far over max_payload reaches an HTTP client as upstream's
// one array, whole and in order; a NATS caller pages with the cursor,
// every reply within max_payload.
func TestPagedRouteStreamsWholeArray(t *testing.T) {
	n := nodetest.Start(t, nodetest.MaxPayload(smallPayload))
	nc := n.Conn(t)
	items := makeItems(5000) // ~0.9 MB: fourteen times max_payload
	pagedService(t, nc, items, nil)
	g := startGateway(t, n, Options{})
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}

	var got []pagedItem
	resp := getJSON(t, g.URL()+"/api/test", &got)
	if !slices.Equal(got, items) {
		t.Fatalf("HTTP array: %d items, want all %d in order", len(got), len(items))
	}
	if resp.Header.Get("X-Total-Count") != "5000" || resp.Header.Get(api.HeaderNext) != "" {
		t.Errorf("headers: total %q, next %q", resp.Header.Get("X-Total-Count"), resp.Header.Get(api.HeaderNext))
	}

	// A client's own after is one page, and its cursor comes along.
	var one []pagedItem
	resp = getJSON(t, g.URL()+"/api/test?after=item-000100", &one)
	if len(one) == 0 || one[0].ID != "item-000101" || resp.Header.Get(api.HeaderNext) != one[len(one)-1].ID {
		t.Errorf("?after: %d items, next %q", len(one), resp.Header.Get(api.HeaderNext))
	}

	var paged []pagedItem
	after, pages := "", 0
	for {
		req, _ := json.Marshal(map[string]string{api.ParamAfter: after})
		m, err := nc.Request("kanade.test.list", req, 5*time.Second)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if size := len(m.Data); size > smallPayload {
			t.Fatalf("page %d: %d bytes, over max_payload", pages, size)
		}
		var page []pagedItem
		if err := json.Unmarshal(m.Data, &page); err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		paged, pages = append(paged, page...), pages+1
		if after = m.Header.Get(api.HeaderNext); after == "" {
			break
		}
	}
	if !slices.Equal(paged, items) || pages < 10 {
		t.Fatalf("NATS pages: %d items in %d pages, want %d in order over many pages", len(paged), pages, len(items))
	}
}

// A page that fails after the first has been sent cuts the response: the
// client reads an error, never a closed array that looks whole.
func TestPagedRouteCutMidStream(t *testing.T) {
	n := nodetest.Start(t, nodetest.MaxPayload(smallPayload))
	nc := n.Conn(t)
	pagedService(t, nc, makeItems(2000), api.Errorf(http.StatusInternalServerError, "disk on fire"))
	lg := newLogs()
	g := startGateway(t, n, Options{Logger: slog.New(lg)})
	if err := g.RefreshRoutes(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(g.URL() + "/api/test")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: the first page was fine", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("body read whole (%d bytes), want the connection cut", len(body))
	}
	var v []pagedItem
	if json.Unmarshal(body, &v) == nil {
		t.Fatalf("the cut body is a valid array of %d items", len(v))
	}
	lg.wait(t, 5*time.Second, func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["msg"]), "paged list cut short") })
}

// GET /api/agents and GET /api/schedules, the real services behind the
// gateway, answer their whole lists past max_payload; with a limit the
// agents list is one page, as upstream.
func TestAgentsAndSchedulesPagedOverHTTP(t *testing.T) {
	n := nodetest.Start(t, nodetest.MaxPayload(smallPayload))
	nc := n.Conn(t)
	ctx := context.Background()
	const fleet = 3000
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := n.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		for i := range fleet {
			at := store.FormatTime(base.Add(time.Duration(i%700) * time.Second)) // ties: pc_id breaks them
			if _, err := tx.Exec(`INSERT INTO agents (pc_id, hostname, agent_version, last_heartbeat, updated_at) VALUES (?,?,?,?,?)`,
				fmt.Sprintf("PC%05d", i), fmt.Sprintf("host-%05d.example.internal", i), "1.2.3", at, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := agents.Start(ctx, agents.Options{Conn: nc, DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Stop() })
	kv, err := n.JetStream(t).KeyValue(ctx, wire.BucketSchedules)
	if err != nil {
		t.Fatal(err)
	}
	const scheds = 400
	var wantSched []string
	for i := range scheds {
		id := fmt.Sprintf("sched-%04d", (i*7919)%scheds) // stored out of order
		doc, _ := json.Marshal(map[string]any{"id": id, "job_id": "nojob", "cron": "0 3 * * *", "note": strings.Repeat("n", 300)})
		if _, err := kv.Put(ctx, id, doc); err != nil {
			t.Fatal(err)
		}
		wantSched = append(wantSched, id)
	}
	slices.Sort(wantSched)
	sc, err := scheduler.Start(ctx, scheduler.Options{Conn: nc, DB: n.DB, NodeName: "t", Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Stop() })
	g := startGateway(t, n, Options{})
	if err := g.RefreshRoutes(ctx); err != nil {
		t.Fatal(err)
	}

	// Upstream's order (with a limit): updated_at descending, then pc_id.
	var want []string
	for i := range fleet {
		want = append(want, fmt.Sprintf("PC%05d", i))
	}
	slices.SortStableFunc(want, func(a, b string) int {
		var x, y int
		fmt.Sscanf(a, "PC%d", &x)
		fmt.Sscanf(b, "PC%d", &y)
		return y%700 - x%700
	})
	for _, q := range []struct{ query, why string }{{"", "default sort"}, {"?sort=hostname&dir=desc", "hostname desc"}} {
		var rows []agents.Row
		resp := getJSON(t, g.URL()+"/api/agents"+q.query, &rows)
		var got []string
		for _, r := range rows {
			got = append(got, r.PCID)
		}
		w := slices.Sorted(slices.Values(want)) // the whole list: pc_id by default
		if q.query != "" {
			w = slices.Clone(want)
			slices.Sort(w)
			slices.Reverse(w)
		}
		if !slices.Equal(got, w) {
			t.Fatalf("%s: %d agents, want all %d in order", q.why, len(got), len(w))
		}
		if tc := resp.Header.Get("X-Total-Count"); tc != fmt.Sprint(fleet) {
			t.Errorf("%s: X-Total-Count %q", q.why, tc)
		}
	}
	var page []agents.Row
	resp := getJSON(t, g.URL()+"/api/agents?limit=10&offset=5", &page)
	if len(page) != 10 || page[0].PCID != want[5] || resp.Header.Get("X-Total-Count") != fmt.Sprint(fleet) {
		t.Errorf("limit=10&offset=5: %d rows, first %v, total %q", len(page), page, resp.Header.Get("X-Total-Count"))
	}

	var list []struct {
		ID string `json:"id"`
	}
	getJSON(t, g.URL()+"/api/schedules", &list)
	var gotSched []string
	for _, s := range list {
		gotSched = append(gotSched, s.ID)
	}
	if !slices.Equal(gotSched, wantSched) {
		t.Fatalf("schedules: %d, want all %d by id", len(gotSched), len(wantSched))
	}
}
