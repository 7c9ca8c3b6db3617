package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// The demo fleet: what `kanade serve --demo` runs next to the node.
const (
	DemoAgents    = 25
	DemoHeartbeat = 10 * time.Second
)

// DemoGroups are the demo agents' groups, dealt round-robin.
var DemoGroups = []string{"office", "lab"}

// DemoOptions are the demo fleet's options, but for the connection: a mix
// with a few failures and hangs, and quick heartbeats so agents show up at
// once.
func DemoOptions() Options {
	return Options{
		Agents:    DemoAgents,
		Groups:    DemoGroups,
		Heartbeat: DemoHeartbeat,
		Mix: Mix{Success: 85, Failure: 10, Timeout: 5,
			MinDuration: 2 * time.Second, MaxDuration: 8 * time.Second, OutputBytes: 4 << 10},
	}
}

// Manifest is a job manifest in the KV bucket jobs (wire contract shape).
type Manifest struct {
	ID          string  `json:"id"`
	Version     string  `json:"version"`
	Description string  `json:"description,omitempty"`
	Execute     Execute `json:"execute"`
}

// Execute is a manifest's execute block.
type Execute struct {
	Shell   string `json:"shell"`
	Script  string `json:"script"`
	Timeout string `json:"timeout"` // humantime: 30s, 5m, 1h30m
	RunAs   string `json:"run_as,omitempty"`
	Cwd     string `json:"cwd,omitempty"`
}

// Schedule is a cron schedule in the KV bucket schedules (wire contract
// shape; cron has a seconds field).
type Schedule struct {
	ID      string          `json:"id"`
	Cron    string          `json:"cron"`
	Enabled bool            `json:"enabled"`
	JobID   string          `json:"job_id"`
	Target  json.RawMessage `json:"target"`
	Jitter  string          `json:"jitter,omitempty"`
}

// DemoJobs are the demo's two jobs: a quick inventory, and a slow scan
// (20-60 s, output growing all along) to watch a live tail and try a kill.
func DemoJobs() []Manifest {
	return []Manifest{
		{ID: "inventory", Version: "1.0.0", Description: "quick hardware and OS inventory (demo)",
			Execute: Execute{Shell: wire.ShellSh, Script: "uname -a\ndf -h\n", Timeout: "30s", RunAs: "system"}},
		{ID: "patch-scan", Version: "1.0.0", Description: "slow patch scan, 20-60 s: watch its live tail, try a kill (demo)",
			Execute: Execute{Shell: wire.ShellSh, Script: "# sim: duration=20s-60s output=16KiB\napt-get -s upgrade\n", Timeout: "120s", RunAs: "system"}},
	}
}

// DemoSchedules fire the slow scan on every agent at the top of each minute.
func DemoSchedules() []Schedule {
	return []Schedule{
		{ID: "patch-scan-every-minute", Cron: "0 * * * * *", Enabled: true, JobID: "patch-scan", Target: json.RawMessage(`{"all":true}`)},
	}
}

// SeedDemo writes the demo jobs and schedules to their KV buckets. An entry
// that already exists is left alone, so a restart keeps what the operator
// changed.
func SeedDemo(ctx context.Context, js jetstream.JetStream) error {
	create := func(bucket, key string, v any) error {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return fmt.Errorf("demo: kv %s: %w", bucket, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("demo: encode %s/%s: %w", bucket, key, err)
		}
		if _, err := kv.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("demo: kv %s/%s: %w", bucket, key, err)
		}
		return nil
	}
	for _, j := range DemoJobs() {
		if err := create(wire.BucketJobs, j.ID, j); err != nil {
			return err
		}
	}
	for _, s := range DemoSchedules() {
		if err := create(wire.BucketSchedules, s.ID, s); err != nil {
			return err
		}
	}
	return nil
}
