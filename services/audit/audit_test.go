package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/api"
)

// Two recorders (two nodes) writing at once still make one chain.
func TestChainUnderConcurrentWriters(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	var recs []*Recorder
	for range 2 {
		r, err := NewRecorder(ctx, n.Conn(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- recs[i%2].Record(ctx, api.Entry{Actor: "alice", Action: "job_upsert", Target: fmt.Sprint("job ", i), Payload: json.RawMessage(`{"n":1}`)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, _ := n.JetStream(t).Stream(ctx, Stream)
	v, err := Verify(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Records != 40 {
		t.Fatalf("verify: %+v", v)
	}
	// A message published around the recorder breaks the chain, and the
	// recorder links its next record to it.
	if _, err := n.JetStream(t).Publish(ctx, "audit.mallory.exec", []byte(`{"actor":"mallory","action":"exec","prev":"00"}`)); err != nil {
		t.Fatal(err)
	}
	if err := recs[0].Record(ctx, api.Entry{Actor: "alice", Action: "exec"}); err != nil {
		t.Fatal(err)
	}
	v, _ = Verify(ctx, s)
	if v.OK || len(v.Problems) != 1 || v.Problems[0].Seq != 41 {
		t.Fatalf("verify after a forged record: %+v", v)
	}
}

// The projection fills audit_log and the list filters and pages it.
func TestProjectionAndList(t *testing.T) {
	n := nodetest.Start(t)
	ctx := context.Background()
	db := nodetest.OpenStore(t, filepath.Join(t.TempDir(), "k.db"))
	svc, err := Start(ctx, Options{Conn: n.Conn(t), DB: db, Logger: nodetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	rec, err := NewRecorder(ctx, n.Conn(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range []string{"exec", "job_upsert", "exec", "account.create"} {
		if err := rec.Record(ctx, api.Entry{Actor: "bob", Action: a, Target: fmt.Sprint("t", i), Addr: "10.0.0.1", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	var rows []Row
	for deadline := time.Now().Add(10 * time.Second); len(rows) < 4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		rows, err = List(ctx, db, ListParams{Limit: 10}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(rows) != 4 || rows[0].ID != 4 || rows[0].Action != "account.create" {
		t.Fatalf("rows: %+v", rows)
	}
	got, _ := List(ctx, db, ListParams{Action: "^exec$", Limit: 10}, 1<<20)
	if len(got) != 2 || *got[0].Target != "t2" {
		t.Fatalf("action filter: %+v", got)
	}
	got, _ = List(ctx, db, ListParams{Limit: 10, Before: 3, Payload: `"i":[01]`}, 1<<20)
	if len(got) != 2 || got[0].ID != 2 {
		t.Fatalf("cursor + payload filter: %+v", got)
	}
	// A page that would not fit one reply stops short; the cursor goes on.
	got, _ = List(ctx, db, ListParams{Limit: 10}, 300)
	if len(got) == 0 || len(got) >= 4 {
		t.Fatalf("budget: %d rows", len(got))
	}
	var ae *api.Error
	if _, err := List(ctx, db, ListParams{Target: "("}, 1<<20); !errors.As(err, &ae) || !strings.HasPrefix(ae.Message, "invalid regex `(`") {
		t.Fatalf("bad regex: %v", err)
	}
}

func TestSubject(t *testing.T) {
	if s := Subject("nats:ops", "account.create", "a b.c*"); s != "audit.nats:ops.account.create.a_b_c_" {
		t.Fatal(s)
	}
	if s := Subject("", "exec", ""); s != "audit._.exec" {
		t.Fatal(s)
	}
}

// BenchmarkRecord is one writer's records per second (each waits for its
// ack: the mutation it guards waits as long).
func BenchmarkRecord(b *testing.B) {
	n := nodetest.Start(b)
	r, err := NewRecorder(context.Background(), n.Conn(b), 1)
	if err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"job_id":"inventory","target":{"all":true}}`)
	b.ResetTimer()
	for range b.N {
		if err := r.Record(context.Background(), api.Entry{Actor: "alice", Action: "exec", Target: "inventory", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify reads and checks a chain of 20,000 records.
func BenchmarkVerify(b *testing.B) {
	n := nodetest.Start(b)
	ctx := context.Background()
	r, err := NewRecorder(ctx, n.Conn(b), 1)
	if err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"job_id":"inventory","target":{"all":true},"sub":"alice"}`)
	for range 20000 {
		if err := r.Record(ctx, api.Entry{Actor: "alice", Action: "exec", Target: "inventory", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	s, _ := n.JetStream(b).Stream(ctx, Stream)
	b.ResetTimer()
	for range b.N {
		v, err := Verify(ctx, s)
		if err != nil || !v.OK || v.Records != 20000 {
			b.Fatalf("%+v %v", v, err)
		}
	}
}
