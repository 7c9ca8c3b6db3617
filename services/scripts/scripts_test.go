package scripts_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/scripts"
	"github.com/kanade-go/kanade/wire"
)

func call(t *testing.T, nc *nats.Conn, subject, body string) (string, string) {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(micro.ErrorCodeHeader), string(m.Data)
}

// Revoke and unrevoke write the raw bytes agents compare with; the status
// lists every key; a bad id is a 400, and without the bucket status is {}
// and a revoke 503, as upstream.
func TestRevokeWritesWhatAgentsRead(t *testing.T) {
	n := nodetest.Start(t)
	nc := n.Conn(t)
	svcs, err := scripts.Start(nc, n.Logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range svcs {
			s.Stop()
		}
	})
	js := n.JetStream(t)
	kv, err := js.KeyValue(context.Background(), wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(id string) string {
		e, err := kv.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return string(e.Value())
	}

	if code, body := call(t, nc, "kanade.scripts.revoke", `{"cmd_id":"backup"}`); code != "" || body != "" {
		t.Fatalf("revoke: %s %q", code, body)
	}
	if raw("backup") != "REVOKED" {
		t.Fatalf("script_status[backup] = %q", raw("backup"))
	}
	call(t, nc, "kanade.scripts.revoke", `{"cmd_id":"inventory"}`)
	call(t, nc, "kanade.scripts.unrevoke", `{"cmd_id":"inventory"}`)
	if raw("inventory") != "ACTIVE" {
		t.Fatalf("script_status[inventory] = %q after unrevoke, want ACTIVE (a put)", raw("inventory"))
	}
	_, body := call(t, nc, "kanade.scripts.status", "")
	var st map[string]string
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st) != 2 || st["backup"] != "REVOKED" || st["inventory"] != "ACTIVE" {
		t.Fatalf("status %s (%v)", body, err)
	}
	if code, _ := call(t, nc, "kanade.scripts.revoke", `{"cmd_id":"a b"}`); code != "400" {
		t.Fatalf("revoke of a bad id: %q", code)
	}

	// A node whose bucket is gone.
	n2 := nodetest.Start(t)
	nc2 := n2.Conn(t)
	if err := n2.JetStream(t).DeleteKeyValue(context.Background(), wire.BucketScriptStatus); err != nil {
		t.Fatal(err)
	}
	svcs2, err := scripts.Start(nc2, n2.Logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range svcs2 {
			s.Stop()
		}
	})
	if code, body := call(t, nc2, "kanade.scripts.status", ""); code != "" || body != "{}" {
		t.Fatalf("status without the bucket: %s %q", code, body)
	}
	if code, _ := call(t, nc2, "kanade.scripts.revoke", `{"cmd_id":"backup"}`); code != "503" {
		t.Fatalf("revoke without the bucket: %q", code)
	}
	if _, body := call(t, nc2, "kanade.schemas.manifest", ""); !json.Valid([]byte(body)) {
		t.Fatal("manifest schema is not JSON")
	}
}
