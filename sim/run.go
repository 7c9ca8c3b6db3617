package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kanade-go/kanade/wire"
)

// lineBytes is the length of one synthetic progress line, newline included.
const lineBytes = 64

// synthetic pretends to run cmd: it prints progress lines spread over the
// planned duration (so a live tail changes), then exits as planned. A
// cancelled ctx (kill, timeout, stop) ends it early; the caller turns that
// into exit -1.
func (a *agent) synthetic(ctx context.Context, cmd wire.Command, r *run) int64 {
	p, err := applyDirectives(a.f.o.Mix.draw(), cmd.Script)
	if err != nil {
		fmt.Fprintf(r.stderr, "sim: %v\n", err)
		return 1
	}
	dur := p.duration
	if p.outcome == Timeout {
		// Runs until the Command's timeout fires; with no timeout it gives
		// up after twice the planned duration, as a hung script would be
		// stopped by someone.
		dur = time.Duration(cmd.TimeoutSecs) * time.Second
		if dur <= 0 {
			dur = 2 * max(p.duration, time.Second)
		}
	}
	fmt.Fprintf(r.stdout, "%s: running %s %s with %s\n", a.pcID, cmd.ID, cmd.Version, cmd.Shell)
	lines := max(1, p.output/lineBytes)
	step := min(max(dur/time.Duration(lines), 100*time.Millisecond), time.Second)
	start := time.Now()
	written := 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		elapsed := time.Since(start)
		due := lines
		if elapsed < dur {
			due = int(int64(lines) * int64(elapsed) / int64(dur))
		}
		for ; written < due; written++ {
			r.stdout.WriteString(progressLine(written+1, lines))
		}
		if elapsed >= dur {
			break
		}
		t.Reset(min(step, dur-elapsed))
		select {
		case <-ctx.Done():
			return wire.ExitKilled
		case <-t.C:
		}
	}
	if p.outcome == Timeout && cmd.TimeoutSecs > 0 {
		<-ctx.Done() // hung: the Command's timeout ends it
		return wire.ExitKilled
	}
	switch p.outcome {
	case Failure:
		fmt.Fprintf(r.stderr, "error: simulated failure (exit %d)\n", p.exitCode)
		return p.exitCode
	case Timeout:
		fmt.Fprintf(r.stderr, "error: simulated hang gave up after %s\n", dur)
		return wire.ExitKilled
	}
	r.stdout.WriteString("done\n")
	return 0
}

// progressLine is line i of n, exactly lineBytes long.
func progressLine(i, n int) string {
	s := fmt.Sprintf("progress %3d%% step %d/%d ", i*100/n, i, n)
	if len(s) < lineBytes-1 {
		s += strings.Repeat(".", lineBytes-1-len(s))
	}
	return s + "\n"
}

// execSh runs the script with sh, output into the run's streams. Killing
// the context kills the whole process group, so a script's children do
// not outlive it.
func (a *agent) execSh(ctx context.Context, cmd wire.Command, r *run) int64 {
	c := exec.CommandContext(ctx, "sh", "-c", cmd.Script)
	c.Dir = cmd.Cwd
	c.Stdout, c.Stderr = r.stdout, r.stderr
	c.Env = append(os.Environ(),
		"KANADE_PC_ID="+a.pcID, "KANADE_REQUEST_ID="+cmd.RequestID, "KANADE_RESULT_ID="+r.resultID)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	err := c.Run()
	if ctx.Err() != nil {
		return wire.ExitKilled
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return int64(ee.ExitCode()) // -1 when a signal ended it
	default:
		fmt.Fprintf(r.stderr, "kanade: start sh: %v\n", err)
		return 1
	}
}
