package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketClaims holds, per schedule, the last tick some node claimed.
// Nodes claim a tick by moving the key forward with a compare-and-set on
// its revision, so exactly one node wins each tick. One key per schedule
// keeps the bucket as small as the schedule list, and the value doubles as
// the "last fired" mark that catch-up after downtime needs.
const BucketClaims = "schedule_claims"

// claimState is the value of a claims key.
type claimState struct {
	Tick      time.Time `json:"tick"`
	ExecID    string    `json:"exec_id"`
	Node      string    `json:"node"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// claim moves the schedule's claims key to tick, only if it is behind:
// of several nodes only the one whose compare-and-set lands wins.
func (e *Engine) claim(ctx context.Context, s *slot, tick time.Time, execID string) (bool, error) {
	val, err := json.Marshal(claimState{Tick: tick.UTC(), ExecID: execID, Node: e.o.Instance, ClaimedAt: e.o.Clock.Now().UTC()})
	if err != nil {
		return false, err
	}
	for range 10 {
		lastRev, lastTick := s.claimPos()
		if !lastTick.IsZero() && !lastTick.Before(tick) {
			return false, nil
		}
		var rev uint64
		if lastRev == 0 {
			rev, err = e.o.Claims.Create(ctx, s.id, val)
		} else {
			rev, err = e.o.Claims.Update(ctx, s.id, val, lastRev)
		}
		if err == nil {
			s.setClaim(rev, tick)
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return false, fmt.Errorf("claim: %w", err)
		}
		en, err := e.o.Claims.Get(ctx, s.id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			s.setClaim(0, time.Time{})
			continue
		}
		if err != nil {
			return false, fmt.Errorf("claim: read: %w", err)
		}
		var st claimState
		if err := json.Unmarshal(en.Value(), &st); err != nil {
			st = claimState{}
		}
		s.setClaim(en.Revision(), st.Tick)
		if st.Tick.Equal(tick) && st.Node == e.o.Instance {
			// Our own earlier attempt landed but its answer was lost.
			return true, nil
		}
	}
	return false, fmt.Errorf("claim: too much contention")
}

// dropClaim removes a deleted schedule's claims key, so the bucket stays
// as small as the schedule list. Only at the revision this engine last saw:
// if the schedule came back and some node claimed a tick since, the key
// stays.
func (e *Engine) dropClaim(id string, rev uint64) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if err := e.o.Claims.Delete(ctx, id, jetstream.LastRevision(rev)); err != nil && e.ctx.Err() == nil {
			e.log.Debug("drop claim", "schedule", id, "err", err)
		}
	}()
}

// readClaim is the last claimed tick of s (zero if none).
func (e *Engine) readClaim(ctx context.Context, s *slot) (time.Time, error) {
	en, err := e.o.Claims.Get(ctx, s.id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var st claimState
	if err := json.Unmarshal(en.Value(), &st); err != nil {
		return time.Time{}, err
	}
	s.setClaim(en.Revision(), st.Tick)
	return st.Tick, nil
}

// ensureClaims opens the claims bucket, creating it on first start: the
// stream a KeyValueConfig{History: 1} makes (only the last claim of each
// schedule matters), with two changes.
//
// No direct gets: on a replicated bucket a direct get may be answered by a
// follower that lags, and a node that lost a compare-and-set must read the
// revision that beat it, or it retries against a stale one until it gives
// up. Reads go to the stream leader.
//
// On a single server, asynchronous persistence: a claim sits before every
// fire, and this acks it from memory instead of after an fsync (with
// --nats-sync always that halves the fsyncs before a Command is out).
// Between live nodes the server decides either way; what a crash can lose
// is the last moments of claims, and a tick fired again after that carries
// the same exec_id and request_id, so streams, agents and the executions
// table still see one execution. Replicated streams do not support the
// mode (and relax fsync by themselves).
func ensureClaims(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, BucketClaims)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("scheduler: kv %s: %w", BucketClaims, err)
	}
	cfg := jetstream.StreamConfig{
		Name: "KV_" + BucketClaims, Description: "last tick claimed per schedule",
		Subjects: []string{"$KV." + BucketClaims + ".>"}, MaxMsgsPerSubject: 1,
		MaxBytes: -1, MaxMsgSize: -1, MaxMsgs: -1, MaxConsumers: -1,
		Storage: jetstream.FileStorage, Replicas: replicas, Discard: jetstream.DiscardNew,
		AllowRollup: true, DenyDelete: true, Duplicates: 2 * time.Minute,
	}
	if replicas == 1 {
		cfg.PersistMode = jetstream.AsyncPersistMode
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("scheduler: create kv %s: %w", BucketClaims, err)
	}
	kv, err = js.KeyValue(ctx, BucketClaims)
	if err != nil {
		return nil, fmt.Errorf("scheduler: kv %s: %w", BucketClaims, err)
	}
	return kv, nil
}
