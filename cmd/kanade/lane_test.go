package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSimOnPerPCCredentials: `kanade nats-users` writes the file, `kanade
// serve --nats-config` loads it, and `kanade sim --nats-config` runs its
// agents each on its own credential; the node warns about nothing.
func TestSimOnPerPCCredentials(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(binary(t), "nats-users", "--agents", "PC1,PC2,PC3").Output()
	if err != nil {
		t.Fatalf("nats-users: %v", err)
	}
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, out, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKanade(t, filepath.Join(dir, "data"), "--nats-config", conf)
	if strings.Contains(p.Stderr(), "security:") {
		t.Fatalf("a security warning under the generated configuration:\n%s", p.Stderr())
	}
	cmd := exec.Command(binary(t), "sim", "--nats-url", p.NATS, "--nats-config", conf, "--agents", "2", "--summary", "100ms")
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "agents PC1") {
				started <- sc.Text()
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("kanade sim did not start")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, p.HTTP+"/api/agents")
		var agents []struct {
			PCID  string `json:"pc_id"`
			Alive bool   `json:"alive"`
		}
		json.Unmarshal([]byte(body), &agents)
		if code == 200 && len(agents) == 2 && agents[0].PCID == "PC1" && agents[1].PCID == "PC2" && agents[0].Alive && agents[1].Alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents %d %s, want PC1 and PC2 alive", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
