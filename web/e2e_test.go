package web_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/sim"
	"github.com/kanade-go/kanade/wire"
)

// TestDashboardInBrowser starts the real binary with simulated agents
// (`kanade serve --demo`, with an API token and a bootstrap admin) and drives the dashboard in headless Chromium with
// web/e2e/dashboard.mjs: filter failures, follow a running result's live
// output and kill it, run a job on a group, disable a schedule; see a job's
// live executions, skipped results of a job whose shell no agent supports and
// a stored schedule the engine cannot use (both written to KV by
// seedUnvalidated, bypassing the API's validation); log in as the
// bootstrap admin, add a viewer, and check the viewer is offered no
// mutating control and finds the run on the Audit page
// (web/e2e/auth.mjs). Screenshots of
// every page, light and dark, land in artifacts/screenshots/.
//
// It needs Node, Chromium and `npm ci` in web/e2e. Without them it skips,
// except in CI (CI=true), where .ci/run installs them and a skip would hide
// a missing step.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test cannot run in CI: %s", what)
		}
		t.Skipf("browser test skipped: %s (see .ci/run for the setup)", what)
	}
	if _, err := os.Stat(chromium); err != nil {
		missing(chromium + " not found: apt-get install chromium")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found")
	}
	if _, err := os.Stat(filepath.Join("e2e", "node_modules", "playwright-core")); err != nil {
		missing("web/e2e/node_modules missing: (cd web/e2e && npm ci)")
	}

	bin := filepath.Join(t.TempDir(), "kanade")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/kanade").CombinedOutput(); err != nil {
		t.Fatalf("build kanade: %v\n%s", err, out)
	}
	// With an API token, so the run also covers the dashboard's token prompt.
	token := rand.Text()
	mailDir := t.TempDir()
	url, natsURL := startDemo(t, bin, token, smtpToDir(t, mailDir))
	skipJob, brokenSchedule := seedUnvalidated(t, natsURL)
	bigResult, bigPC := seedLargeOutput(t, natsURL)

	shots, err := filepath.Abs(filepath.Join("..", "artifacts", "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "dashboard.mjs"), url)
	cmd.Env = append(os.Environ(), "SCREENSHOT_DIR="+shots, "CHROMIUM="+chromium, "E2E_TOKEN="+token,
		"E2E_SKIP_JOB="+skipJob, "E2E_BROKEN_SCHEDULE="+brokenSchedule, "E2E_BIG_RESULT="+bigResult, "E2E_BIG_PC="+bigPC,
		"E2E_BIG_BYTES="+strconv.Itoa(len(largeOutput())), "E2E_ADMIN_PASSWORD="+e2eAdminPassword,
		"E2E_MAIL_DIR="+mailDir, "E2E_PUBLIC_URL="+e2ePublicURL)
	if os.Getenv("E2E_GROUP") == "" {
		cmd.Env = append(cmd.Env, "E2E_GROUP="+sim.DemoGroups[len(sim.DemoGroups)-1])
	}
	out, err := cmd.CombinedOutput()
	t.Logf("dashboard.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in %s)", err, shots)
	}
	t.Logf("screenshots in %s", shots)
}

var readyLine = regexp.MustCompile(`^kanade ready http=(\S+) nats=(\S+)$`)

// seedUnvalidated writes, straight into the KV buckets (as a `nats kv put`
// or an upstream tool would, bypassing the API's validation), a job whose
// shell no agent supports, so its runs come back skipped (exit 122), and a
// schedule whose cron cannot be parsed, which the API lists with an
// "error". It returns their ids for the browser script.
func seedUnvalidated(t *testing.T, natsURL string) (job, schedule string) {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("web-e2e"))
	if err != nil {
		t.Fatalf("connect %s: %v", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	suffix := strings.ToLower(rand.Text()[:8])
	job, schedule = "e2e-skip-"+suffix, "e2e-broken-"+suffix
	put := func(bucket, key, value string) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("kv %s: %v", bucket, err)
		}
		if _, err := kv.Put(ctx, key, []byte(value)); err != nil {
			t.Fatalf("put %s/%s: %v", bucket, key, err)
		}
	}
	put(wire.BucketJobs, job, `{"id":"`+job+`","version":"1.0.0","description":"a shell no agent runs: every result skipped (browser test)",`+
		`"execute":{"shell":"bash","script":"echo never","timeout":"1m"}}`)
	put(wire.BucketSchedules, schedule, `{"id":"`+schedule+`","job_id":"`+job+`","cron":"every tuesday","enabled":false,"target":{"all":true}}`)
	return job, schedule
}

// startDemo runs `kanade serve --demo` on free ports and returns its HTTP
// and NATS addresses once it prints its ready line. It is stopped when the
// test ends.
// e2eAdminPassword is the bootstrap admin's first password (web/e2e/auth.mjs).
const e2eAdminPassword = "first-admin-pass"

// e2ePublicURL starts the mailed links; the browser script puts the
// server's real address in its place (the port is known only later).
const e2ePublicURL = "http://kanade.e2e.invalid"

// smtpToDir is an SMTP relay on 127.0.0.1:0 that writes each message it
// takes to dir (1.eml, 2.eml, …), for the browser script to read.
func smtpToDir(t *testing.T, dir string) string {
	t.Helper()
	var (
		mu sync.Mutex
		n  int
	)
	return nodetest.SMTP(t, func(m nodetest.Mail) {
		mu.Lock()
		n++
		name := filepath.Join(dir, strconv.Itoa(n)+".eml")
		mu.Unlock()
		// Written whole, then renamed: the reader never sees half.
		if os.WriteFile(name+".tmp", []byte(m.Data), 0o600) == nil {
			os.Rename(name+".tmp", name)
		}
	})
}

func startDemo(t *testing.T, bin, token, mailRelay string) (httpURL, natsURL string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--demo",
		"--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--node-name", "e2e",
		"--mail-relay", mailRelay, "--mail-from", "kanade <kanade@e2e.invalid>", "--public-url", e2ePublicURL)
	cmd.Env = append(os.Environ(), "KANADE_API_TOKEN="+token, "KANADE_BOOTSTRAP_ADMIN_PASSWORD="+e2eAdminPassword)
	// The ready line is on stdout, the logs on stderr: read both, in order.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatalf("start kanade: %v", err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	logged := func() string {
		mu.Lock()
		defer mu.Unlock()
		return log.String()
	}
	ready := make(chan [2]string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
			mu.Lock()
			if log.Len() < 1<<20 {
				log.WriteString(line + "\n")
			}
			mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("kanade stderr:\n%s", logged())
		}
	})
	select {
	case u := <-ready:
		return u[0], u[1]
	case <-done:
		t.Fatalf("kanade exited before it was ready:\n%s", logged())
	case <-time.After(90 * time.Second):
		t.Fatalf("kanade not ready after 90 s:\n%s", logged())
	}
	return "", ""
}
