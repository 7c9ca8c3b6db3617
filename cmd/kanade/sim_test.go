package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/wire"
)

func TestSimCommand(t *testing.T) {
	node := startKanade(t, t.TempDir())
	cmd := exec.Command(binary(t), "sim", "--nats-url", node.NATS, "--agents", "5", "--groups", "g1,g2",
		"--duration", "10ms-50ms", "--mix", "success=1", "--summary", "100ms", "--duplicates", "1")
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	summary := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if strings.HasPrefix(sc.Text(), "kanade sim: agents=") {
				select {
				case summary <- sc.Text():
				default:
				}
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	output := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(lines, "\n") }
	select {
	case <-summary: // subscribed and summing up
	case <-time.After(30 * time.Second):
		t.Fatalf("no summary line:\n%s", output())
	}

	nc, err := nats.Connect(node.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	execID := uuid.NewString()
	c := wire.Command{ID: "echo", Version: "1", RequestID: uuid.NewString(), ExecID: &execID, Shell: "sh",
		Script: "echo hi", TimeoutSecs: 30, Staleness: wire.Staleness{Mode: "cached"}}
	b, _ := json.Marshal(c)
	if _, err := js.Publish(context.Background(), wire.CommandsGroup("g1"), b); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(context.Background(), wire.StreamResults)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(wire.Results(c.RequestID)))
		// g1 = agents 1, 3, 5, each result published twice and, without
		// --msg-ids, kept twice.
		if err == nil && info.State.Subjects[wire.Results(c.RequestID)] == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results never reached 6: %v %v\n%s", info, err, output())
		}
		time.Sleep(50 * time.Millisecond)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim exit: %v\n%s", err, output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sim still running 30s after SIGTERM")
	}
	if out := output(); !strings.Contains(out, "kanade sim: stopped: agents=5 running=0 commands=3 dup=0 started=3 results=3") ||
		!strings.Contains(out, " republished=6 ") {
		t.Fatalf("final summary missing:\n%s", out)
	}
}

func TestSimBadFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--mix success=x", "--mix"},
		{"--duration 5s-1s", "--duration"},
		{"--agents 0 --nats-url nats://127.0.0.1:1", "agents must be at least 1"},
		{"--groups a.b --nats-url nats://127.0.0.1:1", "cannot be a subject token"},
		{"--duplicates 1.5 --nats-url nats://127.0.0.1:1", "duplicates must be a fraction"},
	} {
		err, stderr := runKanade(t, 30*time.Second, append([]string{"sim"}, strings.Fields(c.args)...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("sim %s: %v %q, want an error naming %q", c.args, err, stderr, c.want)
		}
	}
}
