// Package streams creates, at start, the JetStream streams, object store and
// KV buckets the agent contract names, plus the backend's own EXECUTIONS
// stream. It is idempotent and never deletes data: a stream that already
// exists (an upstream backend may have made it) is kept as it is, and any
// difference from the contract is logged.
package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

// StreamExecutions is the backend's stream of execution records: the node
// that fires an exec publishes it, and every projector turns it into a row.
const StreamExecutions = "EXECUTIONS"

// SubjectExecutions is the subject space of StreamExecutions.
const SubjectExecutions = "executions.>"

// ExecutionSubject is where the record of one execution is published.
func ExecutionSubject(execID string) string { return "executions." + execID }

const (
	day = 24 * time.Hour
	kib = 1024
	mib = 1024 * kib
	gib = 1024 * mib
)

// Configs returns the contract's stream configs for the given replica count.
func Configs(replicas int) []jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	return []jetstream.StreamConfig{
		{
			Name: wire.StreamResults, Subjects: []string{wire.SubjectResultsAll},
			MaxAge: 30 * day, MaxBytes: 2 * gib, Discard: jetstream.DiscardOld,
			Storage: jetstream.FileStorage, Replicas: replicas,
		},
		{
			Name: wire.StreamEvents, Subjects: []string{wire.SubjectEventsAll},
			MaxAge: 7 * day, MaxBytes: 256 * mib, Discard: jetstream.DiscardOld,
			Storage: jetstream.FileStorage, Replicas: replicas,
		},
		{
			Name: wire.StreamExec, Subjects: []string{wire.SubjectCommandsAny},
			MaxAge: 7 * day, MaxBytes: 64 * mib, Discard: jetstream.DiscardOld,
			MaxMsgsPerSubject: 1, Storage: jetstream.FileStorage, Replicas: replicas,
			// Agents replay the latest Command of their subjects with a
			// direct get naming the subject in the API subject, the only
			// read of EXEC their NATS account imports (see natsauth).
			AllowDirect: true,
		},
		{
			Name: StreamExecutions, Subjects: []string{SubjectExecutions},
			MaxAge: 90 * day, MaxBytes: 256 * mib, Discard: jetstream.DiscardOld,
			Storage: jetstream.FileStorage, Replicas: replicas,
			Duplicates: 10 * time.Minute,
		},
	}
}

// Ensure makes every stream, the object store and the KV buckets exist.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) error {
	if replicas < 1 {
		replicas = 1
	}
	for _, want := range Configs(replicas) {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, want); err != nil {
				// Another node may have created it in between.
				if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
					return fmt.Errorf("create stream %s: %w", want.Name, err)
				}
			} else {
				log.Info("stream created", "stream", want.Name)
			}
		case err != nil:
			return fmt.Errorf("look up stream %s: %w", want.Name, err)
		default:
			have := s.CachedInfo().Config
			if want.AllowDirect && !have.AllowDirect {
				// Turning direct gets on changes no data: agents need them.
				have.AllowDirect = true
				if _, err := js.UpdateStream(ctx, have); err != nil {
					log.Warn("could not allow direct gets on the stream; agents cannot replay from it", "stream", want.Name, "err", err)
				} else {
					log.Info("stream now allows direct gets", "stream", want.Name)
				}
			}
			for _, d := range Diff(have, want) {
				log.Warn("existing stream differs from the contract; kept as it is", "stream", want.Name, "diff", d)
			}
		}
	}
	buckets := map[string]int{wire.BucketJobs: 5, wire.BucketSchedules: 5, wire.BucketAgentGroups: 5}
	for b, h := range FleetBuckets {
		buckets[b] = h
	}
	for b, history := range buckets {
		if _, err := js.KeyValue(ctx, b); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("look up kv %s: %w", b, err)
		}
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b, History: uint8(history), Storage: jetstream.FileStorage, Replicas: replicas,
		}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create kv %s: %w", b, err)
		}
	}
	if err := ensureScriptBuckets(ctx, js, replicas); err != nil {
		return err
	}
	if _, err := js.ObjectStore(ctx, wire.ObjectStoreOutput); err != nil {
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("look up object store %s: %w", wire.ObjectStoreOutput, err)
		}
		if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: wire.ObjectStoreOutput, Storage: jetstream.FileStorage, Replicas: replicas,
			TTL: 30 * day,
		}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create object store %s: %w", wire.ObjectStoreOutput, err)
		}
	}
	return nil
}

// Diff lists how have differs from want in the settings the contract fixes.
func Diff(have, want jetstream.StreamConfig) []string {
	var d []string
	add := func(field string, h, w any) { d = append(d, fmt.Sprintf("%s: have %v, contract %v", field, h, w)) }
	if !slices.Equal(have.Subjects, want.Subjects) {
		add("subjects", have.Subjects, want.Subjects)
	}
	if have.MaxAge != want.MaxAge {
		add("max_age", have.MaxAge, want.MaxAge)
	}
	if have.MaxBytes != want.MaxBytes {
		add("max_bytes", have.MaxBytes, want.MaxBytes)
	}
	if have.Discard != want.Discard {
		add("discard", have.Discard, want.Discard)
	}
	if have.Storage != want.Storage {
		add("storage", have.Storage, want.Storage)
	}
	if want.MaxMsgsPerSubject != 0 && have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		add("max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	}
	return d
}

// ExecutionRecord is published on ExecutionSubject(exec_id), with the
// exec_id as the JetStream message id, by the node that fires an exec (exec
// now or a scheduled tick). Every projector turns it into an executions row.
type ExecutionRecord struct {
	ExecID      string          `json:"exec_id"`
	RequestID   string          `json:"request_id"`
	JobID       string          `json:"job_id"`
	Version     string          `json:"version"`
	InitiatedBy string          `json:"initiated_by"` // "api", "schedule:<id>", …
	InitiatedAt time.Time       `json:"initiated_at"`
	TargetCount int             `json:"target_count"`
	Target      json.RawMessage `json:"target"` // {"all":true} | {"groups":[…]} | {"pcs":[…]}
	TimeoutSecs int64           `json:"timeout_secs"`
	DeadlineAt  *time.Time      `json:"deadline_at,omitempty"`
}
