package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// `kanade <cmd> -h` is a question, not an error: the usage on stdout,
// exit 0. A bad flag is still an error, with the usage on stderr.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"serve", "-h"}, {"sim", "--help"}, {"nats-users", "-h"}, {"keygen", "-h"}, {"run", "-h"}, {"-h"}} {
		cmd := exec.Command(binary(t), args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 || !strings.Contains(stdout.String(), "sage") {
			t.Errorf("%v: %v, stdout %.200q, stderr %q", args, err, stdout.String(), stderr.String())
		}
	}
	cmd := exec.Command(binary(t), "serve", "--no-such-flag")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil || stdout.Len() != 0 || !strings.Contains(stderr.String(), "no-such-flag") || !strings.Contains(stderr.String(), "-data-dir") {
		t.Errorf("bad flag: %v, stdout %q, stderr %.300q", err, stdout.String(), stderr.String())
	}
}

// The ready line is the only line on stdout; the logs stay on stderr.
func TestReadyLineOnStdout(t *testing.T) {
	cmd := exec.Command(binary(t), "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	var stderr lockedBuf
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if !readyRe.MatchString(l) {
			t.Fatalf("first stdout line %q is not the ready line", l)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no ready line on stdout:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for l := range lines {
		t.Errorf("more on stdout: %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "kanade ready") || !strings.Contains(s, "level=INFO") {
		t.Errorf("stderr should hold the logs only:\n%s", s)
	}
}

// lockedBuf is a buffer the child's output is copied into while the test
// reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
