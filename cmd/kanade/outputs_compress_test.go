package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A database projected with plain outputs, reopened by a node that
// compresses them: the background job converts every output, and every
// results query answers byte for byte as before.
func TestPlainDatabaseCompressedInPlace(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--node-name", "zst", "--nats-sync", "interval", "--snapshot-interval", "off", "--retention", "off"}
	p := startKanade(t, dir, append(args, "--compress-outputs=false")...)
	nc, js := connectJS(t, p.NATS)
	var feed fleetFeed
	feed.publish(t, js, 0, 3000)
	waitProjected(t, nc, "zst", 3000, 300)
	queries := []string{
		"limit=1000",
		"limit=1000&stdout=" + url.QueryEscape("wuauserv: running"),
		"limit=1000&stdout=" + url.QueryEscape("(?i)CHECKING DISK"),
		"limit=1000&stdout=" + url.QueryEscape(`result 2[0-9]{3}$`),
		"limit=1000&stdout=" + url.QueryEscape(`^Checking`) + "&pc_id=" + url.QueryEscape("^PC000"),
		"limit=200&status=failure",
	}
	answers := func() []string {
		var out []string
		for _, q := range queries {
			code, body := get(t, p.HTTP+"/api/results?"+q)
			if code != http.StatusOK {
				t.Fatalf("GET /api/results?%s: %d %s", q, code, body)
			}
			out = append(out, body)
		}
		for _, id := range []string{"res-000000", "res-001234", "res-002999"} {
			code, body := get(t, p.HTTP+"/api/results/"+id)
			if code != http.StatusOK {
				t.Fatalf("GET /api/results/%s: %d %s", id, code, body)
			}
			out = append(out, body)
		}
		return out
	}
	before := answers()
	p.stop(t)
	if n := countStored(t, dir, "blob"); n != 0 {
		t.Fatalf("%d compressed outputs with --compress-outputs=false", n)
	}

	p = startKanade(t, dir, args...)
	nc, _ = connectJS(t, p.NATS)
	waitUntil(t, "the outputs compressed", 60*time.Second, func() (bool, string) {
		ns, _ := nodeStatus(t, nc, "zst")
		if ns.Projector == nil || ns.Projector.OutputsCompression == nil {
			return false, "no outputs_compression in the status"
		}
		c := ns.Projector.OutputsCompression
		return c.Done && c.Rows == 3000 && c.Saved > 0, fmt.Sprintf("%+v", *c)
	})
	if !strings.Contains(p.Stderr(), "store: outputs compressed") {
		t.Fatalf("no log line for the compression:\n%s", p.Stderr())
	}
	after := answers()
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("query %d answers differently once compressed:\nbefore %.300s\nafter  %.300s", i, before[i], after[i])
		}
	}
	p.stop(t)
	if n := countStored(t, dir, "blob"); n != 3000 {
		t.Fatalf("%d outputs compressed, want all 3000", n)
	}
}

// countStored counts stdout values stored as typ ("blob": compressed).
func countStored(t *testing.T, dir, typ string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kanade.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM execution_results WHERE typeof(stdout) = ?`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
