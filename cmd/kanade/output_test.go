package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// Outputs of any size, against the real binary: an 8 MiB stdout that an
// agent (the simulator running sh) moved to the object store has a working
// detail (head, tail, sizes) and downloads byte for byte; a page of 1000
// results with 1 KiB outputs answers 200.
func TestLargeOutputsThroughTheBinary(t *testing.T) {
	node := startKanade(t, t.TempDir())
	nc, err := nats.Connect(node.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fleet, err := sim.Start(context.Background(), sim.Options{Conn: nc, Agents: 1, Prefix: "big-pc-", Exec: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()

	// A billion laughs (nested YAML aliases) is refused at once, and the
	// node's peak resident memory stays small.
	laughs := "id: lol\nversion: \"1\"\nexecute: {shell: sh, script: echo, timeout: 1m}\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
	for i, c := range "bcdefghi" {
		prev := string(rune('a' + i))
		laughs += fmt.Sprintf("%c: &%c [%s]\n", c, c, strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ","))
	}
	start := time.Now()
	if r := httpCall(t, "POST", node.HTTP+"/api/jobs", "application/yaml", laughs); r.status != 400 || !strings.Contains(r.body, "limit of 100000 nodes") || time.Since(start) > time.Second {
		t.Fatalf("billion laughs: %d %s after %v", r.status, r.body, time.Since(start))
	}
	if peak := peakRSS(t, node.cmd.Process.Pid); peak > 300<<20 {
		t.Errorf("peak RSS %d MiB after a billion laughs", peak>>20)
	}

	// 262,144 lines of 32 bytes: exactly 8 MiB, multi-byte characters
	// included, so pages cut characters.
	const line = "kanade ö 日本語 out 0123456\n"
	want := strings.Repeat(line, 8<<20/len(line))
	job := fmt.Sprintf(`{"id":"big","version":"1","execute":{"shell":"sh","script":"yes '%s' | head -c %d","timeout":"2m"}}`,
		strings.TrimSuffix(line, "\n"), len(want))
	if r := httpCall(t, "POST", node.HTTP+"/api/jobs", "application/json", job); r.status >= 300 {
		t.Fatalf("put job: %d %s", r.status, r.body)
	}
	if r := httpCall(t, "POST", node.HTTP+"/api/exec/big", "", `{"target":{"pcs":["big-pc-0001"]}}`); r.status != 200 {
		t.Fatalf("exec: %d %s", r.status, r.body)
	}
	var rows []struct {
		ResultID    string `json:"result_id"`
		ExitCode    *int64 `json:"exit_code"`
		Stdout      string `json:"stdout"`
		StdoutBytes int64  `json:"stdout_bytes"`
		Truncated   bool   `json:"stdout_truncated"`
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := httpCall(t, "GET", node.HTTP+"/api/results?job_id=%5Ebig%24", "", "")
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		if err := json.Unmarshal([]byte(r.body), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && rows[0].ExitCode != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished result: %s\n%s", r.body, node.Stderr())
		}
	}
	row := rows[0]
	if *row.ExitCode != 0 || row.StdoutBytes != int64(len(want)) || !row.Truncated || len([]rune(row.Stdout)) != 200 || !strings.HasPrefix(want, row.Stdout) {
		t.Fatalf("list row: exit %d, %d bytes, truncated %v, %d characters", *row.ExitCode, row.StdoutBytes, row.Truncated, len([]rune(row.Stdout)))
	}
	// It went through the object store, as agents send outputs over 256 KiB.
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(context.Background(), wire.ObjectStoreOutput)
	if err != nil {
		t.Fatal(err)
	}
	if objs, err := obs.List(context.Background()); err != nil || len(objs) != 1 || objs[0].Size != uint64(len(want)) {
		t.Fatalf("object store: %v %v", objs, err)
	}

	r := httpCall(t, "GET", node.HTTP+"/api/results/"+row.ResultID, "", "")
	var d struct {
		Stdout          string `json:"stdout"`
		StdoutTail      string `json:"stdout_tail"`
		StdoutBytes     int64  `json:"stdout_bytes"`
		StdoutTruncated bool   `json:"stdout_truncated"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &d) != nil {
		t.Fatalf("detail: %d %.300s", r.status, r.body)
	}
	if !d.StdoutTruncated || d.StdoutBytes != int64(len(want)) || len(d.Stdout) < 100<<10 || !strings.HasPrefix(want, d.Stdout) ||
		len(d.StdoutTail) < 100<<10 || !strings.HasSuffix(want, d.StdoutTail) {
		t.Fatalf("detail: truncated %v, %d bytes, head %d, tail %d", d.StdoutTruncated, d.StdoutBytes, len(d.Stdout), len(d.StdoutTail))
	}

	resp, err := http.Get(node.HTTP + "/api/results/" + row.ResultID + "/output/stdout?download")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, []byte(want)) ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %v %d %v, %d bytes, identical %v", err, resp.StatusCode, resp.Header, len(got), bytes.Equal(got, []byte(want)))
	}
	if r := httpCall(t, "GET", node.HTTP+"/api/results/"+row.ResultID+"/output/stderr", "", ""); r.status != 200 || r.body != "" {
		t.Fatalf("empty stderr: %d %q", r.status, r.body)
	}
	for path, status := range map[string]int{"/api/results/nope/output/stdout": 404, "/api/results/" + row.ResultID + "/output/both": 404} {
		if r := httpCall(t, "GET", node.HTTP+path, "", ""); r.status != status {
			t.Errorf("%s: %d %s, want %d", path, r.status, r.body, status)
		}
	}

	// 1000 results of 1 KiB, published as agents publish them.
	kib := strings.Repeat("0123456789abcdef", 64)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reqID := uuid.NewString()
	var acks []jetstream.PubAckFuture
	for i := range 1000 {
		at := time.Now().UTC()
		b, _ := json.Marshal(wire.ExecResult{ResultID: uuid.NewString(), RequestID: reqID, PCID: fmt.Sprintf("pc-%04d", i),
			Stdout: kib, Stderr: kib, StartedAt: at, FinishedAt: at})
		f, err := js.PublishAsync(wire.Results(reqID), b)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("publish acks")
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := httpCall(t, "GET", node.HTTP+"/api/results?limit=1000", "", "")
		if r.status != 200 {
			t.Fatalf("limit=1000: %d %.300s", r.status, r.body)
		}
		var page []json.RawMessage
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatal(err)
		}
		if len(page) == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("limit=1000: %d rows", len(page))
		}
	}
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// `nats micro stats results` of the real binary: after N good and M failed
// detail requests the endpoint shows N+M requests, M errors with the last
// one's text, and a processing time within the requests' round trips.
func TestMicroStatsOfTheBinary(t *testing.T) {
	node := startKanade(t, t.TempDir())
	nc, err := nats.Connect(node.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const good, failed = 6, 4
	var roundTrips time.Duration
	for i := range good + failed {
		body := `{"limit":5}`
		subject := "kanade.results.list"
		if i >= good {
			subject, body = "kanade.results.detail", fmt.Sprintf(`{"result_id":"nope-%d"}`, i)
		}
		t0 := time.Now()
		if _, err := nc.Request(subject, []byte(body), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		roundTrips += time.Since(t0)
	}
	var list, detail *micro.EndpointStats
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := nc.Request("$SRV.STATS.results", nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatal(err)
		}
		for _, ep := range st.Endpoints {
			switch ep.Name {
			case "list":
				list = ep
			case "detail":
				detail = ep
			}
		}
		if list != nil && detail != nil && list.NumRequests == good && detail.NumRequests == failed || time.Now().After(deadline) {
			break
		}
	}
	if list == nil || detail == nil || list.NumErrors != 0 || detail.NumErrors != failed || detail.LastError != "404:result nope-9 not found" {
		t.Fatalf("stats: list %+v, detail %+v", list, detail)
	}
	if sum := list.ProcessingTime + detail.ProcessingTime; sum <= 0 || sum > roundTrips {
		t.Fatalf("processing time %v, round trips %v", sum, roundTrips)
	}
}
