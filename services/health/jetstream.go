package health

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// Probe is one JetStream resource as GET /api/jetstream/status shows it;
// the numbers are omitted when it does not exist.
type Probe struct {
	Name     string  `json:"name"`
	Exists   bool    `json:"exists"`
	Bytes    *uint64 `json:"bytes,omitempty"`
	MaxBytes *uint64 `json:"max_bytes,omitempty"`
	Messages *uint64 `json:"messages,omitempty"`
}

// JetStreamStatus is the reply of GET /api/jetstream/status.
type JetStreamStatus struct {
	Streams      []Probe `json:"streams"`
	KVBuckets    []Probe `json:"kv_buckets"`
	ObjectStores []Probe `json:"object_stores"`
}

// Upstream's canonical resource lists, in its order, then this backend's
// own (EXECUTIONS, schedule_claims).
var (
	AllStreams = []string{"INVENTORY", wire.StreamResults, wire.StreamExec, wire.StreamEvents, "AUDIT",
		"OBS_EVENTS", "NOTIFICATIONS", streams.StreamExecutions}
	AllKVBuckets = []string{wire.BucketScriptCurrent, wire.BucketScriptStatus, "agents_state", "agent_config",
		wire.BucketAgentGroups, "agent_groups_derived", "agent_meta", "group_contacts", wire.BucketSchedules,
		wire.BucketJobs, "fleet_config", "notifications_read", "jobs_yaml", "schedules_yaml", "schedule_claims"}
	AllObjectStores = []string{"agent_releases", "app_packages", "scripts", wire.ObjectStoreOutput, "collections"}
)

// FleetResources are the resources health/fleet requires, by name, with
// the stream backing each: the ones this backend creates at start
// (upstream probes a fixed list of its own, naming streams this backend
// never makes).
var FleetResources = []Resource{
	{wire.StreamResults, wire.StreamResults}, {wire.StreamExec, wire.StreamExec},
	{wire.StreamEvents, wire.StreamEvents}, {streams.StreamExecutions, streams.StreamExecutions},
	{wire.BucketScriptCurrent, "KV_" + wire.BucketScriptCurrent}, {wire.BucketScriptStatus, "KV_" + wire.BucketScriptStatus},
	{wire.BucketAgentGroups, "KV_" + wire.BucketAgentGroups}, {wire.BucketSchedules, "KV_" + wire.BucketSchedules},
	{wire.BucketJobs, "KV_" + wire.BucketJobs}, {wire.ObjectStoreOutput, "OBJ_" + wire.ObjectStoreOutput},
}

// Resource is a JetStream resource's name and its backing stream.
type Resource struct{ Name, Stream string }

// probe reads one backing stream's cached info.
func probe(ctx context.Context, js jetstream.JetStream, name, stream string) (Probe, error) {
	p := Probe{Name: name}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	info := s.CachedInfo()
	bytes, msgs := info.State.Bytes, info.State.Msgs
	p.Exists, p.Bytes, p.Messages = true, &bytes, &msgs
	if info.Config.MaxBytes > 0 {
		mb := uint64(info.Config.MaxBytes)
		p.MaxBytes = &mb
	}
	return p, nil
}

// probeAll probes resources concurrently, in order. A resource whose
// probe fails for another reason than absence shows as missing: the status
// must answer even then.
func probeAll(ctx context.Context, js jetstream.JetStream, rs []Resource) []Probe {
	out := make([]Probe, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := probe(ctx, js, r.Name, r.Stream)
			if err != nil {
				p = Probe{Name: r.Name}
			}
			out[i] = p
		}()
	}
	wg.Wait()
	return out
}

// backed names each resource's backing stream: prefix + name.
func backed(names []string, prefix string) []Resource {
	out := make([]Resource, len(names))
	for i, n := range names {
		out[i] = Resource{n, prefix + n}
	}
	return out
}

// JetStream probes every resource of the canonical lists.
func JetStream(ctx context.Context, js jetstream.JetStream) JetStreamStatus {
	return JetStreamStatus{
		Streams:      probeAll(ctx, js, backed(AllStreams, "")),
		KVBuckets:    probeAll(ctx, js, backed(AllKVBuckets, "KV_")),
		ObjectStores: probeAll(ctx, js, backed(AllObjectStores, "OBJ_")),
	}
}
