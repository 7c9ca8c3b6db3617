package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/services/snapshot"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// fleetFeed publishes results [from, to) (ten per execution, with the
// execution records), as a fleet would, and returns the counters each
// execution must end with.
type fleetFeed struct {
	want map[string][3]int // exec_id -> success, failure, skipped
}

func (f *fleetFeed) publish(t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	if f.want == nil {
		f.want = map[string][3]int{}
	}
	ctx := context.Background()
	t0 := time.Now().UTC().Add(-time.Hour)
	var futures []jetstream.PubAckFuture
	pub := func(subject string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fu, err := js.PublishAsync(subject, b)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, fu)
	}
	out := strings.Repeat("Checking disk C: 93% free\r\nService wuauserv: running\r\n", 6)
	for i := from; i < to; i++ {
		exec := fmt.Sprintf("exec-%05d", i/10)
		if i%10 == 0 {
			pub(streams.ExecutionSubject(exec), streams.ExecutionRecord{
				ExecID: exec, RequestID: "req-" + exec, JobID: "job-snap", InitiatedAt: t0, TargetCount: 10,
			})
		}
		r := wire.ExecResult{
			ResultID: fmt.Sprintf("res-%06d", i), RequestID: "req-" + exec, ExecID: &exec,
			PCID: fmt.Sprintf("PC%04d", i%500), ExitCode: int64(i % 4), Skipped: i%17 == 0,
			Stdout: out + fmt.Sprint("result ", i), StartedAt: t0.Add(time.Duration(i) * time.Millisecond),
			FinishedAt: t0.Add(time.Duration(i)*time.Millisecond + time.Second),
		}
		c := f.want[exec]
		switch {
		case r.Skipped:
			c[2]++
		case r.ExitCode == 0:
			c[0]++
		default:
			c[1]++
		}
		f.want[exec] = c
		pub(wire.Results(r.RequestID), r)
		if len(futures) >= 2000 {
			waitAcks(t, ctx, js, futures)
			futures = futures[:0]
		}
	}
	waitAcks(t, ctx, js, futures)
}

func waitAcks(t *testing.T, ctx context.Context, js jetstream.JetStream, futures []jetstream.PubAckFuture) {
	t.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("publishes not acked in 60 s")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		default:
		}
	}
}

// nodeStatus asks one node (by name) for its status.
func nodeStatus(t *testing.T, nc *nats.Conn, name string) (node.NodeStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := node.Gather(ctx, nc)
	if err != nil {
		return node.NodeStatus{}, false
	}
	for _, n := range cs.Nodes {
		if n.Node == name {
			return n, true
		}
	}
	return node.NodeStatus{}, false
}

func applied(ns node.NodeStatus, stream string) uint64 {
	if ns.Projector == nil {
		return 0
	}
	for _, s := range ns.Projector.Streams {
		if s.Stream == stream {
			return s.LastApplied
		}
	}
	return 0
}

// waitProjected waits until the named node has applied RESULTS up to seq
// and EXECUTIONS up to execSeq.
func waitProjected(t *testing.T, nc *nats.Conn, name string, seq, execSeq uint64) node.NodeStatus {
	t.Helper()
	var ns node.NodeStatus
	waitUntil(t, name+" projects RESULTS to "+fmt.Sprint(seq), 90*time.Second, func() (bool, string) {
		var ok bool
		ns, ok = nodeStatus(t, nc, name)
		r, e := applied(ns, wire.StreamResults), applied(ns, streams.StreamExecutions)
		return ok && r >= seq && e >= execSeq, fmt.Sprintf("RESULTS %d EXECUTIONS %d", r, e)
	})
	return ns
}

// takeSnapshot runs `kanade snapshot` against natsURL.
func takeSnapshot(t *testing.T, natsURL string) snapshot.Info {
	t.Helper()
	cmd := exec.Command(binary(t), "snapshot", "--nats-url", natsURL, "--timeout", "2m")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kanade snapshot: %v\n%s", err, stderr.String())
	}
	var in snapshot.Info
	if err := json.Unmarshal(out, &in); err != nil {
		t.Fatalf("kanade snapshot printed %q: %v", out, err)
	}
	return in
}

func purgeResultsBelow(t *testing.T, js jetstream.JetStream, seq uint64) {
	t.Helper()
	s, err := js.Stream(context.Background(), wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(seq)); err != nil {
		t.Fatal(err)
	}
	s, _ = js.Stream(context.Background(), wire.StreamResults)
	if first := s.CachedInfo().State.FirstSeq; first != seq {
		t.Fatalf("RESULTS first sequence %d after the purge, want %d", first, seq)
	}
}

func removeDB(t *testing.T, dir string) {
	t.Helper()
	for _, s := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, "kanade.db"+s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// dumpProjection reads every row of execution_results and executions of
// a stopped node's projection, in order, every column.
func dumpProjection(t *testing.T, dir string) (string, int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kanade.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	n := 0
	for _, q := range []string{`SELECT * FROM execution_results ORDER BY result_id`, `SELECT * FROM executions ORDER BY exec_id`} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					vals[i] = fmt.Sprintf("%x", bs)
				}
			}
			fmt.Fprintln(&b, vals...)
			if strings.Contains(q, "execution_results") {
				n++
			}
		}
		rows.Close()
	}
	return b.String(), n
}

// checkCounters compares each execution's counters with what was published.
func checkCounters(t *testing.T, dir string, want map[string][3]int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kanade.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT exec_id, success_count, failure_count, skipped_count, status FROM executions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, status string
		var c [3]int
		if err := rows.Scan(&id, &c[0], &c[1], &c[2], &status); err != nil {
			t.Fatal(err)
		}
		seen++
		if c != want[id] || status != "completed" {
			t.Errorf("execution %s: counters %v status %s, want %v completed", id, c, status, want[id])
		}
	}
	if seen != len(want) {
		t.Errorf("%d executions, want %d", seen, len(want))
	}
}

func connectJS(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// The acceptance test on one node: 20,000 results, a snapshot,
// RESULTS purged below 10,001, kanade.db deleted: the restarted node
// restores the snapshot, replays the rest and has every row and exact
// counters. Without a snapshot it reports the gap and keeps its read
// services out of their queue groups until started with
// --accept-history-gap.
func TestSnapshotRestoresPastStreamRetention(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--node-name", "snapnode", "--nats-sync", "interval", "--snapshot-interval", "off", "--retention", "off"}
	p := startKanade(t, dir, args...)
	nc, js := connectJS(t, p.NATS)
	var feed fleetFeed
	feed.publish(t, js, 0, 19000)
	waitProjected(t, nc, "snapnode", 19000, 1900)
	in := takeSnapshot(t, p.NATS)
	if in.Offsets[wire.StreamResults] != 19000 || in.Offsets[streams.StreamExecutions] != 1900 || in.Results != 19000 {
		t.Fatalf("snapshot %+v, want RESULTS 19000, EXECUTIONS 1900, 19000 results", in)
	}
	out, err := exec.Command(binary(t), "snapshot", "--nats-url", p.NATS, "--list").Output()
	if err != nil || !strings.Contains(string(out), in.Name) {
		t.Fatalf("kanade snapshot --list: %v\n%s", err, out)
	}
	feed.publish(t, js, 19000, 20000)
	waitProjected(t, nc, "snapnode", 20000, 2000)
	purgeResultsBelow(t, js, 10001)
	p.stop(t)
	before, _ := dumpProjection(t, dir)
	removeDB(t, dir)

	p = startKanade(t, dir, args...)
	if !strings.Contains(p.Stderr(), "snapshot: restored") {
		t.Fatalf("no restore in the log:\n%s", p.Stderr())
	}
	nc, js = connectJS(t, p.NATS)
	ns := waitProjected(t, nc, "snapnode", 20000, 2000)
	if ns.RestoredSnapshot == nil || ns.RestoredSnapshot.Name != in.Name {
		t.Fatalf("cluster status restored_snapshot %+v, want %s", ns.RestoredSnapshot, in.Name)
	}
	if len(ns.Projector.HistoryGaps) != 0 || ns.JoinBlocked != "" {
		t.Fatalf("gaps %+v blocked %q after a restore", ns.Projector.HistoryGaps, ns.JoinBlocked)
	}
	waitUntil(t, "results serving", 30*time.Second, func() (bool, string) {
		ns, _ := nodeStatus(t, nc, "snapnode")
		return ns.ResultsServing, ""
	})
	// Without the snapshot: the projection can only replay 10,001 on.
	obj, err := js.ObjectStore(context.Background(), snapshot.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snapshot.List(context.Background(), obj)
	if err != nil || len(list) != 1 {
		t.Fatalf("snapshots %+v %v", list, err)
	}
	if err := obj.Delete(context.Background(), list[0].Name); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	after, n := dumpProjection(t, dir)
	if n != 20000 {
		t.Fatalf("%d results after the restore, want 20000", n)
	}
	if after != before {
		t.Fatal("the restored projection differs row for row from the one before kanade.db was deleted")
	}
	checkCounters(t, dir, feed.want)
	removeDB(t, dir)

	p = startKanade(t, dir, args...)
	nc, _ = connectJS(t, p.NATS)
	ns = waitProjected(t, nc, "snapnode", 20000, 2000)
	gaps := ns.Projector.HistoryGaps
	if len(gaps) != 1 || gaps[0].Stream != wire.StreamResults || gaps[0].FromSeq != 1 || gaps[0].ToSeq != 10000 || gaps[0].AcceptedAt != nil {
		t.Fatalf("history gaps %+v, want RESULTS 1-10000 not accepted", gaps)
	}
	if ns.JoinBlocked == "" || ns.ResultsServing {
		t.Fatalf("a node with a gap: blocked %q serving %v", ns.JoinBlocked, ns.ResultsServing)
	}
	if !strings.Contains(p.Stderr(), "history lost") {
		t.Fatalf("the log does not say history was lost:\n%s", p.Stderr())
	}
	// Out of the queue group: nobody answers the results list.
	if _, err := nc.Request("kanade.results.list", []byte(`{}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("results list on a node with a gap: %v, want no responders", err)
	}
	p.stop(t)
	if _, n := dumpProjection(t, dir); n != 10000 {
		t.Fatalf("%d results replayed, want the 10000 left in the stream", n)
	}

	p = startKanade(t, dir, append(args, "--accept-history-gap")...)
	nc, _ = connectJS(t, p.NATS)
	waitUntil(t, "results serving after the gap is accepted", 30*time.Second, func() (bool, string) {
		ns, _ := nodeStatus(t, nc, "snapnode")
		return ns.ResultsServing && ns.JoinBlocked == "", ns.JoinBlocked
	})
	if _, err := nc.Request("kanade.results.list", []byte(`{}`), 5*time.Second); err != nil {
		t.Fatalf("results list once the gap is accepted: %v", err)
	}
}

// A fourth node joins a three-node cluster (streams of three replicas, none
// on it) after RESULTS lost its history: it restores the snapshot, replays
// the rest and matches the others row for row.
//
// The nodes share a signing key: the snapshot is signed, and n4 restores it
// only after checking the signature.
func TestClusterFourthNodeJoinsFromSnapshot(t *testing.T) {
	_, seed, err := signing.Generate("snap-test")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--nats-sync", "interval", "--snapshot-interval", "off", "--retention", "off",
		"--command-signing-key", seed, "--command-signing-kid", "snap-test"}
	nodes := startCluster(t, common...)
	nc, js := connectJS(t, "nats://"+nodes[0].client)
	var feed fleetFeed
	feed.publish(t, js, 0, 1500)
	for _, n := range nodes {
		waitProjected(t, nc, n.name, 1500, 150)
	}
	if in := takeSnapshot(t, "nats://"+nodes[0].client); in.Offsets[wire.StreamResults] != 1500 || in.SignedBy != "snap-test" {
		t.Fatalf("snapshot %+v", in)
	}
	feed.publish(t, js, 1500, 2000)
	for _, n := range nodes {
		waitProjected(t, nc, n.name, 2000, 200)
	}
	purgeResultsBelow(t, js, 1501)

	var routes []string
	for _, n := range nodes {
		routes = append(routes, "nats://"+n.route)
	}
	addrs := nodetest.FreeAddrs(t, 2)
	n4 := &clusterNode{name: "n4", dir: t.TempDir(), client: addrs[0], route: addrs[1]}
	n4.args = []string{"--node-name", "n4", "--nats-listen", n4.client, "--cluster-listen", n4.route,
		"--cluster-routes", strings.Join(append(routes, "nats://"+n4.route), ","), "--replicas", "3"}
	n4.args = append(n4.args, common...)
	n4.p = startKanade(t, n4.dir, n4.args...)
	if !strings.Contains(n4.p.Stderr(), "snapshot: restored") {
		t.Fatalf("n4 restored no snapshot:\n%s", n4.p.Stderr())
	}
	ns := waitProjected(t, nc, "n4", 2000, 200)
	if len(ns.Projector.HistoryGaps) != 0 {
		t.Fatalf("n4 gaps %+v", ns.Projector.HistoryGaps)
	}
	waitUntil(t, "n4 serving results", 30*time.Second, func() (bool, string) {
		ns, _ := nodeStatus(t, nc, "n4")
		return ns.ResultsServing, ns.JoinBlocked
	})
	n4.p.stop(t)
	for _, n := range nodes {
		n.p.stop(t)
	}
	want, rows := dumpProjection(t, nodes[0].dir)
	if rows != 2000 {
		t.Fatalf("n1 has %d results, want 2000", rows)
	}
	for _, n := range append(nodes[1:], n4) {
		if got, _ := dumpProjection(t, n.dir); got != want {
			t.Errorf("%s differs from n1 row for row", n.name)
		}
	}
	checkCounters(t, n4.dir, feed.want)
}
