package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/wire"
)

// A replica that lags, made on purpose: a KV read replica (a mirror of
// the bucket's stream with MirrorDirect, as NATS documents for read
// scaling) that mirrors only one key. Direct gets on the bucket are then
// answered by the bucket or the mirror, whichever the server picks, and
// the mirror has never seen any other key: the stale follower of a
// cluster, without timing luck. The catalog must still read its writes.
func TestCatalogReadsPastAStaleReplica(t *testing.T) {
	n := nodetest.Start(t)
	cat := catalogOf(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(id string) {
		t.Helper()
		if _, err := cat.PutJob(ctx, []byte(`{"id":"`+id+`","version":"1","execute":{"shell":"sh","script":"true","timeout":"1m"}}`), "application/json"); err != nil {
			t.Fatal(err)
		}
	}
	put("only-this-one")
	replica, err := cat.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name: "KV_jobs_replica",
		Mirror: &jetstream.StreamSource{
			Name:          "KV_" + wire.BucketJobs,
			FilterSubject: "$KV." + wire.BucketJobs + ".only-this-one",
		},
		MirrorDirect: true,
		AllowDirect:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A mirror starts answering direct gets once it has mirrored a message.
	for {
		info, err := replica.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the replica never mirrored its one key")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stale := 0 // plain Gets that missed a key just written
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("job-%02d", i)
		put(id)
		if _, err := cat.Jobs.Get(ctx, id); err != nil {
			stale++
		}
		if _, _, err := cat.GetJob(ctx, id); err != nil {
			t.Fatalf("job %s just written: %v", id, err)
		}
		if _, err := cat.PutSchedule(ctx, []byte(fmt.Sprintf(`{"id":"s-%02d","job_id":"%s","cron":"@hourly"}`, i, id)), "application/json"); err != nil {
			t.Fatalf("schedule naming %s just written: %v", id, err)
		}
	}
	if stale == 0 {
		t.Fatal("the stale replica never answered a plain Get; the test proves nothing")
	}
	t.Logf("plain KV Get missed %d of 40 fresh keys; the catalog none", stale)
}

// A key with wildcards names no job: read at the leader it must not match,
// and return, some other key (a schedule written straight into KV with
// job_id "*" would fire whichever job was written last).
func TestLeaderGetRefusesWildcards(t *testing.T) {
	n := nodetest.Start(t)
	cat := catalogOf(t, n)
	ctx := context.Background()
	if _, err := cat.PutJob(ctx, []byte(`{"id":"real","version":"1","execute":{"shell":"sh","script":"true","timeout":"1m"}}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"*", ">", "re*", "a.>"} {
		if e, err := leaderGet(ctx, cat.JS, wire.BucketJobs, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("leaderGet %q: %q, %v; want not found", key, e.value, err)
		}
	}
	if e, err := leaderGet(ctx, cat.JS, wire.BucketJobs, "real"); err != nil || e.revision == 0 {
		t.Errorf("leaderGet real: %+v, %v", e, err)
	}
	// The bucket's newest revision, deletes included, at the leader.
	if err := cat.DeleteJob(ctx, "real"); err != nil {
		t.Fatal(err)
	}
	rev, err := leaderLastRevision(ctx, cat.JS, wire.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := cat.Jobs.Status(ctx); rev != st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq {
		t.Errorf("last revision %d, stream %+v", rev, st)
	}
	if _, _, err := cat.GetJob(ctx, "real"); err == nil {
		t.Error("deleted job still found")
	}
}
