package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/streams"
	"github.com/kanade-go/kanade/wire"
)

// clusterNode is one node of a three-node test cluster: its fixed
// addresses, so that a killed node restarts where it was.
type clusterNode struct {
	name, dir, client, route string
	args                     []string
	p                        *proc
}

// startCluster launches three `kanade serve` nodes whose embedded servers
// form one JetStream cluster, exactly as the README shows, and waits until
// all are ready (none is until the cluster has a meta leader).
func startCluster(t *testing.T, extra ...string) []*clusterNode {
	t.Helper()
	addrs := nodetest.FreeAddrs(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats://"+addrs[3+i])
	}
	var nodes []*clusterNode
	for i := range 3 {
		n := &clusterNode{
			name:   fmt.Sprintf("n%d", i+1),
			dir:    t.TempDir(),
			client: addrs[i],
			route:  addrs[3+i],
		}
		n.args = append([]string{
			"--node-name", n.name,
			"--nats-listen", n.client,
			"--cluster-listen", n.route,
			"--cluster-routes", strings.Join(routes, ","),
			"--replicas", "3",
		}, extra...)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.p = launchKanade(t, n.dir, n.args...)
	}
	for _, n := range nodes {
		n.p.waitReady(t)
	}
	return nodes
}

// kill sends SIGKILL: no shutdown code runs.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	n.p.cmd.Process.Signal(syscall.SIGKILL)
	<-n.p.done
}

func (n *clusterNode) restart(t *testing.T) {
	t.Helper()
	n.p = startKanade(t, n.dir, n.args...)
}

// projectedResultIDs reads the result ids in a node's own SQLite projection.
func projectedResultIDs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kanade.db")+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT result_id FROM execution_results`)
	if err != nil {
		t.Fatalf("read projection of %s: %v", dir, err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// agentFleet publishes results continuously as agents do: each result is
// retried until JetStream acks it (an agent keeps it in its outbox until
// then), across reconnects to whichever node is up.
type agentFleet struct {
	mu     sync.Mutex
	acked  []string
	errs   int
	paused sync.RWMutex // held by each publish until acked; pause takes it
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func startAgents(t *testing.T, urls []string, pcs int) *agentFleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &agentFleet{stop: cancel}
	job := "cluster-test"
	for i := range pcs {
		pc := fmt.Sprintf("PC%03d", i+1)
		// Each agent lists the nodes in a different order, so some sit on
		// the node that gets killed.
		order := append(append([]string{}, urls[i%len(urls):]...), urls[:i%len(urls)]...)
		nc, err := nats.Connect(strings.Join(order, ","), nats.DontRandomize(), nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond), nats.Name(pc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for ctx.Err() == nil {
				f.paused.RLock()
				rid := uuid.NewString()
				now := time.Now().UTC()
				b, _ := json.Marshal(wire.ExecResult{
					ResultID: rid, RequestID: uuid.NewString(), PCID: pc, ExitCode: 0,
					Stdout: "ok\n", StartedAt: now, FinishedAt: now, ManifestID: &job,
				})
				for ctx.Err() == nil {
					pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := js.Publish(pctx, wire.Results(rid), b, jetstream.WithMsgID(rid))
					pcancel()
					if err == nil {
						f.mu.Lock()
						f.acked = append(f.acked, rid)
						f.mu.Unlock()
						break
					}
					f.mu.Lock()
					f.errs++
					f.mu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
				f.paused.RUnlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return f
}

// pause waits for the publishes in flight to be acked and holds the rest
// until resume; it returns every result acked so far.
func (f *agentFleet) pause() []string {
	f.paused.Lock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.acked...)
}

func (f *agentFleet) resume() { f.paused.Unlock() }

func (f *agentFleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.acked)
}

// halt stops publishing and returns every acked result id.
func (f *agentFleet) halt() []string {
	f.stop()
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.acked...)
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in %v (%s)", what, d, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func missing(have map[string]bool, want []string) []string {
	var out []string
	for _, id := range want {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

// apiProbe sends API requests through the given gateways, one after the
// other, until stopped, and records each failure with when it started.
type apiProbe struct {
	mu       sync.Mutex
	ok       int
	failures []probeFailure
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

type probeFailure struct {
	started time.Time
	what    string
}

func startAPIProbe(gateways []string, paths ...string) *apiProbe {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &apiProbe{stop: cancel}
	client := &http.Client{Timeout: 15 * time.Second}
	pr.wg.Add(1)
	go func() {
		defer pr.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			url := gateways[i%len(gateways)] + paths[i%len(paths)]
			started := time.Now()
			resp, err := client.Get(url)
			what := ""
			if err != nil {
				what = err.Error()
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					what = fmt.Sprintf("%s: %d %s", url, resp.StatusCode, body)
				}
			}
			pr.mu.Lock()
			if what == "" {
				pr.ok++
			} else {
				pr.failures = append(pr.failures, probeFailure{started, what})
			}
			pr.mu.Unlock()
			time.Sleep(25 * time.Millisecond)
		}
	}()
	return pr
}

func (pr *apiProbe) counts() (int, []probeFailure) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.ok, append([]probeFailure(nil), pr.failures...)
}

func (pr *apiProbe) halt() (int, []probeFailure) {
	pr.stop()
	pr.wg.Wait()
	return pr.counts()
}

// postJSON posts body to url, retrying while the route or the service is
// not there yet (a gateway learns routes from the services it sees).
func postJSON(t *testing.T, url, body string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			if resp.StatusCode == http.StatusBadRequest {
				break
			}
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("POST %s: %s", url, last)
}

// scheduledFires reads every execution record of a schedule from the
// EXECUTIONS stream and counts them per tick; execIDs, if not nil, gets
// each record's exec_id.
func scheduledFires(js jetstream.JetStream, scheduleID string, execIDs map[string]bool) (map[time.Time]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streams.StreamExecutions)
	if err != nil {
		return nil, fmt.Errorf("EXECUTIONS: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("EXECUTIONS info: %w", err)
	}
	// Message by message: each get honours ctx, which a consumer's
	// retries across a leader change would not.
	fires := map[time.Time]int{}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read EXECUTIONS %d: %w", seq, err)
		}
		var rec streams.ExecutionRecord
		if err := json.Unmarshal(m.Data, &rec); err != nil {
			return nil, fmt.Errorf("execution record %s: %w", m.Data, err)
		}
		if rec.InitiatedBy == "schedule:"+scheduleID {
			fires[rec.InitiatedAt.UTC()]++
			if execIDs != nil {
				execIDs[rec.ExecID] = true
			}
		}
	}
	return fires, nil
}

func TestClusterSurvivesANodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	nodes := startCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "nats://"+n.client)
	}
	survivors := []string{nodes[0].p.HTTP, nodes[1].p.HTTP}
	victim := nodes[2]

	// The streams are replicated on all three nodes.
	nc, err := nats.Connect(strings.Join(urls[:2], ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("RESULTS: replicas %d, cluster %+v; want 3 replicas", info.Config.Replicas, info.Cluster)
	}

	// The Commands the agent of the schedule's target hears, by exec_id.
	var cmdMu sync.Mutex
	commanded := map[string]bool{}
	cmdSub, err := nc.Subscribe(wire.CommandsPC("PC001"), func(m *nats.Msg) {
		var c wire.Command
		if json.Unmarshal(m.Data, &c) == nil && c.ExecID != nil && c.ID == "tick" {
			cmdMu.Lock()
			commanded[*c.ExecID] = true
			cmdMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cmdSub.Unsubscribe()

	// A schedule firing every second, which all three nodes' schedulers
	// run and claim tick by tick.
	postJSON(t, survivors[0]+"/api/jobs", `{"id":"tick","version":"1.0.0","execute":{"shell":"sh","script":"true","timeout":"30s"}}`)
	postJSON(t, survivors[0]+"/api/schedules", `{"id":"every-second","cron":"* * * * * *","job_id":"tick","target":{"pcs":["PC001"]}}`)

	fleet := startAgents(t, urls, 6)
	probe := startAPIProbe(survivors, "/api/results?limit=5", "/api/executions?limit=5", "/api/results?pc_id=PC00[12]&limit=3")
	waitUntil(t, "results flowing", 60*time.Second, func() (bool, string) {
		return fleet.count() >= 200, fmt.Sprintf("%d acked", fleet.count())
	})

	killStart := time.Now()
	victim.kill(t)
	killDone := time.Now()
	killedAt := fleet.count()
	waitUntil(t, "results and ticks after the kill", 60*time.Second, func() (bool, string) {
		fires, err := scheduledFires(js, "every-second", nil)
		if err != nil {
			return false, err.Error()
		}
		after := 0
		for tick := range fires {
			if tick.After(killDone) {
				after++
			}
		}
		return fleet.count() >= killedAt+200 && after >= 3,
			fmt.Sprintf("%d acked, %d at the kill; %d ticks fired after it", fleet.count(), killedAt, after)
	})

	// The restarted node serves reads only once its projection holds every
	// result: the agents pause, so the stream's head is older than the
	// join lag and the node can join only when fully caught up.
	before := fleet.pause()
	time.Sleep(2 * node.DefaultResultsJoinLag)
	victim.restart(t)
	waitUntil(t, "restarted node serving results", 60*time.Second, func() (bool, string) {
		st := clusterStatus(t, survivors[1])
		return st[victim.name], fmt.Sprint(st)
	})
	if m := missing(projectedResultIDs(t, victim.dir), before); len(m) > 0 {
		t.Errorf("restarted node joined the results queue group with %d of %d results not projected", len(m), len(before))
	}
	fleet.resume()
	restartedAt := fleet.count()
	waitUntil(t, "results flowing after the restart", 60*time.Second, func() (bool, string) {
		return fleet.count() >= restartedAt+200, fmt.Sprintf("%d acked", fleet.count())
	})
	acked := fleet.halt()
	ok, failures := probe.halt()
	postJSON(t, survivors[0]+"/api/schedules/every-second/disable", `{}`)

	// API requests through the survivors kept succeeding; only one already
	// on its way to the killed node when it died may have failed.
	exempt := 0
	for _, f := range failures {
		if f.started.Before(killDone) && f.started.After(killStart.Add(-15*time.Second)) {
			exempt++
			t.Logf("request in flight at the kill failed: %s", f.what)
			continue
		}
		t.Errorf("API request at %s failed: %s", f.started.Format(time.StampMilli), f.what)
	}
	if exempt > 1 {
		t.Errorf("%d requests failed around the kill, want at most the one in flight", exempt)
	}
	t.Logf("%d API requests succeeded through the surviving gateways", ok)

	// Each tick fired once across the three nodes.
	// Every Command the agent heard belongs to a recorded fire (the record
	// and the Commands go to different streams: wait for the record).
	cmdMu.Lock()
	heard := maps.Clone(commanded)
	cmdMu.Unlock()
	var fires map[time.Time]int
	waitUntil(t, "an execution record for every Command heard", 30*time.Second, func() (bool, string) {
		recorded := map[string]bool{}
		fires, err = scheduledFires(js, "every-second", recorded)
		if err != nil {
			return false, err.Error()
		}
		var orphans []string
		for id := range heard {
			if !recorded[id] {
				orphans = append(orphans, id)
			}
		}
		return len(orphans) == 0, fmt.Sprintf("Commands without a record: %v", orphans)
	})
	t.Logf("%d distinct execs commanded to PC001", len(heard))
	after := 0
	for tick, n := range fires {
		if n != 1 {
			t.Errorf("tick %s fired %d times", tick.Format(time.RFC3339), n)
		}
		if tick.After(killDone) {
			after++
		}
	}
	// Ticks with no fire are reported, not failed: a node killed between
	// claiming a tick and publishing it takes that tick with it.
	var first, last time.Time
	for tick := range fires {
		if first.IsZero() || tick.Before(first) {
			first = tick
		}
		if tick.After(last) {
			last = tick
		}
	}
	var skipped []string
	for tick := first; tick.Before(last); tick = tick.Add(time.Second) {
		if fires[tick] == 0 {
			skipped = append(skipped, tick.Format(time.TimeOnly))
		}
	}
	t.Logf("%d ticks fired once each, %d after the kill; ticks with no fire: %v", len(fires), after, skipped)

	// Nothing acked is lost from any projection, the restarted node's
	// included: it caught up.
	for _, n := range nodes {
		waitUntil(t, "node "+n.name+" projection complete", 90*time.Second, func() (bool, string) {
			m := missing(projectedResultIDs(t, n.dir), acked)
			return len(m) == 0, fmt.Sprintf("%d of %d acked results missing", len(m), len(acked))
		})
	}

	// Every node is listed, each serving results.
	waitUntil(t, "cluster status lists three nodes serving results", 30*time.Second, func() (bool, string) {
		st := clusterStatus(t, survivors[1])
		return len(st) == 3 && st["n1"] && st["n2"] && st["n3"], fmt.Sprint(st)
	})
}

// clusterStatus asks GET /api/cluster which nodes serve results.
func clusterStatus(t *testing.T, gateway string) map[string]bool {
	t.Helper()
	code, body := get(t, gateway+"/api/cluster")
	var cs node.ClusterStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &cs) != nil {
		t.Logf("GET /api/cluster: %d %s", code, body)
		return nil
	}
	out := map[string]bool{}
	for _, n := range cs.Nodes {
		out[n.Node] = n.ResultsServing
	}
	return out
}
