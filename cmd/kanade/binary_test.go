package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the real kanade binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kanade-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kanade")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build kanade: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// proc is a running kanade binary.
type proc struct {
	cmd    *exec.Cmd
	HTTP   string
	NATS   string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	ready  chan [2]string
	err    error
}

var readyRe = regexp.MustCompile(`^kanade ready http=(\S+) nats=(\S+)$`)

// startKanade runs `kanade serve` with args on free ports and waits for the
// ready line. It is killed at the end of the test if still running.
func startKanade(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	p := launchKanade(t, dataDir, args...)
	p.waitReady(t)
	return p
}

// launchKanade starts `kanade serve` without waiting for it to be ready
// (nodes of one cluster become ready together); see waitReady.
func launchKanade(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{}), ready: make(chan [2]string, 1)}
	all := append([]string{"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-level", "debug"}, args...)
	p.cmd = exec.Command(binary(t), all...)
	p.cmd.Env = append(os.Environ(), "KANADE_NODE_NAME=test")
	// The ready line is on stdout, the logs on stderr: read both, in order.
	pipe, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	err = p.cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := readyRe.FindStringSubmatch(line); m != nil {
				p.ready <- [2]string{m[1], m[2]}
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("kanade stderr:\n%s", p.Stderr())
		}
	})
	return p
}

// waitReady waits for the ready line and records the addresses.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	select {
	case r := <-p.ready:
		p.HTTP, p.NATS = r[0], r[1]
	case <-p.done:
		t.Fatalf("kanade exited before ready: %v\n%s", p.err, p.Stderr())
	case <-time.After(60 * time.Second):
		t.Fatalf("kanade not ready in 60s\n%s", p.Stderr())
	}
}

// Stderr is everything the process wrote so far.
func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// stop sends SIGTERM and returns the exit error and how long it took.
func (p *proc) stop(t *testing.T) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err, time.Since(start)
	case <-time.After(30 * time.Second):
		t.Fatalf("kanade still running 30s after SIGTERM\n%s", p.Stderr())
		return nil, 0
	}
}

// runKanade runs the binary to completion and returns its exit error and stderr.
func runKanade(t *testing.T, timeout time.Duration, args ...string) (error, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err, strings.TrimSpace(stderr.String())
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("kanade %v still running after %v\n%s", args, timeout, stderr.String())
		return nil, ""
	}
}
