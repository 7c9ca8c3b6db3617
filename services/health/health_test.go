package health_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/health"
	"github.com/kanade-go/kanade/services/projector"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// fleetReply asks kanade.health.fleet and returns its code (200 when not
// an error) and the rollup, which a 503 carries too.
func fleetReply(t *testing.T, nc *nats.Conn) (string, health.Fleet) {
	t.Helper()
	m, err := nc.Request(health.SubjectFleet, []byte("{}"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code := m.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		code = "200"
	}
	var f health.Fleet
	if err := json.Unmarshal(m.Data, &f); err != nil {
		t.Fatalf("%s reply %q: %v", code, m.Data, err)
	}
	return code, f
}

func waitFleet(t *testing.T, nc *nats.Conn, what string, ok func(code string, f health.Fleet) bool) health.Fleet {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, f := fleetReply(t, nc)
		if ok(code, f) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last %s %+v", what, code, f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The rollup with sim agents: unknown with none, ok while they beat,
// degraded (503, same body) once most of them stop, and degraded when a
// bucket the agents read is gone.
func TestFleetHealthTurnsDegradedWhenMostAgentsStop(t *testing.T) {
	n := nodetest.Start(t)
	p, err := projector.Start(context.Background(), projector.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger, NoService: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	h, err := health.Start(health.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger, Alive: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	nc := n.Conn(t)

	code, f := fleetReply(t, nc)
	if code != "200" || f.Status != health.StatusUnknown || !f.JetStream.AllOK || f.JetStream.Total != len(health.FleetResources) {
		t.Fatalf("before any agent: %s %+v", code, f)
	}

	stay, err := sim.Start(context.Background(), sim.Options{Conn: n.Conn(t), Agents: 1, Prefix: "stay-", Heartbeat: 200 * time.Millisecond, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stay.Stop)
	leave, err := sim.Start(context.Background(), sim.Options{Conn: n.Conn(t), Agents: 3, Prefix: "leave-", Heartbeat: 200 * time.Millisecond, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	waitFleet(t, nc, "4 active agents, ok", func(code string, f health.Fleet) bool {
		return code == "200" && f.Status == health.StatusOK && f.Agents.Known == 4 && f.Agents.Active == 4
	})

	leave.Stop()
	f = waitFleet(t, nc, "degraded with 1 of 4 active", func(code string, f health.Fleet) bool {
		return code == "503" && f.Status == health.StatusDegraded && f.Agents.Known == 4 && f.Agents.Active == 1
	})
	if f.Agents.Stale != 3 || !f.JetStream.AllOK {
		t.Fatalf("degraded rollup %+v", f)
	}

	// A missing bucket degrades whatever the agents do.
	js := n.JetStream(t)
	if err := js.DeleteKeyValue(context.Background(), wire.BucketScriptStatus); err != nil {
		t.Fatal(err)
	}
	_, f = fleetReply(t, nc)
	if f.Status != health.StatusDegraded || f.JetStream.AllOK || !slices.Equal(f.JetStream.Missing, []string{wire.BucketScriptStatus}) {
		t.Fatalf("after deleting %s: %+v", wire.BucketScriptStatus, f.JetStream)
	}
}

// jetstream/status lists upstream's resources in order, with numbers for
// those that exist and none for the others.
func TestJetStreamStatus(t *testing.T) {
	n := nodetest.Start(t)
	h, err := health.Start(health.Options{Conn: n.Conn(t), DB: n.DB, Logger: n.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	js := n.JetStream(t)
	if _, err := js.Publish(context.Background(), "results.r1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	m, err := n.Conn(t).Request(health.SubjectJetStream, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st health.JetStreamStatus
	var raw map[string][]map[string]any
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(m.Data, &raw)
	names := func(ps []health.Probe) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	if !slices.Equal(names(st.Streams), health.AllStreams) || !slices.Equal(names(st.KVBuckets), health.AllKVBuckets) ||
		!slices.Equal(names(st.ObjectStores), health.AllObjectStores) {
		t.Fatalf("names %v %v %v", names(st.Streams), names(st.KVBuckets), names(st.ObjectStores))
	}
	for _, p := range st.Streams {
		switch p.Name {
		case wire.StreamResults:
			if !p.Exists || p.Messages == nil || *p.Messages != 1 || p.Bytes == nil || p.MaxBytes == nil || *p.MaxBytes != 2<<30 {
				t.Fatalf("RESULTS probe %+v", p)
			}
		case "INVENTORY":
			if p.Exists {
				t.Fatalf("INVENTORY exists: %+v", p)
			}
		}
	}
	if inv := raw["streams"][0]; len(inv) != 2 {
		t.Fatalf("a missing resource has only name and exists, got %v", inv)
	}
}
