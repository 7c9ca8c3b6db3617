package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// seedLargeOutput publishes, as an agent does, a result whose 8 MiB
// stdout went to the result_output object store: the object first, then
// the ExecResult naming it. It returns the result's id and pc_id.
func seedLargeOutput(t *testing.T, natsURL string) (resultID, pcID string) {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("web-e2e-output"))
	if err != nil {
		t.Fatalf("connect %s: %v", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obs, err := js.ObjectStore(ctx, wire.ObjectStoreOutput)
	if err != nil {
		t.Fatalf("object store: %v", err)
	}
	reqID := uuid.NewString()
	resultID, pcID = uuid.NewString(), "e2e-big-pc"
	key := wire.OutputObjectKey(reqID, "stdout")
	out := []byte(largeOutput())
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, bytes.NewReader(out)); err != nil {
		t.Fatalf("put object: %v", err)
	}
	now := time.Now().UTC()
	b, _ := json.Marshal(wire.ExecResult{ResultID: resultID, RequestID: reqID, PCID: pcID, ExitCode: 0,
		StdoutObject: &key, Stderr: "done\n", StartedAt: now.Add(-time.Second), FinishedAt: now})
	if _, err := js.Publish(ctx, wire.Results(reqID), b); err != nil {
		t.Fatalf("publish result: %v", err)
	}
	return resultID, pcID
}

// largeOutput is the seeded stdout: 262,144 numbered lines of 32 bytes,
// exactly 8 MiB, the first and the last told apart.
func largeOutput() string {
	var b strings.Builder
	b.Grow(8 << 20)
	for i := range 8 << 20 / 32 {
		b.WriteString("kanade ö 日本語 row ")
		n := []byte("0000000\n")
		for j, v := 6, i; j >= 0; j, v = j-1, v/10 {
			n[j] = byte('0' + v%10)
		}
		b.Write(n)
	}
	return b.String()
}
